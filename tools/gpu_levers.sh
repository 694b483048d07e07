#!/usr/bin/env bash
# Issue 34's levers against the video queue, measured side by side on one GPU in one call:
# `tribe-stream bench` at 8 staggered streams, one V-JEPA2 clip a second, FP8 products, run once
# per variant (default: FP8 attention, FP8 attention with --video-overlap, the default), then one
# line each. FP8 attention needs the cuDNN frontend's wheel in .whl/ (tools/gpu_check.sh says how).
#
#   tools/gpu_levers.sh WORK [more bench options, e.g. --streams 10]
#
# WORK: a folder where tools/gpu_check.sh made its clip (clip.mp4, words.tsv) and installed the
# package (WORK/site). Each run's JSON and output go to WORK/levers/ (and $OUT when set).
# Environment: PY (default python3), LEVERS (the variants, `|`-separated; default the three
# above; session 15 measured --video-batch 1 and 2 too), LEVER_TIMEOUT (seconds a run, default
# 170), LEVER_BASE (the options every run has; default `--checkpoint random --streams 8
# --video-clips 1 --seconds 25 --warmup 4
# --baseline-seconds 1 --video-fp8`; to try the script on a CPU: `--checkpoint demo --device
# cpu --streams 2 --seconds 4 --warmup 1 --baseline-seconds 1`).
set -uo pipefail
# Ctrl-C or a stop ends the run in progress (the signal passed on) and the script
child=""
stop() {
  [ -n "$child" ] && kill -"$1" "$child" 2>/dev/null && wait "$child"
  echo "gpu_levers.sh: stopped ($1)" >&2
  exit "$2"
}
trap 'stop INT 130' INT
trap 'stop TERM 143' TERM
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if [ $# -lt 1 ]; then
  echo "gpu_levers.sh: give the folder of tools/gpu_check.sh (its clip.mp4 and words.tsv)" >&2
  exit 2
fi
WORK=$1
shift
[ -f "$WORK/clip.mp4" ] && [ -f "$WORK/words.tsv" ] || {
  echo "gpu_levers.sh: no clip.mp4 and words.tsv in $WORK: run tools/gpu_check.sh $WORK first" >&2
  exit 2
}
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK/levers"
BASE=${LEVER_BASE:---checkpoint random --streams 8 --video-clips 1 --seconds 25 --warmup 4 --baseline-seconds 1 --video-fp8}
IFS='|' read -r -a variants <<<"${LEVERS:---video-fp8-attention|--video-fp8-attention --video-overlap|default}"
echo "gpu_levers: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)," \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
for v in "${variants[@]}"; do
  name=$(echo "$v" | tr -c 'a-z0-9' '_' | sed 's/_*$//')
  extra=()
  [ "$v" != default ] && read -r -a extra <<<"$v"
  t0=$(date +%s)
  # shellcheck disable=SC2086  # LEVER_BASE is a list of options
  PYTHONUNBUFFERED=1 timeout "${LEVER_TIMEOUT:-170}" "$PY" -m tribe_stream.cli bench $BASE \
    --clip "$WORK/clip.mp4" --transcript "$WORK/words.tsv" \
    --out "$WORK/levers/$name.json" "${extra[@]}" "$@" >"$WORK/levers/$name.txt" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  child=""
  line=$(grep -E '^[0-9]+ streams' "$WORK/levers/$name.txt" | tail -n 1 | cut -c1-520)
  echo "[$v] exit $rc, $(($(date +%s) - t0)) s: ${line:-$(tail -n 2 "$WORK/levers/$name.txt")}"
  if [ -n "${OUT:-}" ]; then cp "$WORK/levers/$name".* "$OUT"/ 2>/dev/null; fi
done
