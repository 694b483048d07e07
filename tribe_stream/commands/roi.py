"""`tribe-stream roi PRED --atlas NAME` (or `--annot LH RH`; `--region NAME`...): one mean per
cortical region per second.

PRED is any prediction file tribe-stream writes (.npy, .h5, a GIfTI or MGH pair) or a recording.
Writes a wide CSV (`second`, then one column per region, hemisphere-prefixed), with `--top K`
also `NAME.top.csv` (second, rank, region, mean: the K most active regions of each second, as
the official top-k ROIs), and prints the most active regions overall.
"""

from __future__ import annotations

import argparse

from tribe_stream.options import AtlasOptions, add_options, from_args, number

NAME = "roi"
HELP = "region means per second of a prediction file (an atlas by name, or annotation files)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="prediction file (.npy, .h5, .func.gii, .mgh/.mgz) or recording")
    add_options(p, AtlasOptions)
    p.add_argument("--out", help="wide CSV of region means (second, then one column per region)")
    p.add_argument(
        "--top", type=number(int, minimum=1), default=None, help="also the K most active regions"
    )
    p.add_argument(
        "--show",
        type=number(int, minimum=1),
        default=None,
        help="regions to print (default: --top's K, else 10)",
    )


def write_csv(path, header: list[str], rows) -> None:
    import csv

    from tribe_stream.outputs import atomic_write

    def write(tmp) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    atomic_write(path, write)


def _structures(options: AtlasOptions):
    """The atlas of a volume prediction: its Harvard-Oxford structures (`--region` picks)."""
    from tribe_stream.errors import InputError
    from tribe_stream.regions import structure_atlas
    from tribe_stream.spaces import subcortical_mask

    if options.atlas or options.annot:
        raise InputError(
            "a volume (the subcortical model's NIfTI) has its own regions, the Harvard-Oxford "
            "structures; leave out --atlas/--annot (--region picks structures)"
        )
    mask = subcortical_mask()
    return structure_atlas(mask.structures, "harvard-oxford-subcortical").select(options.regions)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tribe_stream.offline_outputs import read_prediction_file
    from tribe_stream.outputs import check_output
    from tribe_stream.volume_outputs import volume_suffix

    out = check_output(args.out, (".csv",)) if args.out else None
    top_out = out.with_name(out.stem + ".top.csv") if out is not None and args.top else None
    if top_out is not None:
        check_output(top_out, (".csv",))
    options = from_args(AtlasOptions, args)
    # the file first: a missing or damaged one is said before an atlas is fetched or read
    values, seconds, _ = read_prediction_file(args.pred)
    if volume_suffix(args.pred) in (".nii.gz", ".nii"):
        atlas = _structures(options)  # the subcortical model's voxels: Harvard-Oxford structures
    else:
        atlas = options.load()
    means = atlas.means(values)
    console = Console(stderr=True)
    for note in atlas.notes:
        console.print(note, markup=False)
    if out is not None:
        write_csv(
            out,
            ["second", *atlas.names],
            ([f"{s:g}", *(f"{m:.6g}" for m in row)] for s, row in zip(seconds, means, strict=True)),
        )
        console.print(f"wrote {out}: {len(seconds)} seconds x {len(atlas.names)} regions")
    if args.top:
        top = atlas.top(means, args.top)
        if top_out is not None:
            write_csv(
                top_out,
                ["second", "rank", "region", "mean"],
                (
                    [f"{s:g}", r + 1, atlas.names[i], f"{means[t, i]:.6g}"]
                    for t, s in enumerate(seconds)
                    for r, i in enumerate(top[t])
                ),
            )
            console.print(f"wrote {top_out}: the {top.shape[1]} most active regions per second")
    overall = means.mean(axis=0)
    order = overall.argsort()[::-1][: args.show or args.top or 10]
    table = Table(title=f"most active regions over {len(seconds)} s ({len(atlas.names)} regions)")
    for col in ("region", "mean", "peak", "peak second", "vertices"):
        table.add_column(col, justify="left" if col == "region" else "right")
    sizes = atlas.sizes
    for i in order:
        k = int(means[:, i].argmax())
        table.add_row(
            atlas.names[i],
            f"{overall[i]:.3f}",
            f"{means[k, i]:.3f}",
            f"{seconds[k]:g}",
            str(int(sizes[i])),
        )
    Console().print(table)
    return 0
