"""`tribe-stream predict MEDIA... --checkpoint SRC --out OUT`: whole files in, fMRI predictions out.

One input: OUT is the output file (its extension picks the format). Several inputs or a folder:
OUT is a folder and each input gives `OUT/NAME.<format>`. A bad input is reported and the others
are still predicted; the command then exits 1.
"""

from __future__ import annotations

import argparse

from tribe_stream.options import PredictOptions, add_options, from_args, number

NAME = "predict"
HELP = "predict fMRI for whole media files (video, audio, .txt) with the official windows"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("media", nargs="+", help="video, audio or .txt files, or folders of them")
    p.add_argument(
        "--out",
        required=True,
        help="output file (.npy, .h5, .func.gii, .mgh/.mgz) for one input; a folder for several",
    )
    p.add_argument(
        "--format",
        default=None,
        choices=["npy", "h5", "gii", "mgh", "mgz"],
        help="with several inputs or --bids-name: the format of each output (default npy; gii "
        "with --bids-name)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs whose outputs are finished (all their files there); redo partial ones",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread the files over Ray workers (after the inputs; docs/CLUSTER.md): no address "
        "starts a local cluster, `auto` joins the running one, HOST:PORT or ray://HOST:PORT",
    )
    p.add_argument(
        "--workers",
        type=number(int, minimum=1),
        help="with --ray: how many (default: one per GPU, else one per --cpus-per-worker CPUs)",
    )
    p.add_argument(
        "--cpus-per-worker", type=number(int, minimum=1), default=1, help="with --ray (default 1)"
    )
    p.add_argument(
        "--tries",
        type=number(int, minimum=1),
        default=3,
        help="with --ray: tries per file when its worker dies (default 3)",
    )
    add_options(p, PredictOptions)


def plan(args) -> tuple[list[tuple], list]:
    """(input, output) pairs to do, every output checked before any model loads, and the jobs
    whose outputs are finished (with --resume); `tribe_stream.cluster.batch.plan_jobs`."""
    from pathlib import Path

    from tribe_stream.cluster.batch import plan_jobs

    out, fmt = args.out, args.format or ("gii" if args.bids_name else "npy")
    if args.bids_name:
        out = bids_target(args.media, args.out, args.bids_name, fmt)
    todo, finished = plan_jobs(
        args.media,
        out,
        format=fmt,
        overwrite=args.overwrite,
        resume=args.resume,
        transcript=args.transcript,
        contributions=args.contributions,
    )
    return [(Path(j.media), Path(j.target)) for j in todo], finished


