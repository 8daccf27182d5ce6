"""One Ethereum transaction pays many settlements: sign_payouts (a multisend call), broadcast_many,
status_many, payouts_in and the chain scan's per-payout rows, on the in-process chain and on anvil.
Run with ``-s`` to see the timings."""

from __future__ import annotations

import itertools
import os
import time
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from rails.base import Payout, RailRejected
from rails.crypto.contracts import Transfer, build_call, deploy
from rails.crypto.eth_payouts import (
    decode_references,
    encode_multisend,
    encode_references,
    payout_gas,
    payout_reference_bytes32,
)
from rails.crypto.ethereum import EthereumRail
from rails.crypto.multisend_deploy import dev_multisend_address, multisend_ensure
from rails.crypto.signing import keystore
from rails.simulators.anvil import AnvilNode, anvil_binary
from rails.simulators.eth_chain import LocalChain

ETH = 10**18
_salt = os.urandom(8)
_counter = itertools.count()


def new_address() -> str:
    return Web3.to_checksum_address(Web3.keccak(_salt + next(_counter).to_bytes(8, "big"))[-20:])


def payouts(n: int, *, tag: str = "a") -> list[Payout]:
    return [
        Payout(new_address(), Decimal("0.001") + Decimal(i) / 10**9, f"SI{i}:6:delivery:{tag}{i}") for i in range(n)
    ]


@pytest.fixture
def keys(settings, tmp_path):
    settings.CLEARHOUSE_KEYSTORE = str(tmp_path / "keystore.json")
    settings.CLEARHOUSE_ETH_MULTISEND = ""
    settings.CLEARHOUSE_PRODUCTION = False
    return keystore()


def wallet(keys: Any, fund: Any) -> str:
    key = Account.create()
    address = keys.add(key.key.to_0x_hex(), "ethereum")
    fund(address, 10 * ETH)
    return address


@pytest.fixture
def local(keys):
    chain = LocalChain()
    rail = EthereumRail(chain.w3)
    sender = wallet(keys, chain.fund)
    rail.multisend_address()  # deployed once, before the fee reserves are read
    return chain, rail, sender


def sign(rail: EthereumRail, sender: str, batch: list[Payout], nonce: int | None = None) -> Any:
    if nonce is None:
        nonce = rail.confirmed_nonce(sender)
    return rail.sign_payouts(
        from_address=sender, payouts=batch, nonce=nonce, fee_cap=len(batch) * rail.payout_fee_reserve()
    )


def test_references_map_to_keccak_and_round_trip_in_call_data():
    assert payout_reference_bytes32("SI12:6:delivery:a1") == bytes(Web3.keccak(text="SI12:6:delivery:a1"))
    refs = ["a", "SI12:6:delivery:a1", "x" * 64]
    head = b"\0" * (68 + 96 * 3)
    assert decode_references(head + encode_references(refs), 3) == refs
    assert decode_references(head, 3) is None
    with pytest.raises(ValueError, match="ASCII"):
        Payout(new_address(), Decimal(1), "é")
    with pytest.raises(ValueError, match="ASCII"):
        Payout(new_address(), Decimal(1), "x" * 65)
    with pytest.raises(ValueError, match="positive"):
        Payout(new_address(), Decimal(0), "r")


def test_hand_encoded_call_data_is_what_build_call_encodes(local):
    chain, rail, _ = local
    batch = payouts(3)
    data, value = encode_multisend(batch, rail.to_base_units)
    transfers = [
        Transfer(p.to_address, rail.to_base_units(p.amount), payout_reference_bytes32(p.reference)) for p in batch
    ]
    call = build_call(chain.w3, rail.multisend_address(), transfers)
    assert (data, value) == (bytes(call["data"]), call["value"])
    with pytest.raises(ValueError, match="invalid recipient"):
        encode_multisend([Payout("0x" + "00" * 20, Decimal(1), "r")], rail.to_base_units)


