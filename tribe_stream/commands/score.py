"""`tribe-stream score PRED --bold RUN [--bold RUN ...] --out MAP`: predictions against measured
BOLD on fsaverage5 (`tribe_stream/score.py`): the per-vertex r map, the noise ceiling of several
runs, a region table with an atlas, a picture."""

from __future__ import annotations

import argparse

from tribe_stream.options import AtlasOptions, add_options, from_args, number

NAME = "score"
HELP = "per-vertex r of predictions against measured BOLD (CIFTI-2, GIfTI or MGH on fsaverage5)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="prediction file (.npy, .h5, .func.gii, .mgh/.mgz)")
    p.add_argument(
        "--bold",
        action="append",
        required=True,
        metavar="RUN",
        help="measured BOLD on fsaverage5: a .dtseries.nii, or a GIfTI/MGH pair (either "
        "hemisphere's file); repeat for runs of the same stimulus (averaged; a noise ceiling)",
    )
    p.add_argument(
        "--tr",
        type=number(above=0),
        default=None,
        help="seconds between volumes (default: the BOLD file's, else 1)",
    )
    p.add_argument(
        "--onset",
        type=number(),
        default=0.0,
        help="stimulus time of the first volume, s (default 0: the scan starts with it)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="the r map (.npy, .h5, .func.gii, .mgh, .mgz); beside it NAME.png, with runs "
        "NAME.ceiling.EXT, with an atlas NAME.regions.csv",
    )
    add_options(p, AtlasOptions)
    p.add_argument("--no-picture", action="store_true", help="skip the PNG of the r map")


def run(args: argparse.Namespace) -> int:
    from tribe_stream.score import output_paths, render_picture, score
    from tribe_stream.untrained import UNTRAINED_LABEL, is_untrained
    from tribe_stream.viewer.backend import DisplayError

    atlas_options = from_args(AtlasOptions, args)
    atlas = atlas_options.load() if atlas_options.given else None
    paths = output_paths(args.out, ceiling=len(args.bold) > 1, atlas=atlas is not None)
    result = score(args.pred, args.bold, tr=args.tr, onset=args.onset)
    if is_untrained(result.metadata):
        print(UNTRAINED_LABEL)
    written = result.save(args.out, atlas=atlas, picture=False)
    if not args.no_picture:
        try:
            written.append(render_picture(result, paths["picture"]))
        except DisplayError as exc:
            print(f"no picture: {exc}")
    s = result.summary()
    line = (
        f"r over {s['volumes']} volumes (TR {s['tr_s']:g} s, onset {s['onset_s']:g} s, "
        f"{s['runs']} run{'s' if s['runs'] > 1 else ''}): mean {s['r_mean']:.3f}, median "
        f"{s['r_median']:.3f}, 95th percentile {s['r_p95']:.3f}"
    )
    if result.ceiling is not None:
        line += f"; noise ceiling mean {s['ceiling_mean']:.3f}"
    print(line)
    if s["undefined_vertices"]:
        print(f"{s['undefined_vertices']} vertices have no r (constant or no data): 0 in the map")
    if atlas is not None:
        rows = sorted(result.region_rows(atlas), key=lambda r: -_finite(r["r_region"]))
        best = ", ".join(f"{r['region']} {r['r_region']:.2f}" for r in rows[:5])
        print(f"best regions (r of region means): {best}")
    print("wrote " + ", ".join(str(f) for f in written))
    return 0


def _finite(x: float) -> float:
    return x if x == x else float("-inf")
