"""Predicting a stimulus library: manifests, resumable batches, and Ray clusters.

    from tribe_stream.cluster import predict_files
    report = predict_files("library.csv", "out/", checkpoint="facebook/tribev2", cluster="auto")
    report.failed          # the files that failed every try, with their errors

`tribe_stream/manifest.py` reads the list of files; `batch.py` plans the outputs, knows which are finished
and runs a batch in this process; `ray_pool.py` runs it on Ray actors (an optional extra);
`report.py` is the terminal's bar and summary. docs/CLUSTER.md is the user's guide.
"""

from tribe_stream.cluster.batch import BatchReport, Job, JobResult, plan_jobs
from tribe_stream.cluster.run import predict_files, run_batch
from tribe_stream.manifest import is_manifest, read_manifest

__all__ = [
    "BatchReport",
    "Job",
    "JobResult",
    "is_manifest",
    "plan_jobs",
    "predict_files",
    "run_batch",
    "read_manifest",
]
