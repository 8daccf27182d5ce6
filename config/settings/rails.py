"""Settings of the rails: chain nodes and confirmation polling, the bank network and the custodian,
the house's own accounts, fiat routing, and reconciliation against what the rails report."""

from __future__ import annotations

import os
from typing import Any

from .base import VAR_DIR, env_list

# --- Chains ---------------------------------------------------------------------------------
# Chains settled on chain (others settle crypto legs on the internal ledger for now).
CLEARHOUSE_CHAIN_RAILS = env_list("CLEARHOUSE_CHAIN_RAILS", "ethereum")
# "local" = the in-process py-evm chain (tests, demo); otherwise a JSON-RPC URL of a node.
CLEARHOUSE_ETH_RPC_URL = os.environ.get("CLEARHOUSE_ETH_RPC_URL", "local")
# Address of the multisend contract (rails/crypto/contracts/multisend.vy) that pays many
# settlements in one transaction. Empty: on a development chain (the in-process one, anvil) it
# is deployed on first use from a fixed development key (`manage.py multisend_deploy`);
# production refuses to deploy and requires it.
CLEARHOUSE_ETH_MULTISEND = os.environ.get("CLEARHOUSE_ETH_MULTISEND", "")
# Bitcoin node (bitcoind JSON-RPC URL with credentials) and Solana RPC URL; "local" = a node
# simulator served on a loopback port inside this process (tests; see rails/simulators/).
CLEARHOUSE_BTC_RPC_URL = os.environ.get("CLEARHOUSE_BTC_RPC_URL", "local")
CLEARHOUSE_BTC_NETWORK = os.environ.get("CLEARHOUSE_BTC_NETWORK", "regtest")
CLEARHOUSE_SOL_RPC_URL = os.environ.get("CLEARHOUSE_SOL_RPC_URL", "local")
CLEARHOUSE_RPC_TIMEOUT_SECONDS = float(os.environ.get("CLEARHOUSE_RPC_TIMEOUT_SECONDS", "10"))

