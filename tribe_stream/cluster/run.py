"""A batch run here or on Ray: `predict_files` (the Python API) and `run_batch` (`predict`).

`batch.py` plans and runs in this process; `ray_pool.py` runs on Ray actors; this module picks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tribe_stream.cluster.batch import (
    BatchProgress,
    BatchReport,
    Job,
    output_folder,
    plan_jobs,
    remove_temporaries,
    run_in_process,
)
from tribe_stream.cluster.ray_pool import run_on_ray
from tribe_stream.options import PredictOptions


def predict_files(
    media: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "npy",
    cluster: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    tries: int = 3,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: Callable[[BatchProgress], None] | None = None,
    **options: Any,
) -> BatchReport:
    """Predict many files (paths, folders, manifests) into the folder `out`, one
    `NAME.<format>` each. `cluster`: None runs here; `"local"` starts a Ray cluster on this
    machine, `"auto"` joins the running one, `"HOST:PORT"` or `"ray://HOST:10001"` a given one
    (then `out` and the feature cache must be on a filesystem every node sees). Other keywords
    are `PredictOptions` fields. Failed files are in `report.failed`; the others are written."""
    items = [media] if isinstance(media, (str, os.PathLike)) else list(media)
    opts = PredictOptions(**options).validate()
    folder = output_folder(out)
    todo, done = plan_jobs(
        items,
        folder,
        format=format,
        overwrite=overwrite,
        resume=resume,
        transcript=opts.transcript,
        contributions=opts.contributions,
    )
    return run_batch(
        todo,
        done,
        opts,
        cluster=cluster,
        out=folder,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        tries=tries,
        on_progress=on_progress,
    )


def run_batch(
    todo: Sequence[Job],
    done: Sequence[Job],
    options: PredictOptions,
    *,
    cluster: str | None,
    out: Path | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    tries: int = 3,
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchReport:
    """Run jobs planned by `plan_jobs` here (`cluster=None`) or on Ray; nothing to do starts
    nothing. On a cluster the feature cache defaults to `out/.tribe-cache` (every node sees it)."""
    from dataclasses import replace

    t0 = time.perf_counter()
    if not todo:
        return BatchReport([], list(done), [], 0.0)
    if cluster is None:
        results, stats = run_in_process(
            todo, options, on_progress=on_progress, should_stop=should_stop
        )
    else:
        if options.use_cache and options.cache is None and out is not None:
            options = replace(options, cache=str(out / ".tribe-cache"))
        results, stats = run_on_ray(
            todo,
            options,
            address=cluster,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            tries=tries,
            on_progress=on_progress,
            should_stop=should_stop,
        )
    remove_temporaries(todo)
    return BatchReport(results, list(done), stats, time.perf_counter() - t0)
