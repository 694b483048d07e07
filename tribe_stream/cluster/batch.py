"""A batch of files to predict: which outputs to write, which are finished, and running them.

A job is one input file and the output it gives. An output is **finished** when every file of
it (`offline_outputs.file_names`: its `NAME.words.tsv`, the `.npy` and its `.json`, both
hemispheres, ...) is present under its final name: each is written to a temporary name and
renamed into place (`outputs.atomic_write`), so a present file is a whole file, and the last
rename is the marker (`save_predictions` writes any `--contributions` files and the words file
before the output's own files). With `resume`, finished outputs are skipped and partial ones (a
worker killed between two renames, or an output from before words files) redone; temporary
files left by killed writers are removed when the jobs are planned (and after a cluster run).

`predict_files` is the Python API over a folder of outputs, in this process or on a Ray cluster
(`cluster=`): both paths call `run_job` with a `Predictor`, so their files are the same for the
same options (docs/CLUSTER.md, "The same answers everywhere", says how close across thread counts).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tribe_stream.errors import InputError, TribeStreamError

if TYPE_CHECKING:
    from tribe_stream.prediction import PredictOptions, Predictor

TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.\d+\.[0-9a-f]{8}\.tmp(?P<suffix>\.[^.]+)$")
"""The name `outputs.atomic_write` gives a file while it is being written."""


@dataclass(frozen=True)
class Job:
    """One input and the output path it is predicted to (absolute, for every node)."""

    media: str
    target: str


@dataclass
class JobResult:
    """What became of one job: the files written, or the error of its last try."""

    job: Job
    ok: bool
    files: list[str] = field(default_factory=list)
    seconds: int = 0
    """Seconds of stimulus predicted (rows)."""
    wall_s: float = 0.0
    cached: bool = False
    error: str | None = None
    worker: int | None = None
    tries: int = 1


@dataclass
class WorkerStats:
    """One worker (a Ray actor, or this process): where it ran and what it did."""

    index: int
    host: str = ""
    pid: int | None = None
    device: str = ""
    alive: bool = False
    files: int = 0
    media_s: float = 0.0
    busy_s: float = 0.0
    retried: int = 0
    """Files taken from this worker and tried again (it died, or the try failed unexpectedly)."""
    failed: int = 0
    restarts: int = 0
    error: str | None = None
    """Why the worker is gone for good, when it is."""

    def add(self, r: JobResult) -> None:
        """Count a finished file."""
        self.files += r.ok
        self.failed += not r.ok
        self.media_s += r.seconds
        self.busy_s += r.wall_s

    @property
    def rate(self) -> float:
        """Seconds of media predicted per second of work."""
        return self.media_s / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class BatchProgress:
    """A snapshot for progress displays."""

    total: int
    done: int
    failed: int
    media_s: float
    alive: int
    workers: int
    running: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    """worker index -> (input, worker pid) for every file in flight."""


@dataclass
class BatchReport:
    """The end of a batch: every job's result, the outputs found finished, the workers."""

    results: list[JobResult]
    skipped: list[Job]
    workers: list[WorkerStats]
    wall_s: float

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if not r.ok]

    @property
    def media_s(self) -> float:
        return float(sum(r.seconds for r in self.results if r.ok))


def output_folder(out: str | os.PathLike) -> Path:
    """`--out` as a folder for several outputs (made if its parent exists)."""
    from tribe_stream.outputs import check_output_folder

    return check_output_folder(out, "several inputs' outputs").absolute()


def finished(job: Job) -> bool:
    """Whether the job's output is finished: every file of its main output present under its
    final name (written last, after any contributions, so it marks the whole set)."""
    from tribe_stream.offline_outputs import file_names

    return all(f.exists() for f in file_names(job.target))


