#!/usr/bin/env bash
# The demo: embedded defaults (SQLite file in var/, Celery tasks in-process) unless DATABASE_URL /
# CELERY_BROKER_URL are set. Migrates, seeds, serves the admin, pushes trades through the API,
# settles the due ones on the internal ledger, then keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG=${DEBUG:-1}
ADDR=${DEMO_ADDR:-127.0.0.1:8000}

mkdir -p var
# Exact decimals need PostgreSQL (SQLite stores NUMERIC as floating point: 18-decimal ETH amounts
# would round). With PostgreSQL on 127.0.0.1 the demo uses a fresh `clearhouse_demo` database and
# settles ETH on a fresh local Ethereum node (anvil). Otherwise: SQLite, crypto on the ledger only.
if [ -z "${DATABASE_URL:-}" ] && bash scripts/ensure_services.sh >/dev/null 2>&1 \
   && psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS clearhouse_demo" postgres 2>/dev/null \
   && psql -h 127.0.0.1 -U postgres -q -c "CREATE DATABASE clearhouse_demo" postgres; then
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/clearhouse_demo
  echo "Database: PostgreSQL (clearhouse_demo, recreated)"
fi
if [ -n "${DATABASE_URL:-}" ] && ANVIL=$(bash scripts/ensure_anvil.sh 2>/dev/null); then
  ETH_PORT=${DEMO_ETH_PORT:-8545}
  "$ANVIL" --host 127.0.0.1 --port "$ETH_PORT" --silent &
  anvil_pid=$!
  trap 'kill $anvil_pid 2>/dev/null || true' EXIT INT TERM
  export CLEARHOUSE_ETH_RPC_URL="http://127.0.0.1:$ETH_PORT"
  for _ in $(seq 1 50); do
    $PY -c "import urllib.request as u; u.urlopen(u.Request('$CLEARHOUSE_ETH_RPC_URL', b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":[]}', {'Content-Type': 'application/json'}), timeout=1)" 2>/dev/null && break
    sleep 0.2
  done
  echo "Ethereum: anvil on $CLEARHOUSE_ETH_RPC_URL (ETH trades settle on chain)"
  # Bitcoin and Solana: node simulators (real transactions, simulated network) on loopback
  BTC_PORT=${DEMO_BTC_PORT:-18443}
  SOL_PORT=${DEMO_SOL_PORT:-18899}
  $PY manage.py run_node_simulator bitcoin --port "$BTC_PORT" &
  btc_pid=$!
  $PY manage.py run_node_simulator solana --port "$SOL_PORT" &
  sol_pid=$!
  anvil_pid="$anvil_pid $btc_pid $sol_pid"
  trap 'kill $anvil_pid 2>/dev/null || true' EXIT INT TERM
  export CLEARHOUSE_BTC_RPC_URL="http://127.0.0.1:$BTC_PORT" CLEARHOUSE_SOL_RPC_URL="http://127.0.0.1:$SOL_PORT"
  export CLEARHOUSE_CHAIN_RAILS=ethereum,bitcoin,solana
  for url in "$CLEARHOUSE_BTC_RPC_URL" "$CLEARHOUSE_SOL_RPC_URL"; do
    for _ in $(seq 1 50); do
      $PY -c "import urllib.request as u; u.urlopen(u.Request('$url', b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getSlot\",\"params\":[]}', {'Content-Type': 'application/json'}), timeout=1)" 2>/dev/null && break
      sleep 0.2
    done
  done
  echo "Bitcoin: node simulator on $CLEARHOUSE_BTC_RPC_URL; Solana: LiteSVM node simulator on $CLEARHOUSE_SOL_RPC_URL"
  # Fiat and securities: the bank network and custodian simulators (ISO 20022 / NACHA / sese),
  # on the test clock (a payment settles at once instead of waiting for its T+1/T+2 date)
  BANK_PORT=${DEMO_BANK_PORT:-18600}
  CUSTODY_PORT=${DEMO_CUSTODY_PORT:-18601}
  $PY manage.py run_network_simulator bank --port "$BANK_PORT" --instant &
  anvil_pid="$anvil_pid $!"
  $PY manage.py run_network_simulator custodian --port "$CUSTODY_PORT" --instant &
  anvil_pid="$anvil_pid $!"
  trap 'kill $anvil_pid 2>/dev/null || true' EXIT INT TERM
  export CLEARHOUSE_BANK_URL="http://127.0.0.1:$BANK_PORT" CLEARHOUSE_CUSTODIAN_URL="http://127.0.0.1:$CUSTODY_PORT"
  for url in "$CLEARHOUSE_BANK_URL" "$CLEARHOUSE_CUSTODIAN_URL"; do
    for _ in $(seq 1 50); do
      $PY -c "import urllib.request as u; u.urlopen('$url/reports', timeout=1)" 2>/dev/null && break
      sleep 0.2
    done
  done
  echo "Bank network simulator on $CLEARHOUSE_BANK_URL; custodian simulator on $CLEARHOUSE_CUSTODIAN_URL"
else
  export CLEARHOUSE_CHAIN_RAILS=""
  anvil_pid=""
  echo "Ethereum: no PostgreSQL or anvil here; ETH legs settle on the internal ledger"
fi

$PY manage.py migrate --noinput
seed_out=$($PY manage.py seed_demo)
echo "$seed_out"
token=$(echo "$seed_out" | sed -n 's/^Matching-engine API token: //p')

$PY manage.py runserver --noreload "$ADDR" &
server=$!
trap 'kill $server $anvil_pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 60); do
  if $PY -c "import urllib.request; urllib.request.urlopen('http://$ADDR/api/schema/', timeout=1)" 2>/dev/null; then break; fi
  sleep 0.5
done

$PY manage.py demo_traffic --url "http://$ADDR" --token "$token" --trades "${DEMO_TRADES:-300}"
if [ -n "${CLEARHOUSE_BANK_URL:-}" ]; then
  # fiat and equity legs: close the netting windows, pay the plan through the bank and custodian
  $PY manage.py settle_windows
  $PY manage.py reconcile   # the reports in, and a reconciliation run to look at in the admin
fi
$PY manage.py settle_due
$PY manage.py daily_report          # the end-of-day report (beat does this at 23:55 UTC)
$PY manage.py verify_transition_log

cat <<MSG

Clearhouse demo is running.
  Admin:     http://$ADDR/admin/   (login: demo / demo-password)
  API docs:  http://$ADDR/api/docs/
  API token of the matching engine: $token
Press Ctrl-C to stop.
MSG
wait $server
