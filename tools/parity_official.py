"""Official-parity harness: our pipeline and the official TRIBE v2 pipeline side by side on the
same clips and the same random weights; per modality (shapes, per-bin relative error, Pearson r)
and end to end (rows, seconds, per-row relative error). docs/PARITY.md says more.

    # full: tribev2 itself (a folder or a git URL; checked out at 7239908), all clips
    python tools/parity_official.py --tribev2 PATH_OR_GIT_URL --work /tmp/parity
    # CI: PyPI only (neuralset's extractors, neuraltrain's transformer), one short clip
    python tools/parity_official.py --official pypi --work /tmp/parity-ci
    # only make the official venv
    python tools/parity_official.py --setup-only --venv VENV [--tribev2 PATH_OR_GIT_URL]

Exit 0 when every row is within `--tolerance` (relative) or within a documented divergence
(tools/parity/divergences.json), 1 otherwise; 2 on a harness error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.parity import stats  # noqa: E402
from tools.parity.clips import CI_CLIP, CLIPS, ClipSpec, make_clip  # noqa: E402

MODALITIES = ("text", "audio", "video")
SPACY_NOTE = (
    "spaCy's en_core_web_lg cannot be downloaded here: the official side splits sentences with "
    "spacy.blank('en') + the rule-based sentencizer"
)


def _env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TQDM_DISABLE="1",
    )
    return env


def _run(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if r.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{cmd[1]} failed ({r.returncode}); {log}:\n{tail}")
    return time.perf_counter() - t0


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _word_note(ours: list, official: list) -> str:
    o = [(str(w[0]), round(float(w[1]), 3)) for w in ours]
    f = [(str(w[0]), round(float(w[1]), 3)) for w in official]
    if o == f:
        return f"same {len(o)} words"
    return f"words differ: ours {len(o)}, official {len(f)}"


def run_clip(
    spec: ClipSpec, args: argparse.Namespace, python: Path, ckpt: Path, hf: Path
) -> list[stats.Row]:
    """Make the clip, run both sides, compare (`--compare-only`: compare the last run's outputs)."""
    work = Path(args.work)
    run = work / "runs" / spec.name
    if args.compare_only:
        return compare_run(spec, run, args.official, args.checkpoint)
    clip, tsv = make_clip(spec, work / "clips" / spec.name)
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    env = _env(hf)
    pypi = args.official == "pypi"
    print(f"parity: {spec.name}: ours ...", flush=True)
    source = None
    if args.ours:
        src, commit = export_ours(args.ours, work)
        source = str(src)
        (run / "ours-revision.txt").write_text(commit)
    else:
        (run / "ours-revision.txt").write_text(our_revision())
    ours_job = {
        "checkpoint": str(ckpt),
        "cache": str(run / "ours-cache"),
        "clip": str(clip),
        "tsv": str(tsv),
        "out": str(run / "ours.npz"),
        "encoder_in": str(run / "encoder_in.npz") if pypi else None,
        "source": source,
    }
    (run / "ours-job.json").write_text(json.dumps(ours_job))
    _run(
        [sys.executable, "-m", "tools.parity.ours", str(run / "ours-job.json")],
        run / "ours.log",
        {**env, "PYTHONPATH": str(ROOT)},
        ROOT,
    )
    print(f"parity: {spec.name}: official ({args.official}) ...", flush=True)
    official_job = {
        "mode": args.official,
        "checkpoint": str(ckpt),
        "cache": str(run / "official-cache"),
        "kind": spec.kind,
        "clip": str(clip),
        "tsv": str(tsv),
        "modalities": list(spec.modalities),
        "out": str(run / "official.npz"),
        "encoder_in": ours_job["encoder_in"],
    }
    (run / "official-job.json").write_text(json.dumps(official_job))
    driver = Path(__file__).resolve().parent / "parity" / "official_driver.py"
    _run([str(python), str(driver), str(run / "official-job.json")], run / "official.log", env, run)
    return compare_run(spec, run, args.official, ckpt)


def compare_run(spec: ClipSpec, run: Path, mode: str, ckpt: Path) -> list[stats.Row]:
    """The rows of one clip from its run folder's outputs."""
    if not (run / "ours.npz").is_file() or not (run / "official.npz").is_file():
        raise RuntimeError(f"{run} holds no finished run of both sides")
    pypi = mode == "pypi"
    ours, off = _load(run / "ours.npz"), _load(run / "official.npz")
    ours_info = json.loads((run / "ours.json").read_text())
    off_info = json.loads((run / "official.json").read_text())
    rows = [
        stats.compare_features(spec.name, m, ours.get(f"feat_{m}"), off.get(f"feat_{m}"))
        for m in MODALITIES
        if f"feat_{m}" in ours or f"feat_{m}" in off or m in spec.modalities
    ]
    from tools.parity.ours import predict_on

    # our brain model on the official features, over the seconds the official side predicts
    n = ours["preds"].shape[0] * 2
    if "row_starts" in off and len(off["row_starts"]):
        n = 2 * (int(round(float(np.max(off["row_starts"])))) + 1)
    feats_off = {m: off[f"feat_{m}"][..., :n] for m in MODALITIES if f"feat_{m}" in off}
    on_official = predict_on(feats_off, str(ckpt)) if feats_off else None
    words = _word_note(ours_info["words"], off_info["words"])
    if pypi:
        if "encoder_out" in off:
            row = stats.compare_features(
                spec.name,
                "brain trunk",
                ours["encoder_out"][0].T[None],
                off["encoder_out"][0].T[None],
            )
            row.note = (
                "our transformer vs neuraltrain's TransformerEncoder (x_transformers), same input"
            )
            rows.append(row)
        if on_official is not None:
            row = stats.compare_predictions(
                spec.name,
                ours["preds"],
                on_official,
                np.arange(len(on_official)),
                ours_info["seconds"],
                off_info["seconds"],
            )
            row.what = "end to end"
            row.note = "; ".join(
                x
                for x in (
                    "our brain model on both sides' features (no tribev2 on PyPI)",
                    words,
                    row.note,
                )
                if x
            )
            rows.append(row)
    else:
        if on_official is not None:
            row = stats.compare_predictions(spec.name, on_official, off["preds"], off["row_starts"])
            row.what = "brain model"
            row.note = "; ".join(x for x in ("ours on the official features", row.note) if x)
            rows.append(row)
        row = stats.compare_predictions(
            spec.name,
            ours["preds"],
            off["preds"],
            off["row_starts"],
            ours_info["seconds"],
            off_info["seconds"],
        )
        row.note = "; ".join(x for x in (words, row.note) if x)
        rows.append(row)
    return rows


def our_revision() -> str:
    """Our commit, `+dirty` when tribe_stream/ or engines/ differ from it (the runs use the
    working tree)."""

    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (
        "+dirty" if git("status", "--porcelain", "--", "tribe_stream", "engines") else ""
    )


def export_ours(rev: str, work: Path) -> tuple[Path, str]:
    """A clean copy of our package at commit `rev` (`git archive`), with `engines/` linked where
    `tribe_stream.engines` is imported from; returns the folder and the full commit."""
    full = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if full.returncode:
        raise RuntimeError(f"--ours {rev}: not a commit of {ROOT}")
    commit = full.stdout.strip()
    dest = work / "ours-src" / commit[:12]
    if not (dest / "tribe_stream").is_dir():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.Popen(
            ["git", "-C", str(ROOT), "archive", commit, "tribe_stream", "engines"],
            stdout=subprocess.PIPE,
        )
        subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, check=True)
        if archive.wait():
            raise RuntimeError(f"git archive {commit} failed")
        (tmp / "tribe_stream" / "engines").symlink_to("../engines", target_is_directory=True)
        tmp.rename(dest)
    return dest, commit[:7]


