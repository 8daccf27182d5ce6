#!/usr/bin/env bash
# The demo: embedded defaults (SQLite file in var/, Celery tasks in-process) unless DATABASE_URL /
# CELERY_BROKER_URL are set. Migrates, seeds, serves the admin, pushes trades through the API,
# settles the due ones on the internal ledger, then keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG=${DEBUG:-1}
ADDR=${DEMO_ADDR:-127.0.0.1:8000}

$PY manage.py migrate --noinput
seed_out=$($PY manage.py seed_demo)
echo "$seed_out"
token=$(echo "$seed_out" | sed -n 's/^Matching-engine API token: //p')

$PY manage.py runserver --noreload "$ADDR" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 60); do
  if $PY -c "import urllib.request; urllib.request.urlopen('http://$ADDR/api/schema/', timeout=1)" 2>/dev/null; then break; fi
  sleep 0.5
done

$PY manage.py demo_traffic --url "http://$ADDR" --token "$token" --trades "${DEMO_TRADES:-300}"
$PY manage.py settle_due
$PY manage.py verify_transition_log

cat <<MSG

Clearhouse demo is running.
  Admin:     http://$ADDR/admin/   (login: demo / demo-password)
  API docs:  http://$ADDR/api/docs/
  API token of the matching engine: $token
Press Ctrl-C to stop.
MSG
wait $server
