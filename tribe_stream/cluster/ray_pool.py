"""A batch on a Ray cluster: one actor per GPU (or per CPU slot), each a `Predictor` kept warm.

Ray places the actors and restarts one whose process dies (`max_restarts=-1`: on its node, or on
another when the node is gone); this driver only hands each live actor its next file and, when
an actor dies mid-file, puts that file back at the front of the queue for whichever actor is free
next. A file is tried at most `tries` times; a bad input (a `TribeStreamError`) is not tried
again. The actors write the outputs themselves (a shared folder), through the same
`batch.run_job` as an in-process run.

Ray is an optional extra (`pip install 'tribe-stream[ray]'`); nothing here imports it before a
cluster run starts. Usage statistics are off, and a local cluster starts without its dashboard,
listening on loopback only.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tribe_stream.cluster.batch import (
    BatchProgress,
    Job,
    JobResult,
    WorkerStats,
    run_job,
    snapshot,
)
from tribe_stream.errors import InputError

if TYPE_CHECKING:
    from tribe_stream.prediction import PredictOptions

RAY_HINT = "pip install 'tribe-stream[ray]'"
STALL_S = 600.0
"""Give up on the files left when no worker has been alive for this long."""


def import_ray():
    """`ray`, with usage statistics off; one line when it is not installed."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise InputError(f"running on a cluster needs Ray: {RAY_HINT}") from None
    return ray


