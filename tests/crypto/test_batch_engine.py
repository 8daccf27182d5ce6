"""The batch engine on the in-process Ethereum chain: many trades per batch, one multisend chain
transaction per selling wallet, set-based ledger stages; tasks run in-process here (the
Redis-worker runs are in test_batch_workers.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.choices import CaseKind, Chain, LockStatus
from common.choices import InstructionStatus as S
from ledger.models import Journal, LedgerLock, TransitionLog
from ledger.services.audit import transition_log_verify
from ops.models import Notification, ReviewCase
from rails.base import TransferStatus as ChainStatus
from rails.crypto.registry import chain_rail
from settlement.batch_tasks import crypto_batch_advance_task
from settlement.crypto.batch_chain import batch_broadcast, batch_sign
from settlement.crypto.batch_form import batches_form
from settlement.crypto.batch_lock import batch_lock
from settlement.crypto.batch_settle import batch_check
from settlement.crypto.wallets import local_chain_fund, wallet_provision
from settlement.models import (
    BatchStatus,
    ChainTransaction,
    ChainTransfer,
    CryptoBatch,
    FeeCharge,
    SettlementHalt,
    Trade,
)
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.halts import halt_lift, halt_open
from settlement.services.trades import TradeInput, trades_ingest
from settlement.tasks import crypto_sweep_task
from tests import factories
from tests.crypto.conftest import ledger_total
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine(settings, chain):
    settings.CLEARHOUSE_CRYPTO_ENGINE = "batch"
    settings.CLEARHOUSE_BATCH_WAIT_MS = 0
    return chain


@pytest.fixture
def market(engine, eth, usd, eth_usd):
    """Three sellers with ETH in their house wallets (S3 has little), three buyers with USD."""
    people = {}
    for code, eth_amount in (("S1", "10"), ("S2", "10"), ("S3", "1"), ("B1", "0"), ("B2", "0"), ("B3", "0")):
        participant = factories.ParticipantFactory(code=code)
        wallet = wallet_provision(participant=participant, chain=Chain.ETHEREUM, actor=ACTOR)
        if eth_amount != "0":
            local_chain_fund(wallet=wallet, asset=eth, amount=Decimal(eth_amount), actor=ACTOR)
        else:
            factories.fund(participant, usd, "1000000.00")
        people[code] = participant
    return people


def ingest(instrument, people, rows, *, tag="T"):
    items = [
        TradeInput(
            source="tests",
            external_id=f"{tag}{n}",
            instrument=instrument,
            buyer=people[buyer],
            seller=people[seller],
            quantity=Decimal(quantity),
            price=Decimal("2000.00"),
            executed_at=factories.timezone.now(),
        )
        for n, (seller, buyer, quantity) in enumerate(rows)
    ]
    return trades_ingest(items=items, actor=ACTOR).trades


ROWS = [
    ("S1", "B1", "0.5"),
    ("S2", "B2", "1.25"),
    ("S3", "B3", "0.4"),
    ("S1", "B2", "0.75"),
    ("S3", "B1", "0.4"),  # S3: 0.4 + 0.4 fits 1 ETH with the fee reserves ...
    ("S3", "B2", "0.4"),  # ... the third 0.4 does not: only this trade fails
    ("S2", "B3", "2"),
]


def wallets_match_ledger(people, eth):
    rail = chain_rail("ethereum")
    for participant in people.values():
        address = participant.wallets.get(chain=Chain.ETHEREUM).address
        assert ledger_total(participant, eth) == rail.balance(address), participant.code


def test_a_batch_settles_its_trades_in_one_chain_transaction_per_seller(
    market, eth, usd, eth_usd, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        trades = ingest(eth_usd, market, ROWS)
    batch = CryptoBatch.objects.get()
    assert batch.status == BatchStatus.DONE and batch.size == len(ROWS)
    short = trades[5]
    for trade in trades:
        expected = S.FAILED if trade.pk == short.pk else S.SETTLED
        assert set(trade.instructions.values_list("status", flat=True)) == {expected}, trade.external_id
    # the short trade failed alone, every hold of it released
    assert not LedgerLock.objects.filter(reference__contains=f":{short.pk}:", status=LockStatus.PENDING).exists()
    assert "insufficient funds" in short.instructions.first().failure_reason
    # one chain transaction per selling wallet, each paying its legs in order, with references
    txs = list(ChainTransaction.objects.filter(batch=batch).order_by("from_address"))
    assert len(txs) == 3 and all(tx.status == TS.CONFIRMED for tx in txs)
    assert sorted(tx.payouts for tx in txs) == [2, 2, 2]  # S3 signs only the two trades it holds
    for tx in txs:
        rows = list(ChainTransfer.objects.filter(chain_tx=tx).order_by("output_index"))
        assert [r.output_index for r in rows] == list(range(tx.payouts))
        assert {r.tx_hash for r in rows} == {tx.tx_hash} and all(r.status == TS.CONFIRMED for r in rows)
        paid = chain_rail("ethereum").payouts_in(tx.tx_hash)
        assert [(i, ref) for i, ref, _, _ in paid] == [
            (r.output_index, f"{r.instruction.reference}:a{r.attempt}") for r in rows
        ]
    # each settled trade moved exactly once on chain; ledger == chain for every wallet
    settled = [t for t in trades if t.pk != short.pk]
    assert ChainTransfer.objects.filter(instruction__trade__in=settled).count() == len(settled)
    wallets_match_ledger(market, eth)
    report = transition_log_verify()
    assert report.ok, report.problems
    # notifications: one per participant per batch and event
    keys = set(Notification.objects.values_list("dedupe_key", flat=True))
    assert any(k.startswith(f"batch:{batch.pk}:settled:") for k in keys)
    assert any(k.startswith(f"batch:{batch.pk}:failed:lock:") for k in keys)


def counts():
    return (
        Journal.objects.count(),
        LedgerLock.objects.count(),
        ChainTransaction.objects.count(),
        ChainTransfer.objects.count(),
        TransitionLog.objects.count(),
    )


def test_every_stage_run_again_changes_nothing(market, eth, eth_usd, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        ingest(eth_usd, market, ROWS[:3])
    batch = CryptoBatch.objects.get()
    assert batch.status == BatchStatus.DONE
    before = counts()
    assert batch_lock(batch_id=batch.pk, fee_reserves={eth.pk: Decimal("0.01")}) is False
    assert batch_sign(batch_id=batch.pk) == "noop"
    assert batch_broadcast(batch_id=batch.pk) == "noop"
    assert batch_check(batch_id=batch.pk).done
    crypto_batch_advance_task(batch.pk)
    crypto_sweep_task(older_than_seconds=0)
    assert counts() == before
    wallets_match_ledger(market, eth)


@pytest.mark.parametrize("stopped_after", ["form", "lock", "sign", "sent"])
def test_a_batch_left_behind_at_any_stage_is_finished_by_the_sweeper_once(
    stopped_after, market, eth, eth_usd, settings
):
    """A worker killed between stages: the sweeper picks the batch up where it stopped."""
    ingest(eth_usd, market, ROWS[:4])  # no on-commit dispatch: nothing runs by itself
    (batch_id,) = batches_form().batches
    reserves = {eth.pk: Decimal("0.001")}
    if stopped_after in ("lock", "sign", "sent"):
        batch_lock(batch_id=batch_id, fee_reserves=reserves)
    if stopped_after in ("sign", "sent"):
        assert batch_sign(batch_id=batch_id) == "signed"
    signed = dict(ChainTransaction.objects.values_list("pk", "tx_hash"))
    if stopped_after == "sent":  # sent to the node, the worker died before recording it
        chain_rail("ethereum").broadcast_many(list(ChainTransaction.objects.values_list("raw_tx", flat=True)))
    crypto_sweep_task(older_than_seconds=0)
    batch = CryptoBatch.objects.get(pk=batch_id)
    assert batch.status == BatchStatus.DONE
    assert set(Trade.objects.values_list("instructions__status", flat=True)) == {S.SETTLED}
    # the bytes signed before the crash are the ones that landed
    for pk, tx_hash in signed.items():
        assert ChainTransaction.objects.get(pk=pk).tx_hash == tx_hash
    assert ChainTransfer.objects.count() == 4
    wallets_match_ledger(market, eth)


def _status_patch(monkeypatch, make):
    rail = chain_rail("ethereum")
    real = rail.status_many
    monkeypatch.setattr(rail, "status_many", lambda txs: [make(tx, st) for tx, st in zip(txs, real(txs), strict=True)])
    return rail


def _prepared(eth, eth_usd, market, rows):
    ingest(eth_usd, market, rows)
    (batch_id,) = batches_form().batches
    batch_lock(batch_id=batch_id, fee_reserves={eth.pk: Decimal("0.001")})
    assert batch_sign(batch_id=batch_id) == "signed"
    return batch_id


def test_a_dropped_transaction_is_sent_again_with_the_same_bytes(market, eth, eth_usd, monkeypatch, settings):
    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 2
    batch_id = _prepared(eth, eth_usd, market, ROWS[:2])
    rail = chain_rail("ethereum")
    sent: list[list[str]] = []
    real_send = rail.broadcast_many
    monkeypatch.setattr(rail, "broadcast_many", lambda raws: sent.append(list(raws)) or [None] * len(raws))
    assert batch_broadcast(batch_id=batch_id) == "broadcast"  # "accepted", but the node lost it
    unknown = ChainStatus(found=False, sender_nonce=0)
    monkeypatch.setattr(rail, "status_many", lambda txs: [unknown for _ in txs])
    batch_check(batch_id=batch_id)
    assert len(sent) == 1
    batch_check(batch_id=batch_id)  # second check in a row unseen: rebroadcast
    assert sorted(sent[1]) == sorted(sent[0])  # the very bytes signed before
    monkeypatch.undo()
    real_send(sent[0])
    assert batch_check(batch_id=batch_id).done
    assert set(Trade.objects.values_list("instructions__status", flat=True)) == {S.SETTLED}
    assert all(tx.broadcast_count == 2 for tx in ChainTransaction.objects.all())
    wallets_match_ledger(market, eth)


def test_a_reverted_chain_transaction_fails_exactly_its_trades_and_books_its_fee(market, eth, eth_usd, monkeypatch):
    batch_id = _prepared(eth, eth_usd, market, ROWS[:4])  # S1 pays two legs in one tx, S2 one
    victim = ChainTransaction.objects.get(payouts=2)
    fee = Decimal("0.000123")
    rail = chain_rail("ethereum")
    real_send = rail.broadcast_many
    monkeypatch.setattr(rail, "broadcast_many", lambda raws: [None] * len(raws))
    assert batch_broadcast(batch_id=batch_id) == "broadcast"
    monkeypatch.undo()
    others = list(ChainTransaction.objects.exclude(pk=victim.pk).values_list("raw_tx", flat=True))
    real_send(others)  # only the other transactions really land
    reverted = ChainStatus(found=True, confirmations=3, block_number=7, succeeded=False, fee=fee)
    _status_patch(monkeypatch, lambda tx, st: reverted if tx[0] == victim.tx_hash else st)
    batch_check(batch_id=batch_id)
    victim = ChainTransaction.objects.get(pk=victim.pk)
    assert victim.status == TS.FAILED and victim.fee == fee
    hit = set(ChainTransfer.objects.filter(chain_tx=victim).values_list("instruction__trade_id", flat=True))
    for trade in Trade.objects.all():
        statuses = set(trade.instructions.values_list("status", flat=True))
        assert statuses == ({S.FAILED} if trade.pk in hit else {S.SETTLED}), trade.external_id
    assert not LedgerLock.objects.filter(status=LockStatus.PENDING).exists()
    s1 = market["S1"]
    gas = sum(
        (c.fee for c in FeeCharge.objects.filter(instruction__payer=s1, cost_source__contains=victim.tx_hash)),
        Decimal(0),
    )
    assert gas == fee  # booked once, split over its legs
    assert ReviewCase.objects.filter(reason__contains="reverted").exists()
    assert CryptoBatch.objects.get(pk=batch_id).status == BatchStatus.DONE


def test_a_double_spent_nonce_halts_the_asset_and_fails_the_transaction_trades(market, eth, eth_usd, monkeypatch):
    batch_id = _prepared(eth, eth_usd, market, ROWS[:2])
    rail = chain_rail("ethereum")
    monkeypatch.setattr(rail, "broadcast_many", lambda raws: [None] * len(raws))
    assert batch_broadcast(batch_id=batch_id) == "broadcast"
    taken = ChainStatus(found=False, sender_nonce=5)
    monkeypatch.setattr(rail, "status_many", lambda txs: [taken for _ in txs])
    batch_check(batch_id=batch_id)
    assert SettlementHalt.objects.filter(asset=eth, lifted_at__isnull=True).exists()
    assert set(Trade.objects.values_list("instructions__status", flat=True)) == {S.FAILED}
    assert not LedgerLock.objects.filter(status=LockStatus.PENDING).exists()
    assert ReviewCase.objects.filter(kind=CaseKind.INVESTIGATION, reason__contains="double spend").exists()


def test_a_halt_keeps_the_batch_locked_until_lifted(market, eth, eth_usd, django_capture_on_commit_callbacks):
    halt = halt_open(asset=eth, reason="incident drill", actor=ACTOR)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(eth_usd, market, ROWS[:2])
    batch = CryptoBatch.objects.get()
    assert batch.status == BatchStatus.LOCKED
    assert not ChainTransaction.objects.exists()
    halt_lift(halt=halt, actor=factories.UserFactory(username="lifter"), reason="drill over")
    crypto_sweep_task(older_than_seconds=0)
    batch = CryptoBatch.objects.get(pk=batch.pk)
    assert batch.status == BatchStatus.DONE
    assert set(Trade.objects.values_list("instructions__status", flat=True)) == {S.SETTLED}
