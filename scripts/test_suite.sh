#!/usr/bin/env bash
# `make test` after ruff: the type check (import contracts, private names, mypy) runs alongside
# pytest, which runs on PYTEST_WORKERS xdist workers (whole files per worker, slowest first; see
# tests/conftest.py and tests/xdist_db.py). pytest's output streams as usual; the type check's
# output is kept in var/typecheck.log and printed after pytest, under its own heading. The target
# fails when either fails (exit status: pytest's, else the type check's).
#   usage: scripts/test_suite.sh [pytest arguments...]
# Environment: DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY as for pytest; PYTEST_WORKERS (2; 0 runs
# pytest in one process); MAKE (make).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORKERS=${PYTEST_WORKERS:-2}
mkdir -p var
LOG=var/typecheck.log

# make runs this with its own DATABASE_URL for mypy (the Makefile's typecheck target)
env -u DATABASE_URL -u CELERY_BROKER_URL "${MAKE:-make}" --no-print-directory typecheck >"$LOG" 2>&1 &
typecheck=$!
trap 'kill "$typecheck" 2>/dev/null; wait "$typecheck" 2>/dev/null' INT TERM

xdist=()
if [ "$WORKERS" != "0" ]; then
  xdist=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder)
fi
start=$SECONDS
"$BIN/pytest" "${xdist[@]}" "$@"
tests=$?
echo "pytest: exit $tests after $((SECONDS - start)) s"

wait "$typecheck"
types=$?
echo "=== type check (lint-imports, private names, mypy; ran alongside pytest): exit $types ==="
cat "$LOG"
if [ "$tests" -ne 0 ]; then exit "$tests"; fi
exit "$types"
