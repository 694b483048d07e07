"""A private Hugging Face cache in the hub layout, so both pipelines load models by hub id offline.

`<HF_HOME>/hub/models--owner--name/snapshots/<rev>/<files>` and `refs/main` holding `<rev>`; with
`HF_HOME=<root>` and `HF_HUB_OFFLINE=1`, `from_pretrained("owner/name")` finds the snapshot.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def repo_folder(hf_home: Path, repo_id: str) -> Path:
    """The cache folder of a model repo: `hub/models--owner--name`."""
    if repo_id.count("/") != 1 or repo_id.startswith("/"):
        raise ValueError(f"{repo_id!r} is not a hub id owner/name")
    return Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def folder_revision(folder: Path) -> str:
    """A 40-hex revision from the files' names and bytes (the same content, the same revision)."""
    h = hashlib.sha1()
    for p in sorted(f for f in Path(folder).rglob("*") if f.is_file()):
        h.update(str(p.relative_to(folder)).encode() + b"\0")
        h.update(hashlib.sha1(p.read_bytes()).digest())
    return h.hexdigest()


def install_snapshot(hf_home: Path, repo_id: str, folder: Path) -> Path:
    """Copy `folder` (what `save_pretrained` wrote) into the cache as `repo_id`'s main snapshot;
    returns the snapshot folder. Earlier snapshots of the repo are removed."""
    rev = folder_revision(folder)
    repo = repo_folder(hf_home, repo_id)
    snap = repo / "snapshots" / rev
    if repo.exists():
        shutil.rmtree(repo)
    snap.parent.mkdir(parents=True)
    shutil.copytree(folder, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    return snap


def snapshot_of(hf_home: Path, repo_id: str) -> Path | None:
    """The main snapshot folder of `repo_id` in the cache, or None."""
    repo = repo_folder(hf_home, repo_id)
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    snap = repo / "snapshots" / ref.read_text().strip()
    return snap if snap.is_dir() else None
