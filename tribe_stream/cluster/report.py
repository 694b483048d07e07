"""What a batch shows on the terminal: one bar for the whole run, then a summary per worker."""

from __future__ import annotations

from collections.abc import Callable

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

from tribe_stream.cluster.batch import BatchProgress, BatchReport


class RunBar:
    """One bar: files done of all, media seconds, workers alive, elapsed and ETA."""

    def __init__(self, console: Console, total: int):
        self.bars = Progress(
            TextColumn("files"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[media]:.0f} media s"),
            TextColumn("{task.fields[alive]}/{task.fields[workers]} workers alive"),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bars.add_task(
            "files", total=total, media=0.0, alive=0, workers=0, failed=0
        )

    def __enter__(self) -> Callable[[BatchProgress], None]:
        self.bars.__enter__()
        return self.update

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def update(self, p: BatchProgress) -> None:
        self.bars.update(
            self.task,
            completed=p.done,
            media=p.media_s,
            alive=p.alive,
            workers=p.workers,
            failed=p.failed,
        )


def summary(report: BatchReport, total: int) -> Table:
    """Per worker: where it ran (host, device, last pid), files, media seconds and their rate,
    files taken from it and tried again, failures, restarts."""
    ok = len(report.results) - len(report.failed)
    table = Table(title=f"tribe-stream predict: {ok} of {total} files")
    for col in ("worker", "where", "files", "media s", "media s/s", "retried", "failed",
                "restarts"):  # fmt: skip
        table.add_column(col, justify="left" if col == "where" else "right")
    for w in report.workers:
        where = f"{w.host} {w.device} pid {w.pid}" if w.pid else (w.error or "never started")
        table.add_row(
            str(w.index),
            where,
            str(w.files),
            f"{w.media_s:.0f}",
            f"{w.rate:.1f}",
            str(w.retried),
            str(w.failed),
            str(w.restarts),
        )
    return table


def print_report(console: Console, report: BatchReport, total: int) -> None:
    """The failures (one line each), the table, and the totals."""
    for r in report.failed:
        console.print(f"{r.job.media}: {r.error}", style="red", markup=False, soft_wrap=True)
    if report.workers:
        console.print(summary(report, total))
    rate = report.media_s / report.wall_s if report.wall_s > 0 else 0.0
    left = total - len(report.results) - len(report.skipped)
    console.print(
        f"{report.media_s:.0f} s of stimulus in {report.wall_s:.1f} s ({rate:.1f}x real time); "
        f"{len(report.failed)} failed; {len(report.skipped)} finished outputs skipped"
        + (f"; {left} not done" if left else ""),
        markup=False,
    )


def run_command(
    console: Console,
    options,
    todo,
    done,
    *,
    cluster: str | None,
    out,
    workers: int | None,
    cpus_per_worker: int,
    tries: int,
    stop,
) -> int:
    """`predict --ray`: the bar, the batch, the report; the exit code (1 when any file failed
    or was left undone, the signal's code when stopped)."""
    from tribe_stream.cluster.run import run_batch

    if options.checkpoint == "demo":
        console.print(
            "UNTRAINED demo weights: the maps mean nothing about the brain", style="yellow"
        )
    with RunBar(console, len(todo)) as on_progress:
        report = run_batch(
            todo,
            done,
            options,
            cluster=cluster,
            out=out,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            tries=tries,
            on_progress=on_progress,
            should_stop=stop.is_set,
        )
    print_report(console, report, len(todo) + len(done))
    if stop.code is not None:
        return stop.code
    left = len(todo) - len(report.results)
    return 1 if report.failed or left else 0
