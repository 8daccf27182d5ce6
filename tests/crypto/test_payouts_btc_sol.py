"""One Bitcoin / Solana transaction pays many settlements: sign_payouts, broadcast_many (one
JSON-RPC batch to the node simulator), status_many, payouts_in and the chain scan's per-payout
rows. Run with ``-s`` to see the timings."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests
from bitcoin.wallet import P2PKHBitcoinAddress
from solders.keypair import Keypair

from rails.base import Payout, RailRejected
from rails.crypto.bitcoin import BitcoinRail
from rails.crypto.btc_payouts import payout_outputs, references_of, references_script
from rails.crypto.signing import keystore
from rails.crypto.sol_payouts import MAX_PAYOUTS as SOL_MAX
from rails.crypto.sol_payouts import PACKET_DATA_SIZE, payouts_that_fit
from rails.crypto.solana import SolanaRail
from rails.simulators.bitcoin_node import BitcoinNodeSimulator
from rails.simulators.solana_node import SolanaNodeSimulator


@dataclass
class Node:
    chain: str
    sim: Any
    rail: Any
    sender: str

    def mine(self) -> None:
        if self.chain == "bitcoin":
            self.sim.call("sim_mine", [1])
        else:
            self.sim.call("sim_advance", [1])

    def new_address(self) -> str:
        if self.chain == "bitcoin":
            return str(P2PKHBitcoinAddress.from_bytes(os.urandom(20)))  # a fresh address, no key needed
        return str(Keypair().pubkey())

    def payouts(self, n: int, tag: str = "p", *, fixed: bool = False) -> list[Payout]:
        unit = Decimal("0.001")  # above Solana's rent-exempt minimum for a new account
        return [
            Payout(self.new_address(), unit if fixed else unit * (i + 1), f"SI{i}:6:delivery:{tag}{i}")
            for i in range(n)
        ]


@pytest.fixture(params=["bitcoin", "solana"])
def node(request, settings, tmp_path):
    settings.CLEARHOUSE_KEYSTORE = str(tmp_path / "keystore.json")
    if request.param == "bitcoin":
        sim: Any = BitcoinNodeSimulator(automine=False)
        rail: Any = BitcoinRail(sim.serve(), timeout=2)
        sender = keystore().add(os.urandom(32).hex(), "bitcoin")
    else:
        sim = SolanaNodeSimulator()
        rail = SolanaRail(sim.serve(), timeout=2)
        sender = keystore().add(bytes(Keypair()).hex(), "solana")
    sim.call("sim_fund", [sender, "10"])
    yield Node(request.param, sim, rail, sender)
    sim.stop()


def sign(node: Node, batch: list[Payout], state: dict[str, Any] | None = None) -> Any:
    return node.rail.sign_payouts(
        from_address=node.sender,
        payouts=batch,
        nonce=0,
        fee_cap=len(batch) * node.rail.payout_fee_reserve(),
        state=state,
    )


def test_sign_payouts_pays_each_once_and_reads_back_references(node):
    # given
    batch = node.payouts(6)
    before = node.rail.balance(node.sender)
    # when
    signed = sign(node, batch)
    assert node.rail.broadcast_many([signed.raw]) == [None]
    assert node.rail.broadcast_many([signed.raw, signed.raw]) == [None, None]  # the same bytes again: harmless
    node.mine()
    [status] = node.rail.status_many([(signed.tx_hash, node.sender, signed.raw)])
    # then
    assert status.found and status.succeeded and status.confirmations >= 1
    assert status == node.rail.status(tx_hash=signed.tx_hash, sender=node.sender, raw=signed.raw)
    assert status.fee is not None and 0 < status.fee <= signed.fee_cap
    assert node.rail.payouts_in(signed.tx_hash) == [
        (i, p.reference, p.to_address, p.amount) for i, p in enumerate(batch)
    ]
    for p in batch:
        assert node.rail.balance(p.to_address) == p.amount
    assert node.rail.balance(node.sender) == before - sum(p.amount for p in batch) - status.fee


def test_payouts_chain_through_the_change_or_blockhash(node):
    # two batches signed before either is broadcast (BTC: the second spends the first's change)
    first = sign(node, node.payouts(3, "a"))
    second = sign(node, node.payouts(3, "b"), state=first.state_after or None)
    assert node.rail.broadcast_many([first.raw, second.raw]) == [None, None]
    statuses = node.rail.status_many([(t.tx_hash, node.sender, t.raw) for t in (first, second)])
    assert all(s.found for s in statuses)
    node.mine()
    statuses = node.rail.status_many([(t.tx_hash, node.sender, t.raw) for t in (first, second)])
    assert all(s.succeeded for s in statuses)


def test_status_many_of_an_unknown_transaction(node):
    signed = sign(node, node.payouts(2))
    [status] = node.rail.status_many([(signed.tx_hash, node.sender, signed.raw)])
    assert not status.found and not status.double_spent(0)


def test_transactions_lists_one_row_per_payout(node):
    first = node.rail.head()
    batch = node.payouts(4, "t")
    signed = sign(node, batch)
    node.rail.broadcast_many([signed.raw])
    node.mine()
    rows = node.rail.transactions(addresses={node.sender}, first_block=first, last_block=node.rail.head())
    payout_rows = [r for r in rows if r["tx_hash"] == signed.tx_hash]
    assert [(r["index"], r["reference"], r["to"], r["amount"], r["from"]) for r in payout_rows] == [
        (i, p.reference, p.to_address, p.amount, node.sender) for i, p in enumerate(batch)
    ]


def test_too_many_or_bad_payouts_are_refused(node):
    with pytest.raises(RailRejected, match="1 to"):
        sign(node, [])
    with pytest.raises(RailRejected):
        sign(node, [Payout("not-an-address", Decimal(1), "r")])
    with pytest.raises(RailRejected, match="1 to"):
        sign(node, node.payouts(node.rail.max_payouts + 1))


def test_a_whole_batch_failure_of_the_transport_is_transient(node):
    from rails.base import RailTransientError

    signed = sign(node, node.payouts(1))
    node.sim.inject("unavailable")
    with pytest.raises(RailTransientError):
        node.rail.broadcast_many([signed.raw])


def test_simulators_answer_a_jsonrpc_batch_in_order(node):
    method = "getblockcount" if node.chain == "bitcoin" else "getSlot"
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": []} for i, m in enumerate([method, "nope", method])]
    answers = requests.post(node.sim.url, json=body, timeout=2).json()
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert "result" in answers[0] and answers[1]["error"]["code"] == -32601


def test_bitcoin_references_round_trip_in_an_op_return():
    refs = ["a", "SI12:6:delivery:a1", "x" * 64] * 20  # over 520 bytes: several pushes
    assert references_of(bytes(references_script(refs)), len(refs)) == refs
    assert references_of(bytes(references_script(refs)), len(refs) - 1) is None


def test_solana_payouts_fit_one_packet():
    # the worst case (64-character references) fits max_payouts, and sign refuses an oversize one
    assert payouts_that_fit([64] * 30) >= SOL_MAX
    assert payouts_that_fit([18] * 30) == 14
    assert PACKET_DATA_SIZE == 1232


@pytest.mark.parametrize("chain", ["bitcoin", "solana"])
def test_solana_worst_case_and_bitcoin_max_sizes_sign(settings, tmp_path, chain):
    settings.CLEARHOUSE_KEYSTORE = str(tmp_path / "keystore.json")
    if chain == "bitcoin":
        sim: Any = BitcoinNodeSimulator(automine=False)
        rail: Any = BitcoinRail(sim.serve(), timeout=5)
        sender = keystore().add(os.urandom(32).hex(), "bitcoin")
    else:
        sim = SolanaNodeSimulator()
        rail = SolanaRail(sim.serve(), timeout=5)
        sender = keystore().add(bytes(Keypair()).hex(), "solana")
    try:
        sim.call("sim_fund", [sender, "100"])
        n = Node(chain, sim, rail, sender)
        batch = [Payout(n.new_address(), Decimal("0.001"), f"{i:04d}" + "r" * 60) for i in range(rail.max_payouts)]
        signed = sign(n, batch)
        assert len(bytes.fromhex(signed.raw)) <= (100_000 if chain == "bitcoin" else PACKET_DATA_SIZE)
        if chain == "bitcoin":
            rows = payout_outputs(signed.raw)
            assert rows is not None and len(rows) == rail.max_payouts
    finally:
        sim.stop()


def test_measure_microseconds_per_payout(node):
    txs, per = (10, 500) if node.chain == "bitcoin" else (50, node.rail.max_payouts)
    batches = [node.payouts(per, f"m{k}-", fixed=True) for k in range(txs)]
    state: dict[str, Any] | None = None
    t0 = time.perf_counter()
    signed = []
    for batch in batches:
        s = sign(node, batch, state=state)
        signed.append(s)
        state = s.state_after or None
    t1 = time.perf_counter()
    assert node.rail.broadcast_many([s.raw for s in signed]) == [None] * txs
    t2 = time.perf_counter()
    node.mine()
    t3 = time.perf_counter()
    statuses = node.rail.status_many([(s.tx_hash, node.sender, s.raw) for s in signed])
    t4 = time.perf_counter()
    assert all(s.succeeded for s in statuses)
    n = txs * per
    print(
        f"\n{node.chain} {txs} x {per} payouts: sign {(t1 - t0) / n * 1e6:.0f} us, broadcast "
        f"{(t2 - t1) / n * 1e6:.0f} us, status {(t4 - t3) / n * 1e6:.0f} us per payout"
    )
