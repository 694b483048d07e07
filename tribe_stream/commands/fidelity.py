"""`tribe-stream fidelity MEDIA --checkpoint SRC [--lags 0,2,5,10] [--out DIR]`: how closely the
live stream follows the offline prediction, at each lag (tribe_stream/fidelity.py); prints two
tables and writes the report files (`fidelity.OUTPUT_FILES`) into DIR.
"""

from __future__ import annotations

import argparse

NAME = "fidelity"
HELP = "measure the live stream against the offline prediction, per lag and per vertex"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tribe_stream.fidelity import FidelityOptions
    from tribe_stream.options import add_options

    p.add_argument("media", help="a video or audio file (anything FFmpeg reads)")
    add_options(p, FidelityOptions, skip=FidelityOptions.CLI_SKIP)
    p.add_argument("--out", metavar="DIR", help="report folder (default ./fidelity)")
    p.add_argument("--no-map", action="store_true", help="skip the cortex picture (no OpenGL)")
    p.add_argument("--overwrite", action="store_true", help="replace report files that exist")


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def tables(report, media: str) -> list:
    """Two rich tables: the predictions' agreement per lag, then the features' and words'."""
    from rich.table import Table

    rows = report.rows()
    preds = Table(title=f"live vs offline predictions: {media}, {report.offline_seconds} s")
    for h in ("lag s", "r mean", "median", "p5", "MAD", "max |d|", "context", "features"):
        preds.add_column(h, justify="right")
    for row in rows:
        cells = [row[k] for k in ("r_mean", "r_median", "r_p05", "mad", "max_abs_diff")]
        cells += [row["r_context_mean"], row["r_features_mean"]]
        preds.add_row(f"{row['lag_s']:g}", *map(_fmt, cells))
    feats = Table(title="live vs offline features (r / relative error) and words")
    mods = [m for m in ("text", "audio", "video") if any(m in x.modalities for x in report.lags)]
    for h in ["lag s", *mods, "words live", "late", "offline"]:
        feats.add_column(h, justify="right")
    for row in rows:
        cells = []
        for m in mods:
            r, e = row[f"{m}_feature_r"], row[f"{m}_feature_rel_error"]
            cells.append("absent" if r is None else f"{r:.3f} / {e:.3f}")
        words = (row["words_live"], row["late_words"], row["words_offline"])
        feats.add_row(f"{row['lag_s']:g}", *cells, *(str(w) for w in words))
    return [preds, feats]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tribe_stream.fidelity import FidelityOptions, check_media, check_outputs, measure
    from tribe_stream.options import from_args

    check_media(args.media)  # the cheap checks first, then the options, then the outputs
    options = from_args(FidelityOptions, args).validate()
    folder = args.out or "fidelity"
    check_outputs(folder, args.overwrite)  # before any model loads
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        task = bars.add_task("", total=1)

        def note(stage: str, done: int, total: int) -> None:
            bars.update(task, description=stage, completed=done, total=max(total, 1))

        result = measure(args.media, options, progress=note)
    report = result.report
    out = Console()
    for table in tables(report, args.media):
        out.print(table)
    out.print(
        "r: Pearson r over time per vertex, live against offline; context: live against the "
        "offline windows run on the live features (the brain model's missing right-hand "
        "context); features: those against offline (what the live extractors change)",
        style="dim",
    )
    if report.untrained:
        out.print(
            "UNTRAINED demo weights: these numbers describe the pipeline, not the real model; "
            "run with --checkpoint facebook/tribev2 for that",
            style="yellow",
        )
    for line in report.notes:
        out.print(line, markup=False, soft_wrap=True)
    written, problems = result.write(folder, overwrite=args.overwrite, map_image=not args.no_map)
    for p in written:
        out.print(f"wrote {p}", markup=False, soft_wrap=True)
    for line in problems:
        console.print(line, style="red", markup=False)
    return 1 if problems else 0