# --- Fiat and custody rails ------------------------------------------------------------------
# Bank network and custodian endpoints: an HTTP URL, or "local" = the simulator served on a
# loopback port inside this process (tests). See rails/simulators/bank.py and custodian.py.
CLEARHOUSE_BANK_URL = os.environ.get("CLEARHOUSE_BANK_URL", "local")
CLEARHOUSE_CUSTODIAN_URL = os.environ.get("CLEARHOUSE_CUSTODIAN_URL", "local")
CLEARHOUSE_RAIL_TIMEOUT_SECONDS = float(os.environ.get("CLEARHOUSE_RAIL_TIMEOUT_SECONDS", "5"))
# The house's own accounts: the central settlement account at the bank (per currency) and at
# the custodian. Pay-ins go to them, pay-outs leave from them.
CLEARHOUSE_HOUSE_NAME = os.environ.get("CLEARHOUSE_HOUSE_NAME", "Clearhouse Central Settlement")
CLEARHOUSE_HOUSE_BANK_ACCOUNTS = {
    "USD": {"aba": "021000021", "account": "4400123456", "country": "US"},
    "EUR": {"iban": "DE12500105170648489890", "bic": "INGDDEFFXXX", "country": "DE"},
    "GBP": {"iban": "GB29NWBK60161331926819", "bic": "NWBKGB2LXXX", "country": "GB"},
}
CLEARHOUSE_HOUSE_CUSTODY_ACCOUNT = {"bic": "DTCYUS33XXX", "account": "CCP-0001"}
# Payment method choice and fallback (rails/fiat/routing.py): USD above ``ach_max`` or urgent
# goes by wire, EUR within SEPA by SEPA, anything else by SWIFT. A rejection whose ISO reason
# code is in ``reroute_reasons`` is retried by the next method of ``fallback``, at most
# ``max_attempts`` attempts in all; any other rejection goes to manual review.
CLEARHOUSE_FIAT_ROUTING: dict[str, Any] = {
    "ach_max": os.environ.get("CLEARHOUSE_ACH_MAX", "1000000.00"),
    "fallback": {"ach": "wire", "sepa": "swift"},
    "reroute_reasons": ["AM02", "AG01", "AG03", "CNOR", "RR04", "TM01", "MS03", "NARR"],
    "max_attempts": 3,
}
# Sends of one message without an answer (timeouts) before the payment goes to manual review.
CLEARHOUSE_RAIL_MAX_SENDS = int(os.environ.get("CLEARHOUSE_RAIL_MAX_SENDS", "6"))
# Business days a custody delivery may fail before a buy-in case is opened.
CLEARHOUSE_BUY_IN_AFTER_DAYS = int(os.environ.get("CLEARHOUSE_BUY_IN_AFTER_DAYS", "4"))
# Reconciliation: a house bank account's booking short by at most this much (a correspondent
# bank's fee) is booked as a fee - a journal from the house's absorbed bank charges
# (``bank-charges:absorbed``) to ``bank-charges`` - and its break resolves citing the journal;
# a larger shortfall stays open for people (an adjusting journal needs four-eyes approval).
CLEARHOUSE_RECON_FEE_SCHEDULE = {"USD": "25.00", "EUR": "20.00", "GBP": "20.00"}
# When each rail should have confirmed a movement: bank methods and custody by the end of the
# value date plus these days, chains this many minutes after the broadcast. A confirmation is
# missing once the grace period has passed after that.
CLEARHOUSE_RECON_COMPLETION = {"ach": 1, "wire": 0, "sepa": 0, "swift": 1, "custody": 0, "chain_minutes": 60}
CLEARHOUSE_RECON_GRACE_MINUTES = int(os.environ.get("CLEARHOUSE_RECON_GRACE_MINUTES", "120"))
# Chains whose transaction lists are imported and reconciled (their rail lists a block or slot
# range's transactions of our wallets).
CLEARHOUSE_RECON_CHAIN_LISTS = ["ethereum", "bitcoin", "solana"]
# Matching lines that carry no usable reference: same account and asset, same counterparty where
# both sides name one, amount within this much, value date within this many business days of
# the asset's calendar; paired one-to-one, closest first.
CLEARHOUSE_RECON_RULES: dict[str, Any] = {"amount": "25.00", "days": 3}
# Keys for house-custodied wallets: JSON {address: private key}, mode 600. Never in the database.
CLEARHOUSE_KEYSTORE = os.environ.get("CLEARHOUSE_KEYSTORE", str(VAR_DIR / "keystore.json"))
# Confirmation polling: first check after this many seconds, then backoff up to the cap.
CLEARHOUSE_CONFIRM_POLL_SECONDS = float(os.environ.get("CLEARHOUSE_CONFIRM_POLL_SECONDS", "2"))
CLEARHOUSE_BROADCAST_MAX_RETRIES = int(os.environ.get("CLEARHOUSE_BROADCAST_MAX_RETRIES", "5"))
# Checks in a row a transaction may be unknown to the node before it is rebroadcast.
CLEARHOUSE_DROPPED_AFTER_CHECKS = int(os.environ.get("CLEARHOUSE_DROPPED_AFTER_CHECKS", "2"))
# Confirmation polls per dispatch before the sweeper takes over.
CLEARHOUSE_CONFIRM_MAX_POLLS = int(os.environ.get("CLEARHOUSE_CONFIRM_MAX_POLLS", "40"))
# Trades per pipeline task (one task locks, signs and broadcasts a batch).
CLEARHOUSE_CRYPTO_BATCH = int(os.environ.get("CLEARHOUSE_CRYPTO_BATCH", "50"))
# The crypto T+0 engine: "batch" (batches per chain, set-based stages, one chain transaction for
# many settlements) or "trade" (one trade at a time, the pipeline before the batch engine).
CLEARHOUSE_CRYPTO_ENGINE = os.environ.get("CLEARHOUSE_CRYPTO_ENGINE", "batch")
# A batch closes at this many trades, or when the former runs this long after the first
# dispatch that woke it (whichever comes first).
CLEARHOUSE_BATCH_MAX_TRADES = int(os.environ.get("CLEARHOUSE_BATCH_MAX_TRADES", "1000"))
CLEARHOUSE_BATCH_WAIT_MS = int(os.environ.get("CLEARHOUSE_BATCH_WAIT_MS", "100"))
# Seconds between confirmation polls of a broadcast batch.
CLEARHOUSE_BATCH_POLL_SECONDS = float(os.environ.get("CLEARHOUSE_BATCH_POLL_SECONDS", "0.5"))
