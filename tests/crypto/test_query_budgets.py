"""Query budgets of the crypto T+0 pipeline's steps (issue 19): one trade through lock, sign,
broadcast and confirm + settle on the in-process chain. A change that adds queries to one of
these steps fails here, where a timing would only be noise. Each budget is what the step does
today plus one of headroom; when one has to grow, say why in the commit.

Counted inside the test's transaction: every nested atomic block adds a SAVEPOINT/RELEASE pair.
Before issue 19's fixes the steps ran lock 64, sign 32, broadcast 10, confirm + settle 82, counted
outside a test transaction (every log append its own head lock, the trade's accounts looked up one
by one in each step); 50, 17, 10, 60 after."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common.choices import InstructionStatus as S
from ledger.models import TransitionLog
from settlement.crypto import pipeline as crypto
from settlement.models import ChainTransfer
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("transition_log_started")]

# lock: legs + their accounts (1), fee rules and charges of the cash leg, per lock (funds x2 and
# the fee reserve): owner accounts, lock by reference, lock row + history, accounts locked,
# journal, postings, balances; both legs' rows + history; one log append (3); savepoints.
LOCK = 50 + 1
# sign: legs + accounts, halt, sender (locked) and receiver wallets, nonce, transfer + history,
# both legs' rows + history, one log append
SIGN = 17 + 1
BROADCAST = 10 + 1  # transfer read, halt, transfer locked, transfer + history, one log append
# confirm + settle: transfer, legs + accounts, transfer locked + saved + history, confirmed
# transfers, gas out of the reserve (journal), the funds posted on both legs, gas fee charge,
# both legs' rows + history, notification, one log append
CONFIRM_SETTLE = 63 + 1


def _count(action):
    with CaptureQueriesContext(connection) as captured:
        result = action()
    return result, len(captured)


@pytest.fixture
def eth_trade(funded, eth_usd, alice, bob, monkeypatch):
    from settlement import tasks

    monkeypatch.setattr(tasks.crypto_advance_task, "delay", lambda *args, **kwargs: None)  # steps run by hand
    return factories.trade(instrument=eth_usd, buyer=alice, seller=bob, quantity="0.5", price="3000.00")


def test_each_step_of_a_crypto_trade_stays_within_its_query_budget(eth_trade, eth, usd, chain):
    # given a pending ETH/USD trade (ETH on chain, USD on the ledger), fee reserves quoted
    reserves = crypto.fee_reserves_for([eth, usd])
    # when it is locked, signed, broadcast and confirmed + settled, one step at a time
    legs, lock = _count(lambda: crypto.crypto_trade_lock(trade=eth_trade, fee_reserves=reserves))
    assert [leg.status for leg in legs] == [S.LOCKED, S.LOCKED]
    transfers, sign = _count(lambda: crypto.crypto_trade_prepare(trade=eth_trade))
    assert len(transfers) == 1
    _, broadcast = _count(lambda: crypto.transfer_broadcast(transfer=transfers[0]))
    outcome, confirm = _count(lambda: crypto.transfer_check(transfer=ChainTransfer.objects.get(pk=transfers[0].pk)))
    # then it settled, and each step stayed within its budget
    assert outcome.state == "settled"
    assert sorted(eth_trade.instructions.values_list("status", flat=True)) == [S.SETTLED, S.SETTLED]
    counts = {"lock": lock, "sign": sign, "broadcast": broadcast, "confirm+settle": confirm}
    budgets = {"lock": LOCK, "sign": SIGN, "broadcast": BROADCAST, "confirm+settle": CONFIRM_SETTLE}
    over = {step: (counts[step], budgets[step]) for step in counts if counts[step] > budgets[step]}
    assert not over, f"over budget (queries, budget): {over}; all: {counts}"


def test_a_short_trade_fails_whole_and_logs_no_lock_of_the_rolled_back_part(eth_trade, eth, usd, alice):
    # given a trade whose buyer is short of USD once the ETH leg's locks are taken
    from ledger.models import LedgerAccount

    LedgerAccount.objects.filter(owner=alice, asset=usd, kind="available").update(balance=Decimal("1.00"))
    reserves = crypto.fee_reserves_for([eth, usd])
    # when it is locked
    legs = crypto.crypto_trade_lock(trade=eth_trade, fee_reserves=reserves)
    # then both legs failed, and the log holds no entry of the rolled-back locks (the entries
    # collected inside the savepoint went with it), only the two failures
    assert [leg.status for leg in legs] == [S.FAILED, S.FAILED]
    entries = TransitionLog.objects.filter(entity_type__in=["instruction", "ledgerlock"]).filter(
        entity_id__in=[leg.pk for leg in legs]
    )
    assert sorted(entries.filter(entity_type="instruction").values_list("to_status", flat=True)) == ["failed"] * 2
    assert not TransitionLog.objects.filter(entity_type="instruction", to_status="locked").exists()