def test_sign_payouts_pays_each_once_and_reads_back_references(local):
    # given
    chain, rail, sender = local
    batch = payouts(5)
    before = rail.balance(sender)
    # when
    reserve = rail.payout_fee_reserve()
    signed = sign(rail, sender, batch)
    assert signed.fee_cap <= 5 * reserve
    assert rail.broadcast_many([signed.raw]) == [None]
    assert rail.broadcast_many([signed.raw]) == [None]  # the same bytes again: harmless
    chain.mine(2)
    [status] = rail.status_many([(signed.tx_hash, sender, signed.raw)])
    # then
    assert status.found and status.succeeded and status.confirmations >= 1
    assert status == rail.status(tx_hash=signed.tx_hash, sender=sender, raw=signed.raw)
    assert status.fee is not None and 0 < status.fee <= signed.fee_cap
    assert rail.payouts_in(signed.tx_hash) == [(i, p.reference, p.to_address, p.amount) for i, p in enumerate(batch)]
    for p in batch:
        assert rail.balance(p.to_address) == p.amount
    assert rail.balance(sender) == before - sum(p.amount for p in batch) - status.fee
    assert multisend_ensure(rail) == dev_multisend_address()  # deployed once, found again


def test_status_many_mixes_mined_pending_and_unknown(local):
    chain, rail, sender = local
    mined = sign(rail, sender, payouts(2))
    rail.broadcast_many([mined.raw])
    chain.auto_mine(False)
    pending = sign(rail, sender, payouts(2), nonce=mined.nonce + 1)
    unknown = sign(rail, sender, payouts(1), nonce=mined.nonce + 2)
    rail.broadcast_many([pending.raw])
    statuses = rail.status_many([(t.tx_hash, sender, t.raw) for t in (mined, pending, unknown)])
    assert [s.found for s in statuses] == [True, True, False]
    assert statuses[0].succeeded is True and statuses[1].succeeded is None
    assert statuses[2].sender_nonce == mined.nonce + 1


def test_a_recipient_with_code_is_refused_before_signing(local):
    chain, rail, sender = local
    contract = deploy(chain.w3, chain.w3.eth.accounts[0])
    batch = [*payouts(2), Payout(contract, Decimal("0.01"), "SI9:1:delivery:c")]
    with pytest.raises(RailRejected, match=contract):
        sign(rail, sender, batch)
    with pytest.raises(RailRejected, match="1 to 500"):
        sign(rail, sender, [])


def test_transactions_lists_one_row_per_payout(local):
    _, rail, sender = local
    first = rail.head() + 1
    batch = payouts(3, tag="t")
    signed = sign(rail, sender, batch)
    rail.broadcast_many([signed.raw])
    plain = rail.sign_transfer(
        from_address=sender,
        to_address=new_address(),
        amount=Decimal("0.5"),
        nonce=signed.nonce + 1,
        fee_cap=rail.fee_reserve(),
    )
    rail.broadcast(plain.raw)
    rows = rail.transactions(addresses={sender.lower()}, first_block=first, last_block=rail.head())
    payout_rows = [r for r in rows if r["tx_hash"] == signed.tx_hash]
    assert [(r["index"], r["reference"], r["to"], r["amount"], r["from"]) for r in payout_rows] == [
        (i, p.reference, p.to_address, p.amount, sender) for i, p in enumerate(batch)
    ]
    [plain_row] = [r for r in rows if r["tx_hash"] == plain.tx_hash]
    assert "index" not in plain_row and plain_row["amount"] == Decimal("0.5")


def test_production_without_the_setting_refuses_to_deploy(local, settings):
    from django.core.exceptions import ImproperlyConfigured

    _, rail, _ = local
    settings.CLEARHOUSE_PRODUCTION = True
    with pytest.raises(ImproperlyConfigured):
        multisend_ensure(rail)
    settings.CLEARHOUSE_ETH_MULTISEND = "0x" + "12" * 20
    assert multisend_ensure(rail) == Web3.to_checksum_address("0x" + "12" * 20)


def measure(rail: EthereumRail, sender: str, *, txs: int, per_tx: int, mine: Any) -> dict[str, float]:
    nonce = rail.confirmed_nonce(sender)
    batches = [payouts(per_tx, tag=f"m{k}-") for k in range(txs)]
    reserve = rail.payout_fee_reserve()
    rail.multisend_address()
    t0 = time.perf_counter()
    signed = [
        rail.sign_payouts(from_address=sender, payouts=b, nonce=nonce + k, fee_cap=len(b) * reserve)
        for k, b in enumerate(batches)
    ]
    t1 = time.perf_counter()
    assert rail.broadcast_many([s.raw for s in signed]) == [None] * txs
    t2 = time.perf_counter()
    mine(signed[-1].tx_hash)
    t3 = time.perf_counter()
    statuses = rail.status_many([(s.tx_hash, sender, s.raw) for s in signed])
    t4 = time.perf_counter()
    assert all(s.succeeded for s in statuses), [
        (k, s.found, s.succeeded, s.block_number) for k, s in enumerate(statuses) if not s.succeeded
    ]
    n = txs * per_tx
    return {
        "sign_us": (t1 - t0) / n * 1e6,
        "broadcast_us": (t2 - t1) / n * 1e6,
        "status_us": (t4 - t3) / n * 1e6,
    }


