#!/usr/bin/env bash
# A fresh GPU machine, a clean copy of the repository: does everything that needs CUDA work?
#
#   tools/gpu_check.sh [WORK]        (WORK: scratch folder, default a new one under /tmp)
#
# Steps, each PASS or FAIL with its time, then a summary; the exit status is 1 if any failed:
#   install   the package (`pip install --no-build-isolation --no-deps -e .`; wheels in .whl/ first,
#             for what the machine's image lacks: av, pyzmq and julius on the lent H100s) and
#             the imports of every dependency in pyproject.toml
#   tests     every CUDA test (CUDA_TESTS below: the files whose tests skip without a CUDA GPU)
#   weights   full-size RANDOM weights (tools/make_random_model.py: V-JEPA2 ViT-g, w2v-BERT 2.0),
#             written while the tests run (the step's time is the wait for them after the tests)
#   clip      a 60 s clip with sound and video, and a transcript of words (no Whisper weights here)
#   predict   a first `tribe-stream predict` of the clip on EMPTY compile caches (Inductor,
#             Triton) and an empty feature cache: the sound's features compile beside the video
#   bench     a 10 s `tribe-stream bench` (full-size random weights with Llama, words from the
#             transcript)
#
# The wheels (here, before the call; the device's Python is 3.12; then carry .whl):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl av==18.1.0 pyzmq==27.3.0 julius==0.2.8 \
#     nvidia-cudnn-frontend==1.16.0    (the last: FP8 attention, its tests and --video-fp8-attention)
# Environment: PY (default python3), GPU_CHECK_BENCH_ARGS (more bench options, e.g.
# `--subcortical random`), GPU_CHECK_LOG (every step's full output; default
# WORK/gpu_check.log), GPU_CHECK_COMMIT (shown; default `git rev-parse`). To try the script itself
# on a CPU: GPU_CHECK_TINY=1 (tiny extractors, the demo weights for the bench), GPU_CHECK_TESTS
# (test files instead of CUDA_TESTS), GPU_CHECK_INSTALL=0 (use the package as installed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WORK=${1:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
LOG=${GPU_CHECK_LOG:-$WORK/gpu_check.log}
TINY=${GPU_CHECK_TINY:-0}
: >"$LOG"

# The CUDA tests: every file holding a test that skips without a CUDA GPU (`grep -l cuda
# tests/test_*.py`, read one by one). Whole files run, so their CPU tests run here too.
# test_accel.py has no CUDA test but checks that compiled calls take turns on this torch.
CUDA_TESTS="tests/test_accel.py tests/test_extractors_audio.py tests/test_extractors_video.py
  tests/test_fp8_attention.py tests/test_fp8_kernels.py tests/test_engines.py
  tests/test_offline_cuda.py tests/test_text_memory.py tests/test_serve_text.py
  tests/test_video_overlap.py tests/test_capacity.py"
# Files that name cuda but hold no CUDA test (test_cli_faults' cuda test skips WITH a GPU).
NOT_CUDA="tests/test_cli_faults.py tests/test_stream_api.py tests/test_pipeline.py
  tests/test_resolve.py"

NAMES=() RESULTS=() TIMES=() NOTES=()
FAILED=0

# step NAME COMMAND...: run COMMAND, its output to WORK/NAME.out and the log; PASS if it exits 0.
step() {
  local name=$1 t0 t1 rc out
  shift
  out="$WORK/$name.out"
  printf '%-8s ... ' "$name"
  printf '\n===== %s: %s\n' "$name" "$*" >>"$LOG"
  t0=$(date +%s.%N)
  "$@" >"$out" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  cat "$out" >>"$LOG"
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  NAMES+=("$name") TIMES+=("$secs")
  if [ $rc -eq 0 ]; then
    RESULTS+=("PASS")
    echo "PASS (${secs} s)"
  else
    RESULTS+=("FAIL")
    FAILED=1
    echo "FAIL (${secs} s, exit $rc); its last lines:"
    tail -n 25 "$out" | sed 's/^/    | /'
  fi
  NOTES+=("$(note "$name" "$out")")
}

# note NAME OUTPUT: one line about a finished step, for the summary
note() {
  case $1 in
    tests) grep -E '^(=+ )?[0-9]+ (passed|failed)|[0-9]+ (passed|failed|skipped|error)' "$2" | tail -n 1 | sed 's/=//g; s/^ *//' ;;
    predict) grep -E 'of stimulus in' "$2" | tail -n 1 ;;
    bench) grep -E '^one stream' "$2" | tail -n 1 | sed 's/ (staggered starts)//' | cut -c1-170 ;;
    *) tail -n 1 "$2" | cut -c1-110 ;;
  esac
}

install() {
  if [ "${GPU_CHECK_INSTALL:-1}" = 0 ]; then
    echo "not installing (GPU_CHECK_INSTALL=0)"
  elif compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" .whl/*.whl || return 1
  fi
  if [ "${GPU_CHECK_INSTALL:-1}" != 0 ]; then
    "$PY" -m pip install -q --no-build-isolation --no-deps -e . ||
      "$PY" -m pip install -q --no-build-isolation --no-deps --target "$WORK/site" . || return 1
  fi
  "$PY" - <<'EOF'
import importlib
import re
import tomllib

# every dependency of pyproject.toml, the extractors' and the tests' main ones
deps = tomllib.loads(open("pyproject.toml").read())["project"]["dependencies"]
names = [re.split(r"[<>=!~ \[;]", d)[0].lower() for d in deps]
names += ["transformers", "h5py", "pytest"]
module = {"pyyaml": "yaml", "pyzmq": "zmq"}
missing = []
for name in names:
    try:
        importlib.import_module(module.get(name, name.replace("-", "_")))
    except ImportError as exc:
        missing.append(f"{name} ({exc})")
import tribe_stream.cli, tribe_stream.engines  # noqa: E401,F401
print("missing (carry wheels in .whl/): " + ", ".join(missing) if missing else "imports fine")
raise SystemExit(1 if missing else 0)
EOF
}

