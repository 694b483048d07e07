"""Create the official pipeline's virtual environment (PyPI packages, optionally tribev2 itself).

tribev2 pins torch<2.7; it is installed `--no-deps` beside the CPU torch 2.13.0 that our venv uses,
with the exact neuralset/neuraltrain/x_transformers/exca versions it was released with. The
transformers version is pinned to ours, so both pipelines run the same model code.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path

TRIBEV2_COMMIT = "7239908"
TORCH = "torch==2.13.0"
PYPI_PACKAGES = [
    "neuralset==0.0.2",
    "neuraltrain==0.0.2",
    "x_transformers==1.27.20",
    "exca==0.5.25",  # neuralset 0.0.2 uses exca.steps.base.NoValue, gone from 0.5.26
    "pandas<3",
    "numpy==2.2.6",
    "moviepy",
    "julius",
    "soundfile",
    "spacy",
    "lightning",
    "einops",
    "Levenshtein",
    "pyyaml",
    "huggingface_hub",
]
MARKER = "parity-venv.txt"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({r.returncode}):\n" + "\n".join(tail))


def wanted(tribev2: str | None) -> str:
    """What a venv must have been made with to be reused (the marker's content)."""
    tf = importlib.metadata.version("transformers")
    return "\n".join([TORCH, f"transformers=={tf}", *PYPI_PACKAGES, f"tribev2={tribev2}"]) + "\n"


def tribev2_source(spec: str, work: Path, log: Path) -> Path:
    """A local checkout of tribev2 at TRIBEV2_COMMIT: `spec` is a folder or a git URL."""
    path = Path(spec).expanduser()
    if not path.exists():
        path = work / "tribev2-src"
        if not path.exists():
            _run(["git", "clone", "--quiet", spec, str(path)], log)
            _run(["git", "-C", str(path), "checkout", "--quiet", TRIBEV2_COMMIT], log)
    if (path / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        if not head.startswith(TRIBEV2_COMMIT):
            print(f"parity: tribev2 at {path} is at {head[:7]}, not {TRIBEV2_COMMIT}", flush=True)
    return path


def ensure_venv(venv: Path, tribev2: str | None, work: Path) -> Path:
    """Make (or reuse) the official venv at `venv`; returns its python."""
    marker = venv / MARKER
    want = wanted(tribev2)
    if marker.is_file() and marker.read_text() == want and python_of(venv).exists():
        return python_of(venv)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "venv-install.log"
    log.write_text("")
    t0 = time.perf_counter()
    print(f"parity: creating the official venv at {venv} (log: {log})", flush=True)
    if not python_of(venv).exists():
        _run([sys.executable, "-m", "venv", str(venv)], log)
    pip = [str(python_of(venv)), "-m", "pip", "install", "--quiet"]
    _run([*pip, TORCH], log)  # the CPU build first: later installs must never replace it
    constraints = work / "venv-constraints.txt"
    tf = importlib.metadata.version("transformers")
    constraints.write_text(f"{TORCH}\ntransformers=={tf}\n")
    env_pkgs = [*PYPI_PACKAGES, f"transformers=={tf}", "torchvision"]
    _run([*pip, "-c", str(constraints), *env_pkgs], log)
    if tribev2:
        src = tribev2_source(tribev2, work, log)
        _run([*pip, "setuptools>=61"], log)  # tribev2's build backend, for --no-build-isolation
        _run([*pip, "--no-deps", "--no-build-isolation", str(src)], log)
    marker.write_text(want)
    print(f"parity: official venv ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return python_of(venv)


if __name__ == "__main__":  # python -m tools.parity.venv VENV [TRIBEV2]
    args = sys.argv[1:]
    ensure_venv(Path(args[0]), args[1] if len(args) > 1 else None, Path(os.getcwd()))
