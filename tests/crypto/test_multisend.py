"""The Ethereum multisend contract (rails/crypto/contracts/multisend.vy): the committed artifact is
what the pinned vyper compiles from the source, and on the in-process py-evm chain (and once on
anvil) a batch pays each recipient exactly, logs one event per transfer with its reference, and
reverts whole on a wrong value, a recipient with code, an empty batch, a zero amount or recipient.

Gas per transfer is printed (run with ``-s`` to see it) and bounded."""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

import pytest
from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractLogicError

from rails.crypto.contracts import (
    MAX_TRANSFERS,
    MultisendError,
    Transfer,
    build_call,
    decode_events,
    deploy,
    recipients_with_code,
)
from rails.crypto.contracts import multisend as ms
from rails.simulators.anvil import AnvilNode, anvil_binary
from rails.simulators.eth_chain import LocalChain

GWEI = 10**9


def ref(i: int) -> bytes:
    return hashlib.sha256(f"settlement-{i}".encode()).digest()


_salt = os.urandom(8)
_addresses = itertools.count()


def new_address() -> str:
    """An address nobody has used (no code, no balance): as good as a new EOA, without a key."""
    return Web3.to_checksum_address(Web3.keccak(_salt + next(_addresses).to_bytes(8, "big"))[-20:])


def fresh_batch(n: int, *, base: int = 10**15) -> list[Transfer]:
    """``n`` transfers to new accounts, each amount distinct."""
    return [Transfer(new_address(), base + i, ref(i)) for i in range(n)]


def send(w3: Web3, sender: str, tx: dict[str, Any], gas: int = 25_000_000) -> Any:
    tx_hash = w3.eth.send_transaction(tx | {"from": sender, "gas": gas})
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)


def revert_reason(w3: Web3, sender: str, tx: dict[str, Any]) -> str:
    with pytest.raises((ContractLogicError, TransactionFailed)) as err:  # anvil / eth-tester
        w3.eth.call(tx | {"from": sender, "gas": 25_000_000})
    return str(err.value)


@pytest.fixture(scope="module")
def local() -> LocalChain:
    return LocalChain()


@pytest.fixture(scope="module")
def w3(local: LocalChain) -> Web3:
    return local.w3


@pytest.fixture(scope="module")
def payer(w3: Web3) -> str:
    return w3.eth.accounts[0]


@pytest.fixture(scope="module")
def contract(w3: Web3, payer: str) -> str:
    return deploy(w3, payer)


def test_committed_artifact_is_what_the_pinned_vyper_compiles_from_the_source():
    compiled = ms.compile_source()
    committed = ms.artifact()
    assert compiled["compiler"] == "vyper 0.4.3"  # the pin in requirements-dev.txt
    assert committed["source_sha256"] == ms.source_sha256(), "multisend.vy changed: python -m rails.crypto.contracts"
    assert compiled["bytecode"] == committed["bytecode"]
    assert compiled["bytecode_runtime"] == committed["bytecode_runtime"]
    assert compiled == committed


def test_deployed_code_is_the_committed_runtime_bytecode(w3, contract):
    assert w3.eth.get_code(contract) == bytes.fromhex(ms.artifact()["bytecode_runtime"][2:])
    assert w3.eth.get_storage_at(contract, 0) == b"\0" * 32


def test_deploy_from_a_local_key(local, w3):
    key = Account.create()
    local.fund(key.address, 10**18)
    address = deploy(w3, key)
    assert w3.eth.get_transaction_count(key.address) == 1
    assert w3.eth.get_code(address) == bytes.fromhex(ms.artifact()["bytecode_runtime"][2:])


def test_a_batch_pays_each_recipient_exactly_and_logs_each_reference(w3, payer, contract):
    batch = fresh_batch(50)
    before = w3.eth.get_balance(payer)
    tx = build_call(w3, contract, batch)
    assert tx["value"] == sum(t.amount for t in batch)
    receipt = send(w3, payer, tx)
    assert receipt["status"] == 1
    for t in batch:
        assert w3.eth.get_balance(t.recipient) == t.amount
    assert decode_events(receipt, contract) == [(t.reference, t.recipient, t.amount) for t in batch]
    assert w3.eth.get_balance(contract) == 0  # nothing stays in the contract
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(payer) == before - tx["value"] - fee


def test_the_same_recipient_twice_gets_both_amounts_and_two_events(w3, payer, contract):
    who = new_address()
    batch = [Transfer(who, 7, ref(1)), Transfer(who, 11, ref(2))]
    receipt = send(w3, payer, build_call(w3, contract, batch))
    assert w3.eth.get_balance(who) == 18
    assert [e[0] for e in decode_events(receipt, contract)] == [ref(1), ref(2)]


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_wrong_value_reverts_and_pays_nobody(w3, payer, contract, delta):
    batch = fresh_batch(3)
    tx = build_call(w3, contract, batch)
    tx["value"] += delta
    assert "msg.value != sum of amounts" in revert_reason(w3, payer, tx)
    receipt = send(w3, payer, tx)
    assert receipt["status"] == 0 and not receipt["logs"]
    assert all(w3.eth.get_balance(t.recipient) == 0 for t in batch)
    assert w3.eth.get_balance(contract) == 0
    with pytest.raises(MultisendError, match="reverted"):
        decode_events(receipt, contract)