tests() {
  local stale=""
  for f in $(grep -l cuda tests/test_*.py); do
    # shellcheck disable=SC2086  # word splitting makes one space-separated line
    case " $(echo $CUDA_TESTS $NOT_CUDA) " in *" $f "*) ;; *) stale="$stale $f" ;; esac
  done
  if [ -n "$stale" ]; then
    echo "these test files name cuda but are in neither list of tools/gpu_check.sh:$stale"
    return 1
  fi
  local par=()
  "$PY" -c "import xdist" 2>/dev/null && par=(-n 4 --dist loadfile)
  # shellcheck disable=SC2086
  "$PY" -m pytest -q -rfEsp -p no:cacheprovider "${par[@]}" ${GPU_CHECK_TESTS:-$CUDA_TESTS}
}

weights() {
  local tiny=()
  [ "$TINY" = 1 ] && tiny=(--tiny)
  "$PY" tools/make_random_model.py "$WORK/model" "${tiny[@]}"
}

clip() {
  "$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

from tribe_stream.sources.clip import make_clip
from tribe_stream.transcripts import write_transcript
from tribe_stream.types import Word

work = Path(sys.argv[1])
make_clip(work / "clip.mp4", 60.0, speech=True)  # 320x240, 16 fps, the demo sentence every 9 s
text = "the quick brown fox jumps over the lazy dog".split()
words = [Word(text[i % len(text)], 1.0 + 0.4 * i, 0.3) for i in range(145)]  # 1 s to 59 s
write_transcript(work / "words.tsv", words)
print(f"{work / 'clip.mp4'}: 60 s with sound and video; {len(words)} words in {work / 'words.tsv'}")
EOF
}

predict() {
  rm -rf "$WORK/inductor" "$WORK/triton" "$WORK/features"
  TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton" PYTHONUNBUFFERED=1 \
    "$PY" -m tribe_stream.cli predict "$WORK/clip.mp4" --checkpoint "$WORK/model" \
    --out "$WORK/pred.npy" --cache "$WORK/features" --transcript "$WORK/words.tsv" --overwrite ||
    return 1
  if grep -q "symbolically trace" "$WORK/predict.out"; then
    echo "the compile race again (symbolically trace)"
    return 1
  fi
  "$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import torch

from tribe_stream.offline_outputs import read_prediction_file

work = Path(sys.argv[1])
values, _, meta = read_prediction_file(work / "pred.npy")
compiled = len(list((work / "inductor").rglob("*.py")))
ok = values.shape == (60, 20484) and bool(np.isfinite(values).all())
ok = ok and (compiled > 0 or not torch.cuda.is_available())  # a GPU compiles the extractors
ok = ok and {"audio", "video"} <= set(meta["modalities"])
print(f"predictions {values.shape}, finite {bool(np.isfinite(values).all())}, modalities "
      f"{meta['modalities']} (missing {meta['missing']}), {compiled} files compiled into the "
      f"empty Inductor cache: {'ok' if ok else 'WRONG'}")
raise SystemExit(0 if ok else 1)
EOF
}

bench() {
  local model=(--checkpoint random)
  [ "$TINY" = 1 ] && model=(--checkpoint demo)
  PYTHONUNBUFFERED=1 "$PY" -m tribe_stream.cli bench "${model[@]}" --streams 1 --seconds 10 \
    --warmup 2 --baseline-seconds 3 --clip "$WORK/clip.mp4" --transcript "$WORK/words.tsv" \
    --out "$WORK/bench.json" --plot "$WORK/bench.png" ${GPU_CHECK_BENCH_ARGS:-}
}

export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export TRIBE_STREAM_CACHE="$WORK/tribe-cache"  # demo weights and the like, made afresh
commit=${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null |
  head -n 1)
echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
echo "device: ${gpu:-no nvidia-smi}; $("$PY" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.cuda.is_available()}")' 2>&1)"
echo "work: $WORK; full log: $LOG"
if [ "$TINY" != 1 ] && ! "$PY" -c "import torch; raise SystemExit(not torch.cuda.is_available())"; then
  echo "no CUDA GPU here: nothing to check (GPU_CHECK_TINY=1 tries the script itself on a CPU)"
  exit 1
fi

step install install
# the weights are written while the tests run (disk and CPU beside the GPU): their step waits
weights >"$WORK/weights.bg" 2>&1 &
WEIGHTS_PID=$!
WEIGHTS_T0=$(date +%s)
step tests tests
wait_weights() {
  wait "$WEIGHTS_PID"
  local rc=$?
  cat "$WORK/weights.bg"
  echo "(written beside the tests: $(($(date +%s) - WEIGHTS_T0)) s from the start of the tests)"
  return $rc
}
step weights wait_weights
step clip clip
if [ -f "$WORK/clip.mp4" ] && [ -d "$WORK/model" ]; then
  step predict predict
else
  echo "predict  ... not run (no clip or weights)"
  NAMES+=(predict) RESULTS+=(FAIL) TIMES+=(0) NOTES+=("not run: no clip or weights") FAILED=1
fi
step bench bench

echo
echo "summary (commit $commit; ${gpu:-no GPU})"
for i in "${!NAMES[@]}"; do
  printf '  %-8s %-4s %8s s  %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}" "${NOTES[$i]}"
done
if [ $FAILED -eq 0 ]; then echo "gpu_check: all passed"; else echo "gpu_check: FAILED"; fi
exit $FAILED
