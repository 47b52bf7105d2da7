#!/usr/bin/env bash
# Runs the README's test command (`make test`) on fresh clones of this repository, N times, optionally while a CPU
# hog keeps one core 100 % busy, and prints each run's pytest summary line and wall time. A flaky test is a failing
# test: a suite that is green only on a quiet host fails here.
#   usage: scripts/stress_suite.sh [-n RUNS] [--hog] [--ref REF] [--reuse-venv] [--keep] [-- PYTEST_ARGS...]
#     -n RUNS   how many fresh-clone runs (default 3)
#     --hog     keep one core busy (`python -c 'while 1: pass'`) during every run
#     --ref     what to clone (default: the current branch's HEAD commit; uncommitted changes are not included)
#     --reuse-venv  set up the venv once (first clone) and let later clones use it (faster; the default builds a
#               fresh venv in every clone, exactly as CI does)
#     --keep    keep the clones (default: removed after each run, logs are kept)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3; HOG=0; REF=""; KEEP=0; REUSE=0; PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --hog) HOG=1; shift ;;
    --ref) REF=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --reuse-venv) REUSE=1; shift ;;
    --) shift; PYTEST_ARGS=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
REF=${REF:-$(git -C "$ROOT" rev-parse HEAD)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lingbot_stress.XXXXXX")
echo "[stress] $RUNS fresh-clone run(s) of 'make test' at $(git -C "$ROOT" rev-parse --short "$REF")$([ $HOG = 1 ] && echo ', one core kept busy'); logs in $WORK"

HOG_PID=""
cleanup() { [ -n "$HOG_PID" ] && kill "$HOG_PID" 2>/dev/null || true; }
trap cleanup EXIT
if [ $HOG = 1 ]; then
  python3 -c 'while 1: pass' &
  HOG_PID=$!
fi

FAILED=0
for i in $(seq 1 "$RUNS"); do
  CLONE="$WORK/run$i"
  git clone -q --no-hardlinks "$ROOT" "$CLONE"
  git -C "$CLONE" checkout -q "$REF"
  LOG="$WORK/run$i.log"
  START=$(date +%s)
  set +e
  VENV_DIR=$CLONE/.venv
  [ $REUSE = 1 ] && [ -n "${SHARED_VENV:-}" ] && VENV_DIR=$SHARED_VENV
  (cd "$CLONE" && LINGBOT_VENV=$VENV_DIR make test VENV="$VENV_DIR" PYTEST_ARGS="${PYTEST_ARGS[*]:-}") >"$LOG" 2>&1
  RC=$?
  set -e
  END=$(date +%s)
  SUMMARY=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|^=+ .*(passed|failed|error).* in ' "$LOG" | tail -1)
  printf '[stress] run %d: rc=%d, %d s wall: %s\n' "$i" "$RC" "$((END - START))" "${SUMMARY:-no pytest summary (see $LOG)}"
  grep -E '^(FAILED|ERROR) ' "$LOG" | sed 's/^/[stress]     /' || true
  [ $RC = 0 ] || FAILED=$((FAILED + 1))
  # --reuse-venv: later clones use this clone's venv (its editable install points here: keep this clone)
  if [ $REUSE = 1 ] && [ -z "${SHARED_VENV:-}" ]; then SHARED_VENV=$CLONE/.venv; SHARED_CLONE=$CLONE; fi
  if [ $KEEP = 0 ] && [ "${SHARED_CLONE:-}" != "$CLONE" ]; then rm -rf "$CLONE"; fi
done
echo "[stress] $((RUNS - FAILED))/$RUNS runs green"
[ $FAILED = 0 ]