def test_a_recipient_with_code_reverts_the_whole_batch(local, w3, payer, contract):
    other = deploy(w3, payer)  # any address with code
    batch = [*fresh_batch(2), Transfer(other, 5, ref(99))]
    assert recipients_with_code(w3, [t.recipient for t in batch]) == [other]
    tx = build_call(w3, contract, batch)
    assert "recipient has code" in revert_reason(w3, payer, tx)
    assert send(w3, payer, tx)["status"] == 0
    assert all(w3.eth.get_balance(t.recipient) == 0 for t in batch)


def test_empty_zero_amount_and_zero_recipient_are_refused_locally_and_on_chain(w3, payer, contract):
    instance = w3.eth.contract(address=contract, abi=ms.artifact()["abi"])
    who = new_address()
    zero = "0x" + "00" * 20
    cases = [([], "empty batch"), ([(who, 0, ref(1))], "zero amount"), ([(zero, 1, ref(1))], "zero recipient")]
    for rows, reason in cases:
        with pytest.raises(MultisendError):
            build_call(w3, contract, [Transfer(*row) for row in rows])
        raw = {"to": contract, "data": instance.encode_abi("multisend", args=[rows]), "value": sum(r[1] for r in rows)}
        assert reason in revert_reason(w3, payer, raw)
        assert send(w3, payer, raw)["status"] == 0


def test_build_call_refuses_what_the_contract_would(w3, contract):
    who = new_address()
    with pytest.raises(MultisendError, match="at most 1000"):
        build_call(w3, contract, [Transfer(who, 1, ref(i)) for i in range(MAX_TRANSFERS + 1)])
    for bad in (Transfer("0x1234", 1, ref(1)), Transfer(who, 1, b"short"), Transfer(who, -1, ref(1))):
        with pytest.raises(MultisendError):
            build_call(w3, contract, [bad])
    with pytest.raises(MultisendError):
        build_call(w3, contract, [Transfer(who, True, ref(1))])


def test_plain_ether_sent_to_the_contract_is_refused(w3, payer, contract):
    assert send(w3, payer, {"to": contract, "value": 1}, gas=100_000)["status"] == 0
    assert w3.eth.get_balance(contract) == 0


def test_decode_events_ignores_logs_from_another_address(w3, payer, contract):
    batch = fresh_batch(2)
    receipt = send(w3, payer, build_call(w3, contract, batch))
    assert len(decode_events(receipt, contract)) == 2
    assert decode_events(receipt, new_address()) == []


def gas_per_transfer(w3: Web3, payer: str, contract: str, batch: list[Transfer]) -> float:
    receipt = send(w3, payer, build_call(w3, contract, batch))
    assert receipt["status"] == 1
    assert len(decode_events(receipt, contract)) == len(batch)
    return receipt["gasUsed"] / len(batch)


def existing_recipients(w3: Web3, payer: str, contract: str, n: int) -> list[Transfer]:
    """``n`` transfers to accounts that already hold ether (funded by multisends of 500)."""
    batch = fresh_batch(n, base=GWEI)
    for start in range(0, n, 500):
        assert send(w3, payer, build_call(w3, contract, batch[start : start + 500]))["status"] == 1
    return batch


# Bounds with room. Paying an account that exists costs ~6.7k (value call less the unused stipend)
# + 2.6k (cold account) + 1.8k (log) + ~1k calldata; a new account adds 25k. Every call also pays
# the 21k base and ~26.7k of memory expansion: vyper copies the argument into memory and places
# the locals after its full bound (1000 x 96 bytes), so a batch of one costs ~61k.
@pytest.mark.parametrize(("n", "bound"), [(1, 65_000), (100, 16_000), (1000, 15_000)])
def test_gas_per_transfer_to_existing_accounts(w3, payer, contract, n, bound):
    batch = existing_recipients(w3, payer, contract, n)
    per = gas_per_transfer(w3, payer, contract, batch)
    print(f"\nmultisend py-evm, {n} transfers to existing accounts: {per:,.0f} gas per transfer")
    assert 9_000 < per < bound


@pytest.mark.parametrize(("n", "bound"), [(1, 90_000), (100, 41_000), (500, 40_000)])
def test_gas_per_transfer_to_new_accounts(w3, payer, contract, n, bound):
    per = gas_per_transfer(w3, payer, contract, fresh_batch(n))
    print(f"\nmultisend py-evm, {n} transfers to new accounts: {per:,.0f} gas per transfer")
    assert 34_000 < per < bound


def test_on_anvil_a_batch_of_1000_settles_and_reverts_like_on_the_local_chain():
    if anvil_binary() is None:
        pytest.fail("anvil is not installed: `make test` installs it (scripts/ensure_anvil.sh)")
    with AnvilNode() as node:
        w3 = node.w3
        key = Account.create()
        node.fund(key.address, 10**21)
        contract = deploy(w3, key)  # signed locally, sent raw, as the rail sends
        payer = w3.eth.accounts[0]
        batch = existing_recipients(w3, payer, contract, 1000)
        receipt = send(w3, payer, build_call(w3, contract, batch))
        assert receipt["status"] == 1
        assert decode_events(receipt, contract) == [(t.reference, t.recipient, t.amount) for t in batch]
        assert all(w3.eth.get_balance(t.recipient) == 2 * t.amount for t in batch)
        assert w3.eth.get_balance(contract) == 0
        per = receipt["gasUsed"] / len(batch)
        print(f"\nmultisend anvil, 1000 transfers to existing accounts: {per:,.0f} gas per transfer")
        assert 9_000 < per < 15_000
        tx = build_call(w3, contract, batch[:3])
        tx["value"] -= 1
        assert "msg.value != sum of amounts" in revert_reason(w3, payer, tx)