def test_measure_in_process_chain(local):
    chain, rail, sender = local
    m = measure(rail, sender, txs=4, per_tx=100, mine=lambda _: chain.mine(1))
    print(f"\nin-process chain, 4 x 100 payouts: {m}")


def test_on_anvil_batches_go_in_one_request(keys):
    if anvil_binary() is None:
        pytest.fail("anvil is not installed: `make test` installs it (scripts/ensure_anvil.sh)")
    with AnvilNode(extra_args=("--gas-limit", "2000000000")) as node:
        rail = EthereumRail(node.w3)
        sender = wallet(keys, lambda a, w: node.fund(a, 100 * w))
        batch = payouts(4)
        signed = sign(rail, sender, batch)
        trips = rail.rpc.round_trips
        assert rail.broadcast_many([signed.raw, signed.raw]) == [None, None]
        assert rail.rpc.round_trips == trips + 1
        [status] = rail.status_many([(signed.tx_hash, sender, signed.raw)])
        assert rail.rpc.round_trips == trips + 2
        assert status.succeeded and status.fee is not None and status.fee <= signed.fee_cap
        assert rail.payouts_in(signed.tx_hash) == [
            (i, p.reference, p.to_address, p.amount) for i, p in enumerate(batch)
        ]
        assert all(rail.balance(p.to_address) == p.amount for p in batch)
        assert rail.max_payouts * 38_000 < payout_gas(rail.max_payouts) < 30_000_000  # fits a 30M block
        node.automine(False)  # 50 large transactions queued at once: anvil's automine takes seconds each
        m = measure(rail, sender, txs=50, per_tx=400, mine=lambda _: node.mine())
        print(f"\nanvil, 50 x 400 payouts: {m}")


def test_a_reverted_multisend_lists_failed_rows_per_payout_and_pays_nobody(local):
    # given a multisend whose value is one wei short (the contract reverts it whole)
    _, rail, sender = local
    first = rail.head() + 1
    batch = payouts(2, tag="r")
    data, value = encode_multisend(batch, rail.to_base_units)
    tx = {
        "type": 2,
        "chainId": rail.chain_id(),
        "nonce": rail.confirmed_nonce(sender),
        "to": rail.multisend_address(),
        "value": value - 1,
        "data": data + encode_references([p.reference for p in batch]),
        "gas": payout_gas(2),
        "maxFeePerGas": rail.max_fee_per_gas(),
        "maxPriorityFeePerGas": 10**9,
    }
    raw = Web3.to_hex(keystore().sign_eth_transaction(sender, tx))
    tx_hash = Web3.keccak(hexstr=raw).to_0x_hex()
    # when
    assert rail.broadcast_many([raw]) == [None]
    [status] = rail.status_many([(tx_hash, sender, raw)])
    # then
    assert status.found and status.succeeded is False and status.fee > 0
    assert rail.payouts_in(tx_hash) == []
    assert all(rail.balance(p.to_address) == 0 for p in batch)
    rows = rail.transactions(addresses={sender}, first_block=first, last_block=rail.head())
    assert [(r["index"], r["reference"], r["amount"], r["succeeded"]) for r in rows if r["tx_hash"] == tx_hash] == [
        (i, p.reference, p.amount, False) for i, p in enumerate(batch)
    ]


def test_manage_multisend_deploy_prints_the_address(keys, settings, capsys):
    from django.core.management import call_command

    from rails.crypto import registry
    from rails.simulators.eth_chain import reset_local_chain

    settings.CLEARHOUSE_ETH_RPC_URL = "local"
    settings.CLEARHOUSE_CHAIN_RAILS = ["ethereum"]
    registry.reset()
    chain = reset_local_chain()
    try:
        call_command("multisend_deploy")
        address = capsys.readouterr().out.strip()
        assert address == dev_multisend_address() and len(chain.w3.eth.get_code(address)) > 0
        call_command("multisend_deploy")  # again: found, not deployed twice
        assert capsys.readouterr().out.strip() == address
    finally:
        registry.reset()