def plan_jobs(
    media: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    format: str = "npy",
    overwrite: bool = False,
    resume: bool = False,
    transcript: str | None = None,
    contributions: bool = False,
) -> tuple[list[Job], list[Job]]:
    """`(to do, finished)` jobs for inputs (files, folders, manifests) and `out`, every output
    checked before any model loads. One media file and `out` not a folder: `out` is that output
    (its extension picks the format); otherwise `out` is a folder of `NAME.<format>` files. An
    existing output is refused unless `overwrite` (redo it) or `resume` (skip it when finished,
    redo it when partial). Temporaries that killed writers left beside the outputs to do are
    removed (`remove_temporaries`)."""
    from collections import Counter

    from tribe_stream.manifest import is_manifest
    from tribe_stream.offline_outputs import FORMATS, contribution_files, output_files
    from tribe_stream.prediction import collect_media

    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    files = [f.absolute() for f in collect_media(media)]
    first = Path(media[0]).expanduser()
    target = Path(out).expanduser().absolute()
    if len(files) == 1 and not first.is_dir() and not is_manifest(first) and not target.is_dir():
        jobs = [Job(str(files[0]), str(target))]
    else:
        folder = output_folder(out)
        twice = sorted(n for n, k in Counter(f.stem for f in files).items() if k > 1)
        if twice:
            raise InputError(f"several inputs are called {twice[:5]}: their outputs would clash")
        jobs = [Job(str(f), str(folder / (f.stem + FORMATS[format]))) for f in files]
    if transcript and len(jobs) > 1:
        raise InputError("--transcript gives the words of one input; predict that file alone")
    todo, done = [], []
    for job in jobs:
        if resume and not overwrite and finished(job):
            done.append(job)
            continue
        outputs = output_files(job.target) + (
            contribution_files(job.target) if contributions else []
        )
        present = [f for f in outputs if f.exists()]
        if present and not (overwrite or resume):
            shown = next((f for f in present if not f.name.endswith(".words.tsv")), present[0])
            raise InputError(
                f"{shown} exists; pass --overwrite to replace it "
                "(or --resume to skip finished outputs)"
            )
        todo.append(job)
    remove_temporaries(todo)
    return todo, done


def remove_temporaries(jobs: Sequence[Job]) -> int:
    """Delete the temporary files that killed writers left beside these jobs' outputs (one
    listing per folder); returns how many. Call it only while no worker writes there."""
    from tribe_stream.offline_outputs import contribution_path, file_names
    from tribe_stream.types import MODALITIES

    wanted: dict[Path, set[tuple[str, str]]] = {}
    for job in jobs:
        targets = [job.target] + [contribution_path(job.target, m) for m in MODALITIES]
        for f in (f for t in targets for f in file_names(t)):
            wanted.setdefault(f.parent, set()).add((f.stem, f.suffix))
    removed = 0
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            m = TEMPORARY.match(entry.name)
            if m and (m["stem"], m["suffix"]) in names:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def run_job(predictor: Predictor, job: Job) -> JobResult:
    """Predict one file and write its output. A bad input is a failed result (trying it again
    would fail again); any other exception is raised, for the caller to try again."""
    t0 = time.perf_counter()
    try:
        preds = predictor.predict(job.media)
        files = preds.save(job.target)
    except TribeStreamError as exc:
        return JobResult(job, ok=False, error=str(exc), wall_s=time.perf_counter() - t0)
    return JobResult(
        job,
        ok=True,
        files=[str(f) for f in files],
        seconds=len(preds),
        wall_s=time.perf_counter() - t0,
        cached=bool(preds.timings.get("cached")),
    )


def run_in_process(
    jobs: Sequence[Job],
    options: PredictOptions,
    *,
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[JobResult], list[WorkerStats]]:
    """The jobs one after the other with one `Predictor` in this process."""
    import socket

    from tribe_stream.prediction import Predictor

    predictor = Predictor(options)
    me = WorkerStats(0, socket.gethostname(), os.getpid(), predictor.device, alive=True)
    results: list[JobResult] = []
    for job in jobs:
        if should_stop and should_stop():
            break
        if on_progress:
            on_progress(snapshot(len(jobs), results, [me], {0: (job.media, me.pid)}))
        try:
            r = run_job(predictor, job)
        except Exception as exc:  # noqa: BLE001 - one file's crash never costs the others
            r = JobResult(job, ok=False, error=f"{type(exc).__name__}: {exc}")
        r.worker = 0
        me.add(r)
        results.append(r)
    if on_progress:
        on_progress(snapshot(len(jobs), results, [me], {}))
    return results, [me]


def snapshot(total, results, workers, running) -> BatchProgress:
    """The display's view of a batch: `results` so far, `running` {worker: (input, pid)}."""
    return BatchProgress(
        total=total,
        done=len(results),
        failed=sum(not r.ok for r in results),
        media_s=float(sum(r.seconds for r in results)),
        alive=sum(w.alive for w in workers),
        workers=len(workers),
        running=dict(running),
    )