def connect(address: str | None) -> bool:
    """Join (or start) the cluster `address` names: None or `local` starts one on this machine,
    `auto` joins the one running here, `HOST:PORT` its head, `ray://HOST:PORT` through Ray Client.
    Returns whether this call connected (and so should disconnect)."""
    if address in (None, "local"):  # on 127.0.0.1 only (on Linux Ray takes the LAN address and
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every interface)
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address in (None, "local"):  # Ray read the variable when first imported: maybe earlier
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address in (None, "local"):
            # Ray turns token authentication on for a local cluster and warns that it did
            logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
            ray.init(address="local", include_dashboard=False, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(
            f"cannot reach a Ray cluster at {address}: {_one_line(exc)}; start one "
            "(`ray start --head`, docs/CLUSTER.md) or give --ray without an address for a "
            "local one"
        ) from None
    except ImportError as exc:  # ray:// needs Ray Client's gRPC
        raise InputError(
            f"{address}: Ray Client needs `pip install 'ray[client]'` ({exc})"
        ) from None
    return True


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = next((s.strip() for s in str(exc).splitlines() if s.strip()), type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PredictWorker:
    """The actor: a `Predictor` loaded once (extractors included), then one file per call."""

    def __init__(self, options: PredictOptions):
        import ray
        import torch

        from tribe_stream.prediction import Predictor

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:  # the threads Ray gave this worker, as many as an in-process run would use
            torch.set_num_threads(max(1, int(cpus)))
        self.predictor = Predictor(options)
        if self.predictor.modalities:
            self.predictor.extractors  # noqa: B018 - load now: every file finds them warm

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": self.predictor.device}

    def run(self, job: Job) -> JobResult:
        return run_job(self.predictor, job)


def worker_count(resources: dict[str, float], cpus_per_worker: int) -> tuple[int, bool]:
    """`(workers, on GPUs)`: one per GPU in the cluster, else one per `cpus_per_worker` CPUs."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, True
    return max(1, int(resources.get("CPU", 1) // cpus_per_worker)), False


def run_on_ray(
    jobs: Sequence[Job],
    options: PredictOptions,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    tries: int = 3,
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stall_s: float = STALL_S,
) -> tuple[list[JobResult], list[WorkerStats]]:
    """Predict `jobs` on the cluster at `address` (see `connect`); returns every finished job's
    result (in job order) and each worker's record."""
    owned = connect(address)  # first: a local cluster's loopback setting precedes the import
    ray = import_ray()
    try:
        n, gpu = worker_count(ray.cluster_resources(), cpus_per_worker)
        n = max(1, min(workers or n, len(jobs)))
        actor = ray.remote(PredictWorker).options(
            num_cpus=cpus_per_worker,
            num_gpus=1 if gpu else 0,
            max_restarts=-1,
            max_task_retries=0,
        )
        handles = [actor.remote(options) for _ in range(n)]
        try:
            return _drive(
                ray, handles, jobs, tries, on_progress, should_stop or (lambda: False), stall_s
            )
        finally:
            for h in handles:
                ray.kill(h, no_restart=True)
    finally:
        if owned:
            ray.shutdown()


def _drive(ray, handles, jobs, tries, on_progress, should_stop, stall_s):
    from ray.exceptions import ActorUnavailableError, RayError, RayTaskError

    stats = [WorkerStats(i) for i in range(len(handles))]
    pending: deque[Job] = deque(jobs)
    attempts: Counter[Job] = Counter()
    done: dict[Job, JobResult] = {}
    starting = {h.info.remote(): i for i, h in enumerate(handles)}  # resolves once it is up
    running: dict[Any, tuple[int, Job]] = {}
    later: list[tuple[float, int]] = []  # (when, worker): ask a restarting worker again
    last_alive = time.monotonic()

    def report() -> None:
        if on_progress:
            now_running = {i: (job.media, stats[i].pid) for i, job in running.values()}
            on_progress(snapshot(len(jobs), list(done.values()), stats, now_running))

    def dispatch() -> None:
        """Each live worker without a file gets the next one (and the display hears of it)."""
        busy = {i for i, _ in running.values()}
        given = False
        for w in stats:
            if w.alive and w.index not in busy and pending and not should_stop():
                job = pending.popleft()
                attempts[job] += 1
                running[handles[w.index].run.remote(job)] = (w.index, job)
                given = True
        if given:
            report()

    def again(job: Job, i: int, why: str) -> None:
        if attempts[job] < tries:
            stats[i].retried += 1
            pending.appendleft(job)
        else:
            stats[i].failed += 1
            done[job] = JobResult(job, ok=False, error=why, worker=i, tries=attempts[job])

    report()
    while True:
        for when, i in [x for x in later if x[0] <= time.monotonic()]:
            later.remove((when, i))
            starting[handles[i].info.remote()] = i
        dispatch()
        if not running and not (pending and (starting or later) and not should_stop()):
            break
        refs = [*starting, *running]
        ready, _ = ray.wait(refs, num_returns=1, timeout=1.0) if refs else ([], [])
        if not refs:
            time.sleep(0.5)
        now = time.monotonic()
        if any(w.alive for w in stats):
            last_alive = now
        if not ready:
            if not running and now - last_alive > stall_s:
                break
            report()
            continue
        ref = ready[0]
        if ref in starting:
            i = starting.pop(ref)
            try:
                info = ray.get(ref)
            except ActorUnavailableError:  # still restarting: ask again in a moment
                later.append((now + 0.5, i))
                continue
            except RayError as exc:  # its constructor failed, or it cannot be placed
                stats[i].error = _one_line(getattr(exc, "cause", None) or exc)
                continue
            w = stats[i]
            w.restarts += w.pid is not None
            w.pid, w.host, w.device, w.alive = info["pid"], info["host"], info["device"], True
        else:
            i, job = running.pop(ref)
            try:
                r: JobResult = ray.get(ref)
            except RayTaskError as exc:  # an unexpected exception inside the worker
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                again(job, i, f"{type(cause).__name__}: {_one_line(cause)}")
            except RayError as exc:  # the worker died mid-file: Ray restarts it
                stats[i].alive = False
                again(job, i, f"its worker died on every try ({attempts[job]}): {_one_line(exc)}")
                starting[handles[i].info.remote()] = i
            else:
                r.worker, r.tries = i, attempts[job]
                done[job] = r
                stats[i].add(r)
        report()
    if pending and not should_stop():
        gone = "; ".join(f"worker {w.index}: {w.error}" for w in stats if w.error)
        why = f"no worker alive ({gone})" if gone else f"no worker alive for {stall_s:.0f} s"
        for job in pending:
            done[job] = JobResult(job, ok=False, error=why, tries=attempts[job])
    for w in stats:
        w.alive = False
    report()
    return [done[j] for j in jobs if j in done], stats
