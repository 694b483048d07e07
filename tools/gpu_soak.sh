#!/usr/bin/env bash
# A soak longer than one device call (at most 10 minutes a call): `soak.py serve` started in a
# process session of its own (setsid), which outlives the call that started it while the machine
# stays held, then looked in on from the next calls (each must follow the last within the
# machine's idle release, 30 s).
#
#   tools/gpu_soak.sh start MINUTES [more soak.py serve options]   start it; print its first lines
#   tools/gpu_soak.sh wait SECONDS    wait up to SECONDS (or its end); print the rows so far
#
# Files in SOAK_DIR (default /tmp/gpu_soak): soak.txt (its output), soak.json (the rows, at the
# end), pid, rc; copied to $OUT after each step when OUT is set. The package must be importable
# (after tools/gpu_check.sh: PYTHONPATH=/tmp/gc/site). Defaults: full-size random weights on
# cuda, 2-5 streams (the measured capacity per H100 is 5-6), arrivals every 20 s on average.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${SOAK_DIR:-/tmp/gpu_soak}
PY=${PY:-python3}
mkdir -p "$DIR"

fail() {
  echo "gpu_soak.sh: $1" >&2
  exit 2
}

show() {
  grep -v '^soak: {' "$DIR/soak.txt" | grep -E '^(soak|\||RSS|slope)' | tail -n 30 | cut -c1-300
  grep '^soak: {' "$DIR/soak.txt" | tail -n 3 | cut -c1-300
  [ -f "$DIR/rc" ] && echo "soak ended: exit $(cat "$DIR/rc")"
  if [ -n "${OUT:-}" ]; then cp "$DIR"/soak.* "$DIR"/rc "$OUT"/ 2>/dev/null; fi
  return 0
}

case ${1:-} in
  start)
    minutes=${2:-}
    [[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "start: give the soak's minutes, e.g. start 20"
    shift 2
    rm -f "$DIR"/soak.* "$DIR/rc"
    setsid bash -c "PYTHONUNBUFFERED=1 '$PY' tools/soak.py serve --checkpoint random --device cuda \
      --minutes $minutes --min-streams 2 --max-streams 5 --arrive-s 20 --life-min 30 \
      --life-max 120 --clip-seconds 150 --slope-from 3 --out '$DIR/soak.json' $* \
      >'$DIR/soak.txt' 2>&1; echo \$? >'$DIR/rc'" </dev/null >/dev/null 2>&1 &
    echo $! >"$DIR/pid"
    sleep 60
    show
    ;;
  wait)
    [[ ${2:-} =~ ^[0-9]+$ ]] || fail "wait: give the seconds to wait at most, e.g. wait 590"
    [ -f "$DIR/pid" ] || fail "no soak was started in $DIR: run \`tools/gpu_soak.sh start MINUTES\` first"
    end=$(($(date +%s) + $2))
    while [ ! -f "$DIR/rc" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
    show
    ;;
  *)
    fail "give start MINUTES [soak.py serve options] or wait SECONDS (see the top of $0)"
    ;;
esac