def build_models(args: argparse.Namespace) -> tuple[Path, Path]:
    """The HF cache (three random extractors under their hub ids) and the checkpoint folder."""
    from tools.parity.models import build_checkpoint, build_extractors

    work = Path(args.work)
    hf = work / "hf"
    os.environ.update(_env(hf))
    build_extractors(hf, crop=args.video_crop)
    ckpt = build_checkpoint(work / "checkpoint", work / "official-cache")
    return ckpt, hf


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work",
        default=os.path.join(tempfile.gettempdir(), "tribe-parity"),
        help="folder for the venv, models, clips and runs (kept between runs)",
    )
    ap.add_argument("--venv", help="the official venv (default WORK/venv; made when missing)")
    ap.add_argument("--tribev2", help="tribev2 source: a folder or a git URL (full mode)")
    ap.add_argument(
        "--official",
        choices=["full", "pypi"],
        help="full: tribev2's TribeModel (needs --tribev2 or a venv that has it); "
        "pypi: neuralset/neuraltrain only (CI). Default: full with --tribev2, else pypi",
    )
    ap.add_argument(
        "--clips", help=f"comma-separated clip names ({', '.join([*CLIPS, CI_CLIP.name])})"
    )
    ap.add_argument(
        "--tolerance", type=float, default=1e-4, help="relative error allowed (default 1e-4)"
    )
    ap.add_argument(
        "--video-crop", type=int, default=64, help="V-JEPA2 crop size of the random model"
    )
    ap.add_argument("--json", help="write the rows and settings here")
    ap.add_argument("--markdown", help="write the tables here too")
    ap.add_argument(
        "--ours",
        metavar="REV",
        help="run our side from a clean export of this commit (e.g. HEAD) instead of the "
        "working tree",
    )
    ap.add_argument("--setup-only", action="store_true", help="make the official venv and stop")
    ap.add_argument(
        "--compare-only",
        action="store_true",
        help="no runs: compare the outputs of the last run in WORK again",
    )
    args = ap.parse_args(argv)
    args.official = args.official or ("full" if args.tribev2 else "pypi")
    work = Path(args.work).resolve()
    args.work = str(work)
    venv = Path(args.venv or work / "venv").resolve()
    t0 = time.perf_counter()
    from tools.parity.venv import ensure_venv

    try:
        python = venv / "bin" / "python"
        if not args.compare_only:
            python = ensure_venv(venv, args.tribev2, work)
        if args.setup_only:
            return 0
        if args.official == "full" and not args.compare_only:
            has = subprocess.run(
                [str(python), "-c", "import importlib.util as u; assert u.find_spec('tribev2')"],
                capture_output=True,
            )
            if has.returncode:
                print(
                    "parity: --official full needs tribev2 in the venv: pass --tribev2",
                    file=sys.stderr,
                )
                return 2
        ckpt, hf = (
            build_models(args) if not args.compare_only else (work / "checkpoint", work / "hf")
        )
        args.checkpoint = ckpt
        pool = {**CLIPS, CI_CLIP.name: CI_CLIP}
        names = (
            args.clips.split(",")
            if args.clips
            else ([CI_CLIP.name] if args.official == "pypi" else list(CLIPS))
        )
        unknown = [n for n in names if n not in pool]
        if unknown:
            print(
                f"parity: unknown clips {unknown}; choose from {', '.join(pool)}", file=sys.stderr
            )
            return 2
        rows: list[stats.Row] = []
        for name in names:
            rows += run_clip(pool[name], args, python, ckpt, hf)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return 2
    failed = stats.judge(rows, args.tolerance, stats.load_divergences(), args.official)
    table = stats.markdown(rows, args.tolerance)
    total = time.perf_counter() - t0
    print(table)
    revs = []
    for name in names:
        f = work / "runs" / name / "ours-revision.txt"
        revs.append(f.read_text() if f.is_file() else "unknown")
    rev = ", ".join(dict.fromkeys(revs))
    print(f"\nmode {args.official}; ours at {rev}; {SPACY_NOTE}; {total:.0f} s in all")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "mode": args.official,
                    "ours": rev,
                    "tolerance": args.tolerance,
                    "clips": {n: pool[n].notes for n in names},
                    "notes": [SPACY_NOTE],
                    "seconds": total,
                    "rows": [r.to_json() for r in rows],
                },
                indent=2,
            )
        )
    if failed:
        print(
            f"parity: {len(failed)} row(s) above tolerance and no documented divergence: "
            + ", ".join(f"{r.clip}/{r.what}" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