def bids_target(media: list[str], out: str, entities: str, fmt: str):
    """`--bids-name`: one media file, `out` a folder (made, parents too): the output's path there
    (`offline_outputs.bids_output`)."""
    from pathlib import Path

    from tribe_stream.errors import InputError
    from tribe_stream.manifest import is_manifest
    from tribe_stream.offline_outputs import SUFFIXES, bids_output

    target = bids_output(out, entities, fmt)  # the name checked first
    if len(media) != 1 or not Path(media[0]).is_file() or is_manifest(Path(media[0])):
        raise InputError("--bids-name names one run: give one media file")
    folder = Path(out).expanduser()
    if folder.name.lower().endswith(SUFFIXES) or (folder.exists() and not folder.is_dir()):
        raise InputError(
            f"--out {out}: with --bids-name, --out is the folder the BIDS files go in "
            "(--format picks their format)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return target


def contributions_line(media, preds) -> str:
    """What `--contributions` made for one input: each modality alone, or why it has no file."""
    states = preds.metadata["contributions"]
    made = [m for m, st in states.items() if st == "present"]
    absent = [f"{m} absent ({st.removeprefix('absent: ')})" for m, st in states.items()
              if st != "present"]  # fmt: skip
    line = f"{media}: contributions of {', '.join(made)} alone"
    line += f" ({preds.timings.get('contributions_s', 0.0):.2f} s)"
    return line + (f"; no file: {'; '.join(absent)}" if absent else "")


def summary_line(seconds: float, wall: float, startup: float, failed: int) -> str:
    """The real-time factor of the predictions alone and of the whole command (with the
    start-up: imports and loading the models), both said."""
    total = wall + startup
    return (
        f"{seconds:g} s of stimulus predicted in {wall:.1f} s ({seconds / max(wall, 1e-9):.1f}x "
        f"real time); {total:.1f} s with the {startup:.1f} s start-up of loading the models "
        f"({seconds / max(total, 1e-9):.1f}x real time); {failed} failed"
    )


def run(args) -> int:
    import signal
    import time

    t_start = time.perf_counter()  # the start-up (imports, models) counts in the summary too

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.errors import TribeStreamError
    from tribe_stream.prediction import Predictor

    if args.ray is None and args.workers is not None:
        from tribe_stream.errors import InputError

        raise InputError("--workers spreads files over Ray workers: add --ray (docs/CLUSTER.md)")
    pairs, finished = plan(args)  # every input and output checked before torch or any model
    options = from_args(PredictOptions, args).validate()
    if len(pairs) + len(finished) == 1 and pairs:  # one file: unreadable, said before models
        from tribe_stream.prediction import check_media

        check_media(pairs[0][0])
    console = Console(stderr=True)

    def stopping() -> None:  # said at once: the file in progress may take minutes to finish
        again = (
            " (Ctrl-C again stops at once)" if stop.signal == signal.SIGINT else " (again: at once)"
        )
        console.print(
            f"{stop.signal.name}: finishing the files in progress, then stopping{again}",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )

    stop = stop_on_signals(on_stop=stopping)
    if args.ray is not None:
        from tribe_stream.cluster.batch import Job, output_folder
        from tribe_stream.cluster.report import run_command

        jobs = [Job(str(m), str(t)) for m, t in pairs]
        return run_command(console, options, jobs, finished, cluster=args.ray,
                           out=output_folder(args.out) if len(pairs) + len(finished) > 1 else None,
                           workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                           tries=args.tries, stop=stop)  # fmt: skip
    if finished:
        console.print(f"{len(finished)} finished outputs skipped (--resume)", markup=False)
    if not pairs:
        return 0
    predictor = Predictor(options)
    results = Console()  # what was made goes to stdout; progress and diagnostics to stderr
    if predictor.loaded.identity.get("untrained"):
        console.print(
            "UNTRAINED demo weights: the maps mean nothing about the brain", style="yellow"
        )
    rows, failed = [], 0
    totals = {"seconds": 0, "windows": 0, "extract_s": 0.0, "predict_s": 0.0, "cached": 0}
    t_all = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bars:
        files = bars.add_task("files", total=len(pairs))
        current = bars.add_task("", total=1)
        for media, target in pairs:
            if stop.is_set():
                break

            def note(stage: str, done: int, total: int, media=media) -> None:
                bars.update(
                    current, description=f"{media.name}: {stage}", completed=done, total=total
                )

            try:
                preds = predictor.predict(media, progress=note)
                written = preds.save(target)
            except TribeStreamError as exc:
                failed += 1
                console.print(f"{media}: {exc}", style="red", markup=False, soft_wrap=True)
                rows.append((media.name, "failed", "", "", "", ""))
                bars.advance(files)
                continue
            t = preds.timings
            for key in ("extract_s", "predict_s", "windows"):
                totals[key] += t.get(key, 0)
            totals["seconds"] += preds.metadata.get("predicted_seconds", len(preds))  # --tr
            totals["cached"] += int(t.get("cached", 0))
            results.print(
                f"{media} -> {', '.join(str(w) for w in written)}", markup=False, soft_wrap=True
            )
            if preds.metadata.get("contributions"):
                results.print(contributions_line(media, preds), markup=False, soft_wrap=True)
            rows.append(
                (
                    media.name,
                    str(preds.metadata.get("predicted_seconds", len(preds))),
                    str(int(t.get("windows", 0))),
                    f"{t.get('extract_s', 0.0):.1f}",
                    f"{t.get('predict_s', 0.0):.2f}",
                    "hit" if t.get("cached") else "miss",
                )
            )
            bars.advance(files)
    wall = time.perf_counter() - t_all
    startup = t_all - t_start
    table = Table(title=f"tribe-stream predict: {len(rows) - failed} of {len(pairs)} files")
    for col in ("input", "seconds", "windows", "features s", "brain model s", "cache"):
        table.add_column(col, justify="left" if col in ("input", "cache") else "right")
    for r in rows:
        table.add_row(*r)
    table.add_row(
        "total",
        str(totals["seconds"]),
        str(int(totals["windows"])),
        f"{totals['extract_s']:.1f}",
        f"{totals['predict_s']:.2f}",
        f"{totals['cached']} hits",
        end_section=True,
    )
    results.print(table)
    results.print(
        summary_line(totals["seconds"], wall, startup, failed), markup=False, soft_wrap=True
    )
    if stop.code is not None:
        return stop.code
    return 1 if failed else 0
