"""Settling a closed window's plan through the central settlement account (CSA).

Each non-zero net obligation becomes a ``NettedInstruction``: a pay-in (participant → CSA) or a
pay-out (CSA → participant), created set-based when the window closes. Then, per instruction:

1. **lock** - pay-in: the participant's funds are locked on the ledger; pay-out: the CSA's. A
   pay-out waits until the participant's own pay-ins of the window and date have settled
   (delivery versus payment on the net: nobody receives before delivering what they owe) and
   until the CSA holds the value (its ledger account may not go negative).
2. **attempt** - the payment method is chosen (``rails.fiat.routing``; securities go to the
   custodian; assets without an external rail are a book transfer), the message is built and
   stored with its ids *before* it is sent, then handed to the network. No answer → the same
   message is sent again later (the network deduplicates by message id, so it pays once).
3. **report** - status reports, booking notifications and custody confirmations are fetched,
   stored raw and applied: settled → the lock posts (pay-in to the CSA, pay-out to the
   participant); rejected → the next method when the reason allows it, else manual review.
4. **legs** - when every instruction of a window and settlement date has settled, every trade
   leg of that window and date settles (both legs of a trade are in the same window and date,
   so delivery and payment settle together). Netting then settling moves each participant's
   balance by exactly the sum of its legs: the same final ledger as settling every leg gross.

Lock order: netted instruction rows → netting window row → ledger accounts → transition-log head.
The trade legs of a window are changed only under its row: while it is open by ingest and by
``trade_cancel`` (which take the window row before any leg, so neither holds a leg while waiting
for the window), once it is closed by ``legs_settle_netted`` here.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from calendars import business_days_between
from common.actors import Actor, SystemActor, actor_user, stamp_history
from common.choices import AccountKind, AssetKind, CaseKind, InstructionStatus, LockStatus
from common.exceptions import IllegalTransition, InsufficientFunds, NotPermitted
from common.money import format_amount
from common.ports import NETTED_RELEASE, Approval, approval_pending
from ledger.models import LedgerAccount
from ledger.services.audit import LogEntry, transition_log_append, transition_run
from ledger.services.ledger import (
    account_for,
    ledger_lock,
    ledger_lock_system,
    ledger_void,
    system_account_for,
)
from netting.models import (
    AttemptStatus,
    Direction,
    NettedInstruction,
    NettedStatus,
    NettingWindow,
    RailAttempt,
    RailMethod,
    RailReport,
)
from rails.base import RailRejected, RailTransientError
from rails.fiat.routing import AccountDetails, NoRoute, method_choose, method_fallback
from settlement.models import SettlementInstruction
from settlement.models.fees import FeeChargeStatus
from settlement.services.fees import (
    NettedFeeBook,
    fee_charges_mark,
    lock_post_with_fees,
    netted_fee_book,
    netted_fee_hold,
    netted_fees_pending,
    netted_fees_pending_many,
)

logger = logging.getLogger(__name__)
PLAN = SystemActor("settlement-plan")
CSA = "central-settlement"
N = NettedStatus
A = AttemptStatus


def _apply(
    ni: NettedInstruction,
    method: Callable[[], None],
    *,
    actor: Actor,
    reason: str,
    metadata: dict | None = None,
    update_fields: tuple[str, ...] = (),
) -> None:
    transition_run(
        ni,
        method,
        entity="nettedinstruction",
        actor=actor,
        reason=reason,
        metadata=metadata,
        update_fields=("status", "updated_at", *update_fields),
    )


def _apply_attempt(
    attempt: RailAttempt, method: Callable[[], None], *, actor: Actor, reason: str, update_fields: tuple[str, ...] = ()
) -> LogEntry:
    """Run an attempt's transition and save it; returns its log entry for the caller to append
    *after* any ledger work (lock order: accounts before the transition-log head)."""
    return transition_run(
        attempt,
        method,
        entity="railattempt",
        actor=actor,
        reason=reason,
        metadata={"message": attempt.message_id},
        update_fields=("status", *update_fields),
        log=False,
    )


# --- the plan ----------------------------------------------------------------------------------

_PLAN_SQL = """
INSERT INTO netting_nettedinstruction
    (window_id, obligation_id, participant_id, asset_id, settlement_date, direction, amount, status, method,
     lock_id, attempts, locks_taken, next_attempt_at, failing_since, failure_reason, created_at, updated_at)
SELECT window_id, id, participant_id, asset_id, settlement_date,
       CASE WHEN net < 0 THEN 'pay_in' ELSE 'pay_out' END, ABS(net), 'pending', '',
       NULL, 0, 0, NULL, NULL, '', %(now)s, %(now)s
FROM netting_netobligation WHERE window_id = %(window)s AND net <> 0
"""


def plan_create(*, window: NettingWindow, actor: Actor) -> None:
    """The settlement plan of a window being closed (runs in ``window_close``'s transaction): one
    netted instruction per non-zero obligation, held ones held. After commit one task starts
    them (``plan_start``): the close does not enqueue a task per batch itself."""
    from settlement.services.trades import history_insert_sql

    now = timezone.now()
    params = {"window": window.pk, "now": now, "reason": "settlement plan", "user": actor_user(actor)}
    params["user"] = params["user"].pk if params["user"] else None
    with connection.cursor() as cursor:
        cursor.execute(_PLAN_SQL, params)
        cursor.execute(history_insert_sql(NettedInstruction, "window_id = %(window)s"), params)
    for ni in NettedInstruction.objects.filter(window=window, obligation__held=True):
        _apply(ni, ni.mark_held, actor=actor, reason="over the participant's net debit cap: held for review")
    transaction.on_commit(partial(_plan_start_enqueue, window.pk))


def _plan_start_enqueue(window_id: int) -> None:
    from netting.tasks import plan_start_task

    try:
        plan_start_task.delay(window_id)
    except Exception:  # broker unreachable: the sweeper finds the pending instructions
        logger.exception("could not enqueue the start of window %s's plan", window_id)


def plan_start(*, window_id: int) -> int:
    """Dispatch every pending instruction of a closed window's plan in batches (a worker's job,
    so closing the window stays one short transaction)."""
    ids = list(
        NettedInstruction.objects.filter(window_id=window_id, status=N.PENDING)
        .order_by("direction", "pk")
        .values_list("pk", flat=True)
    )
    dispatch_netted(ids)
    return len(ids)


# --- dispatch -------------------------------------------------------------------------------------


def dispatch_netted(ids: Iterable[int]) -> None:
    """Enqueue work on netted instructions (called after commit; the sweeper covers a lost enqueue)."""
    from netting.tasks import netted_advance_task

    ids = sorted(set(ids))
    size = settings.CLEARHOUSE_CRYPTO_BATCH
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        try:
            netted_advance_task.delay(chunk)
        except Exception:  # broker unreachable: the sweeper picks them up
            logger.exception("could not enqueue netted instructions %s..%s", chunk[0], chunk[-1])


def _after_commit_dispatch(ids: list[int]) -> None:
    if ids:
        transaction.on_commit(partial(dispatch_netted, ids))


# --- bank and custody details ---------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    participant: AccountDetails
    participant_name: str


@dataclass
class Batch:
    """What a batch of netted instructions reads once instead of per payment (issue 19): the
    participants' bank and custody accounts on file and the fee book. Read before the rows are
    locked; each row is still re-read under its lock."""

    banks: dict[tuple[int, int], object]
    custody: dict[int, object]
    fees: NettedFeeBook | None

    @classmethod
    def load(cls, ids: list[int]) -> Batch:
        from reference.models import BankAccount, CustodyAccount

        rows = list(NettedInstruction.objects.filter(pk__in=ids).values_list("participant_id", "asset_id"))
        participants = {p for p, _ in rows}
        banks: dict[tuple[int, int], object] = {}
        for bank in BankAccount.objects.filter(participant_id__in=participants).order_by("pk"):
            banks.setdefault((bank.participant_id, bank.currency_id), bank)
        custody: dict[int, object] = {}
        for account in CustodyAccount.objects.filter(participant_id__in=participants).order_by("pk"):
            custody.setdefault(account.participant_id, account)
        return cls(banks=banks, custody=custody, fees=netted_fee_book(netted_ids=ids))


def _participant_route(ni: NettedInstruction, batch: Batch | None = None) -> Route:
    from reference.models import BankAccount, CustodyAccount

    asset = ni.asset
    if asset.kind == AssetKind.SECURITY:
        if batch is not None:
            custody = batch.custody.get(ni.participant_id)
        else:
            custody = CustodyAccount.objects.filter(participant=ni.participant).order_by("pk").first()
        if custody is None:
            raise NoRoute(f"{ni.participant.code} has no custody account on file")
        details = AccountDetails(bic=custody.custodian_bic, account=custody.account_id)
        return Route(RailMethod.CUSTODY, details, ni.participant.name)
    if asset.kind != AssetKind.FIAT:
        return Route(RailMethod.LEDGER, AccountDetails(), ni.participant.name)
    if batch is not None:
        bank = batch.banks.get((ni.participant_id, asset.pk))
    else:
        bank = BankAccount.objects.filter(participant=ni.participant, currency=asset).order_by("pk").first()
    if bank is None:
        raise NoRoute(f"{ni.participant.code} has no {asset.code} bank account on file")
    details = AccountDetails(iban=bank.iban, bic=bank.bic, aba=bank.aba_routing, account=bank.account_number)
    # A pay-out leaves once the pay-ins have landed, on the settlement date itself: it must arrive
    # that day. A pay-in submitted on the settlement date or later is late already.
    urgent = ni.direction == Direction.PAY_OUT or ni.settlement_date <= timezone.localdate()
    method = ni.method or method_choose(currency=asset.code, amount=ni.amount, urgent=urgent, account=details)
    return Route(method, details, bank.holder_name)


# --- ledger side ----------------------------------------------------------------------------------


def _csa_account(ni: NettedInstruction):
    return system_account_for(code=CSA, asset=ni.asset, allow_negative=False)


def _lock_funds(ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None) -> None:
    """Pay-in: lock the participant's funds; pay-out: lock the CSA's. Raises InsufficientFunds."""
    if ni.lock is not None and ni.lock.status == LockStatus.PENDING:
        return  # kept from before a review (value may be in flight)
    reference = f"{ni.reference}:L{ni.locks_taken + 1}"
    book = batch.fees if batch is not None else None
    fee = netted_fee_hold(ni=ni, attempt=ni.locks_taken + 1, book=book)  # a pay-in holds its fee with the amount
    if ni.direction == Direction.PAY_IN:
        lock = ledger_lock(
            owner=ni.participant,
            asset=ni.asset,
            amount=ni.amount + fee,
            reference=reference,
            actor=actor,
            expires_at=timezone.now() + timedelta(days=3650),
        )
    else:
        lock = ledger_lock_system(
            code=CSA,
            asset=ni.asset,
            amount=ni.amount,
            reference=reference,
            actor=actor,
            expires_at=timezone.now() + timedelta(days=3650),
        )
    ni.lock = lock
    ni.locks_taken += 1


def _post(
    ni: NettedInstruction, *, target: LedgerAccount, actor: Actor, reason: str, charges: list | None = None
) -> None:
    """Post a netted payment's lock to its target, its fee (if any) to the fee revenue account
    in the same journal (``charges``: its pending fee charges when the caller read them)."""
    if charges is None:
        charges = netted_fees_pending(ni)
    lock_post_with_fees(lock=ni.lock, to_account=target, amount=ni.amount, charges=charges, actor=actor, reason=reason)


def _targets(nis: list[NettedInstruction]) -> dict[int, LedgerAccount]:
    """Where each payment's lock posts: a pay-in to the CSA of its asset, a pay-out to the
    participant's available account - read once for a batch (one query for the participants)."""
    csa: dict[int, LedgerAccount] = {}
    outs = [ni for ni in nis if ni.direction != Direction.PAY_IN]
    found = {
        (a.owner_id, a.asset_id): a
        for a in LedgerAccount.objects.filter(
            owner_id__in={ni.participant_id for ni in outs},
            asset_id__in={ni.asset_id for ni in outs},
            kind=AccountKind.AVAILABLE,
        )
    }
    targets = {}
    for ni in nis:
        if ni.direction == Direction.PAY_IN:
            if ni.asset_id not in csa:
                csa[ni.asset_id] = _csa_account(ni)
            targets[ni.pk] = csa[ni.asset_id]
        else:
            account = found.get((ni.participant_id, ni.asset_id))
            if account is None:
                account = account_for(owner=ni.participant, asset=ni.asset, kind=AccountKind.AVAILABLE)
            account.asset = ni.asset  # no lazy asset load when the journal reads its precision
            targets[ni.pk] = account
    return targets


def _void(ni: NettedInstruction, *, actor: Actor, reason: str) -> None:
    ledger_void(lock=ni.lock, actor=actor, reason=reason)
    fee_charges_mark(charges=netted_fees_pending(ni), status=FeeChargeStatus.VOIDED, actor=actor, reason=reason)


def _settle(
    ni: NettedInstruction,
    *,
    actor: Actor,
    reason: str,
    metadata: dict | None = None,
    log_first: list[LogEntry] | None = None,
) -> None:
    """Post the lock (pay-in → CSA, pay-out → participant), mark settled, complete the group.
    Caller holds the instruction row; the window row is locked here, before any account
    (FOR NO KEY UPDATE: rows that merely reference the window, checked by their foreign key at
    commit, must not wait for it)."""
    NettingWindow.objects.select_for_update(no_key=True).filter(pk=ni.window_id).values_list("pk").first()
    if ni.direction == Direction.PAY_IN:
        target = _csa_account(ni)
    else:
        target = account_for(owner=ni.participant, asset=ni.asset, kind=AccountKind.AVAILABLE)
    _post(ni, target=target, actor=actor, reason=f"{reason}: {ni}")
    if log_first:
        transition_log_append(entries=log_first, actor=actor)
    _apply(ni, ni.mark_settled, actor=actor, reason=reason, metadata=metadata, update_fields=("next_attempt_at",))
    if ni.direction == Direction.PAY_IN:
        _release_pay_outs([ni])
    _group_complete(window_id=ni.window_id, settlement_date=ni.settlement_date, actor=actor)


def _release_pay_outs(pay_ins: list[NettedInstruction]) -> None:
    """After pay-ins settled: each participant's own pay-outs may go (it has delivered), and when
    the asset's last pay-in of the window and date has settled, every pay-out of that asset may
    (the CSA holds all of it). Pay-outs funded earlier by part of the pay-ins are the sweeper's.
    The window rows are locked, so of two last pay-ins settling at once the later one sees the
    other. Two queries for a batch of pay-ins, whatever its size; one dispatch after commit."""
    if not pay_ins:
        return
    groups = {(ni.window_id, ni.settlement_date) for ni in pay_ins}
    in_groups = Q()
    for window_id, settlement_date in groups:
        in_groups |= Q(window_id=window_id, settlement_date=settlement_date)
    assets = {(ni.window_id, ni.settlement_date, ni.asset_id) for ni in pay_ins}
    unsettled = set(
        NettedInstruction.objects.filter(in_groups, direction=Direction.PAY_IN)
        .exclude(status=N.SETTLED)
        .values_list("window_id", "settlement_date", "asset_id")
        .distinct()
    )
    last = assets - unsettled
    delivered = {(ni.window_id, ni.settlement_date, ni.participant_id) for ni in pay_ins}
    ids = [
        pk
        for pk, window_id, settlement_date, participant_id, asset_id in NettedInstruction.objects.filter(
            in_groups, direction=Direction.PAY_OUT, status=N.PENDING
        ).values_list("pk", "window_id", "settlement_date", "participant_id", "asset_id")
        if (window_id, settlement_date, participant_id) in delivered or (window_id, settlement_date, asset_id) in last
    ]
    _after_commit_dispatch(ids)


def _group_complete(*, window_id: int, settlement_date: date, actor: Actor) -> int:
    """Settle every leg of the window and date once all its netted instructions have settled.
    The window row is locked by the caller, so the last of two concurrent settlements sees the
    other's committed row and completes the group."""
    open_left = (
        NettedInstruction.objects.filter(window_id=window_id, settlement_date=settlement_date)
        .exclude(status=N.SETTLED)
        .exists()
    )
    if open_left:
        return 0
    return legs_settle_netted(window_id=window_id, settlement_date=settlement_date, actor=actor)


def legs_settle_netted(*, window_id: int, settlement_date: date, actor: Actor, chunk: int = 5000) -> int:
    """pending → settled for every leg of a completed window and date, in chunks: the FSM
    transition runs on each leg, the rows are written by one UPDATE per chunk, history and the
    transition log in bulk."""
    from settlement.services.trades import history_insert_sql

    ids = list(
        SettlementInstruction.objects.filter(
            netting_window_id=window_id, settlement_date=settlement_date, status=InstructionStatus.PENDING
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    reason = f"settled through the central settlement account (window {window_id}, {settlement_date})"
    user = actor_user(actor)
    for start in range(0, len(ids), chunk):
        legs = list(
            SettlementInstruction.objects.select_for_update()
            .filter(pk__in=ids[start : start + chunk], status=InstructionStatus.PENDING)
            .only("pk", "status")
            .order_by("pk")
        )
        for leg in legs:
            leg.mark_settled_netted()  # the FSM's rule (pending → settled) checked per leg
        leg_ids = [leg.pk for leg in legs]
        now = timezone.now()
        SettlementInstruction.objects.filter(pk__in=leg_ids, status=InstructionStatus.PENDING).update(
            status=InstructionStatus.SETTLED, updated_at=now
        )
        with connection.cursor() as cursor:
            cursor.execute(
                history_insert_sql(SettlementInstruction, "id = ANY(%(ids)s)", history_type="~"),
                {"ids": leg_ids, "now": now, "reason": reason[:100], "user": user.pk if user else None},
            )
        transition_log_append(
            entries=[
                LogEntry(
                    "instruction",
                    pk,
                    InstructionStatus.PENDING,
                    InstructionStatus.SETTLED,
                    reason,
                    {"window": window_id},
                )
                for pk in leg_ids
            ],
            actor=actor,
        )
    return len(ids)


# --- review -----------------------------------------------------------------------------------------


def _review(
    ni: NettedInstruction, *, actor: Actor, reason: str, release_funds: bool, log_first: list[LogEntry] | None = None
) -> None:
    """To manual review with a case. ``release_funds`` only when the network said no for good: a
    payment that merely went unanswered may still be made, so its lock stays."""
    from common.ports import case_open

    if release_funds and ni.lock is not None and ni.lock.status == LockStatus.PENDING:
        _void(ni, actor=actor, reason=f"void: {reason}")
    if log_first:
        transition_log_append(entries=log_first, actor=actor)
        log_first.clear()  # appended: a caller holding the list must not append them again
    ni.failure_reason = reason
    _apply(ni, ni.mark_review, actor=actor, reason=reason, update_fields=("failure_reason", "next_attempt_at"))
    case_open(
        kind=CaseKind.ESCALATION,
        reason=f"{ni} of {ni.participant.code} ({ni.get_direction_display()}), window {ni.window_id}: {reason}",
        dedupe_key=f"netted:{ni.pk}:{ni.attempts}:{reason[:60]}",
        asset=ni.asset,
    )


# --- advancing an instruction ----------------------------------------------------------------------


def _latest_attempt(ni: NettedInstruction) -> RailAttempt | None:
    if ni.attempts == 0:  # every attempt is counted on its instruction when it is created
        return None
    return RailAttempt.objects.filter(instruction=ni).order_by("-number").first()


def _lock_step(
    ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None, log_entries: list[LogEntry] | None = None
) -> str:
    """pending → locked (funds locked, method chosen). With ``log_entries`` the lock's log entry
    is added to that list for the caller to append at the end of its transaction."""
    if ni.direction == Direction.PAY_OUT:
        owes = (
            NettedInstruction.objects.filter(
                window_id=ni.window_id,
                settlement_date=ni.settlement_date,
                participant_id=ni.participant_id,
                direction=Direction.PAY_IN,
            )
            .exclude(status=N.SETTLED)
            .exists()
        )
        if owes:
            return "waiting"
    try:
        route = _participant_route(ni, batch)
    except NoRoute as exc:
        _review(ni, actor=actor, reason=str(exc), release_funds=False)
        return "review"
    ni.method = route.method  # the fee depends on the rail
    try:
        with transaction.atomic():
            _lock_funds(ni, actor=actor, batch=batch)
    except InsufficientFunds as exc:
        if ni.direction == Direction.PAY_OUT:
            return "waiting"  # the CSA does not hold it yet: other pay-ins are still on their way
        _review(ni, actor=actor, reason=f"insufficient funds for the pay-in: {exc.message}", release_funds=False)
        return "review"
    ni.method = route.method
    entry = transition_run(
        ni,
        ni.mark_locked,
        entity="nettedinstruction",
        actor=actor,
        reason=f"funds locked; method {route.method}",
        metadata={"lock": ni.lock.reference},
        update_fields=("status", "updated_at", "lock", "locks_taken", "method"),
        log=log_entries is None,
    )
    if log_entries is not None:
        log_entries.append(entry)
    return "locked"


def _advance_locked(
    ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None, log_first: list[LogEntry] | None = None
) -> RailAttempt | str:
    """What to do with a locked instruction: an attempt to send (its send already counted), or
    an outcome. ``log_first``: entries of this transaction still to append, before any other."""
    log_first = log_first if log_first is not None else []
    if ni.method == RailMethod.LEDGER:
        if log_first:  # pragma: no cover - the caller commits the lock step of a book transfer first
            raise RuntimeError("a book transfer settles in a transaction of its own")
        _settle(ni, actor=actor, reason="book transfer on the internal ledger")
        return "settled"
    if ni.next_attempt_at is not None and ni.next_attempt_at > timezone.now():
        return "waiting"
    attempt = _latest_attempt(ni)
    if attempt is None or attempt.status == A.REJECTED:
        try:
            attempt = _attempt_create(ni, actor=actor, batch=batch)
        except NoRoute as exc:
            _review(ni, actor=actor, reason=str(exc), release_funds=True, log_first=log_first)
            return "review"
    elif attempt.status in (A.ACCEPTED, A.FAILING):
        _flush(log_first, actor=actor)
        _apply(ni, ni.mark_submitted, actor=actor, reason="accepted by the network")
        return "submitted"
    elif attempt.sends >= (attempt.max_sends or settings.CLEARHOUSE_RAIL_MAX_SENDS):
        _review(
            ni,
            actor=actor,
            reason=f"no answer from the network after {attempt.sends} sends of {attempt.message_id}",
            release_funds=False,
            log_first=log_first,
        )
        return "review"
    else:  # a resend: counted before the call, in this transaction
        RailAttempt.objects.filter(pk=attempt.pk).update(sends=F("sends") + 1)
        attempt.sends += 1
    _flush(log_first, actor=actor)
    return attempt


def _flush(entries: list[LogEntry], *, actor: Actor) -> None:
    if entries:
        transition_log_append(entries=entries, actor=actor)
        entries.clear()


def netted_advance(*, ids: list[int], actor: Actor = PLAN) -> dict[str, int]:
    """Move each instruction as far as it can go now (lock, attempt, send). Safe to run twice:
    each step re-reads the row under its lock, and a resend carries the same message id. What
    the batch needs from other tables (accounts on file, fee rules, the CSA) is read once."""
    outcome: Counter[str] = Counter()
    batch = Batch.load(ids)
    for pk in ids:
        outcome[_advance_one(pk, actor=actor, batch=batch)] += 1
    return dict(outcome)


def _locked_row(pk: int) -> NettedInstruction | None:
    return (
        NettedInstruction.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("asset", "participant", "lock")
        .filter(pk=pk)
        .first()
    )


def _advance_one(pk: int, *, actor: Actor, batch: Batch | None = None) -> str:
    # One transaction locks the funds and creates the message (its log entries appended last,
    # after the ledger work: accounts before the log head). A book transfer's lock step commits
    # on its own: its settlement moves ledger accounts again, which must never be locked after
    # the log head in one transaction.
    with transaction.atomic():
        ni = _locked_row(pk)
        if ni is None:
            return "busy"
        if ni.status not in (N.PENDING, N.LOCKED):
            return str(ni.status)
        entries: list[LogEntry] = []
        if ni.status == N.PENDING:
            step = _lock_step(ni, actor=actor, batch=batch, log_entries=entries)
            if step != "locked":
                return step
        if ni.method == RailMethod.LEDGER:
            _flush(entries, actor=actor)
            todo: RailAttempt | str = "ledger"
        else:
            todo = _advance_locked(ni, actor=actor, batch=batch, log_first=entries)
        _flush(entries, actor=actor)  # whatever the outcome, the lock's entry goes in with it
    if todo == "ledger":
        with transaction.atomic():
            ni = _locked_row(pk)
            if ni is None:
                return "busy"
            if ni.status != N.LOCKED:
                return str(ni.status)
            todo = _advance_locked(ni, actor=actor, batch=batch)
    if isinstance(todo, str):
        return todo
    return _send(todo, actor=actor)


# --- attempts ---------------------------------------------------------------------------------------


def _attempt_create(ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None) -> RailAttempt:
    """A new attempt with its message, its first send counted (the row says SENDING before the
    call: a crash after it is resent by the sweeper)."""
    from netting.messages import build_message

    route = _participant_route(ni, batch)
    number = ni.attempts + 1
    message_id = f"CH{ni.pk}A{number}"
    end_to_end_id = f"N{ni.pk}-{number}"
    message = build_message(ni=ni, route=route, message_id=message_id, end_to_end_id=end_to_end_id)
    attempt = RailAttempt(
        instruction=ni,
        number=number,
        method=route.method,
        message_type=message.message_type,
        message_id=message_id,
        end_to_end_id=end_to_end_id,
        payload=message.payload,
        sends=1,
    )
    stamp_history(attempt, actor=actor, reason=f"{route.method} attempt {number}")
    attempt.save()
    ni.attempts = number
    ni.save(update_fields=("attempts", "updated_at"))
    return attempt


def _network_of(method: str) -> str:
    return "custodian" if method == RailMethod.CUSTODY else "bank"


def _backoff(sends: int) -> timedelta:
    window = min(300.0, 2.0 * (2**sends))
    return timedelta(seconds=random.uniform(window / 10, window))  # noqa: S311 - jitter


def attempt_send(*, attempt_id: int, actor: Actor = PLAN) -> str:
    """Send (or resend) an attempt's stored message. The row says SENDING before the call, so a
    crash after it is resent by the sweeper; the network keeps one payment per message id."""
    attempt = RailAttempt.objects.get(pk=attempt_id)
    RailAttempt.objects.filter(pk=attempt_id).update(sends=F("sends") + 1)
    return _send(attempt, actor=actor)


def _send(attempt: RailAttempt, *, actor: Actor) -> str:
    """Hand an attempt's message to its network (the send already counted) and apply the answer."""
    from netting.messages import CONTENT_TYPES
    from rails.networks import network_client

    attempt_id = attempt.pk
    client = network_client(_network_of(attempt.method))
    try:
        client.submit(
            message_id=attempt.message_id,
            payload=attempt.payload,
            content_type=CONTENT_TYPES.get(attempt.message_type, "application/xml"),
        )
    except RailTransientError as exc:
        return _attempt_no_answer(attempt_id, error=str(exc), actor=actor)
    except RailRejected as exc:
        code, _, text = str(exc).partition(": ")
        return attempt_event(attempt_id=attempt_id, event="rejected", code=code, text=text, actor=actor)
    return attempt_event(attempt_id=attempt_id, event="accepted", actor=actor, seen=A.SENDING)


def _attempt_no_answer(attempt_id: int, *, error: str, actor: Actor) -> str:
    with transaction.atomic():
        ni = NettedInstruction.objects.select_for_update().get(rail_attempts__pk=attempt_id)
        attempt = RailAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status not in (A.SENDING, A.TIMED_OUT):
            return str(attempt.status)  # answered meanwhile (a report came first)
        entry = _apply_attempt(attempt, attempt.mark_timed_out, actor=actor, reason=f"no answer: {error}")
        transition_log_append(entries=[entry], actor=actor)
        ni.next_attempt_at = timezone.now() + _backoff(attempt.sends)
        ni.save(update_fields=("next_attempt_at", "updated_at"))
        return "timeout"


def _repeat(event: str, seen: str | None) -> bool:
    """Whether an event is a repeat of what an attempt last seen in status ``seen`` already
    says. The statuses it looks for are final for that event (nothing goes back to sending, or
    out of settled or rejected), so a status read earlier is as good as a fresh one."""
    return (event == "accepted" and seen not in (A.SENDING, A.TIMED_OUT)) or (
        event in ("settled", "rejected") and seen in (A.SETTLED, A.REJECTED) and event[:3] == str(seen)[:3]
    )


def attempt_event(
    *,
    attempt_id: int,
    event: str,
    code: str = "",
    text: str = "",
    on: date | None = None,
    actor: Actor = PLAN,
    seen: str | None = None,
) -> str:
    """Apply what the network said about an attempt. Every branch is idempotent: the same
    report applied twice (duplicate delivery) changes nothing the second time. ``seen``: the
    attempt's status as the caller read it (else read here)."""
    # Most repeats (the acceptance after the submit call already said so, the status report after
    # the booking settled it) are recognised without taking a lock; the locked re-check decides.
    if seen is None:
        seen = RailAttempt.objects.filter(pk=attempt_id).values_list("status", flat=True).first()
    if _repeat(event, seen):
        return "duplicate"
    with transaction.atomic():
        ni = (
            NettedInstruction.objects.select_for_update(of=("self",))
            .select_related("asset", "participant", "lock")
            .get(rail_attempts__pk=attempt_id)
        )
        attempt = RailAttempt.objects.select_for_update().get(pk=attempt_id)
        if event == "accepted":
            return _on_accepted(ni, attempt, actor=actor)
        if event == "settled":
            return _on_settled(ni, attempt, actor=actor)
        if event == "rejected":
            return _on_rejected(ni, attempt, code=code, text=text, actor=actor)
        if event == "failing":
            return _on_failing(ni, attempt, code=code, text=text, on=on, actor=actor)
        raise ValueError(f"unknown rail event {event!r}")


def _on_accepted(ni: NettedInstruction, attempt: RailAttempt, *, actor: Actor) -> str:
    if attempt.status not in (A.SENDING, A.TIMED_OUT):
        return "duplicate"
    attempt.accepted_at = timezone.now()
    entries = [
        _apply_attempt(attempt, attempt.mark_accepted, actor=actor, reason="accepted", update_fields=("accepted_at",))
    ]
    if ni.status == N.LOCKED and ni.attempts == attempt.number:
        ni.next_attempt_at = None
        reason = f"{attempt.method} message {attempt.message_id} accepted"
        entries.append(
            transition_run(
                ni,
                ni.mark_submitted,
                entity="nettedinstruction",
                actor=actor,
                reason=reason,
                update_fields=("status", "updated_at"),
                log=False,
            )
        )
    transition_log_append(entries=entries, actor=actor)  # one head lock for both
    return "submitted"


def _on_settled(ni: NettedInstruction, attempt: RailAttempt, *, actor: Actor) -> str:
    if attempt.status == A.SETTLED:
        return "duplicate"
    if (
        attempt.status == A.REJECTED
        or ni.attempts != attempt.number
        or ni.status == N.SETTLED
        or ni.lock is None
        or ni.lock.status != LockStatus.PENDING
    ):
        return _investigate(attempt, ni, f"but {ni} is {ni.status} / attempt {attempt.status}")
    attempt.resolved_at = timezone.now()
    entry = _apply_attempt(attempt, attempt.mark_settled, actor=actor, reason="settled", update_fields=("resolved_at",))
    ni.next_attempt_at = None
    ni.failing_since = None
    ni.save(update_fields=("failing_since",))
    _settle(
        ni,
        actor=actor,
        reason=f"settled by {attempt.method} ({attempt.message_id})",
        metadata={"message": attempt.message_id},
        log_first=[entry],
    )
    return "settled"


def _on_rejected(ni: NettedInstruction, attempt: RailAttempt, *, code: str, text: str, actor: Actor) -> str:
    if attempt.status in (A.REJECTED, A.SETTLED):
        return "duplicate"
    attempt.reason_code = code[:8]
    attempt.reason_text = text[:255]
    attempt.resolved_at = timezone.now()
    entry = _apply_attempt(
        attempt,
        attempt.mark_rejected,
        actor=actor,
        reason=f"rejected {code} {text}".strip(),
        update_fields=("reason_code", "reason_text", "resolved_at"),
    )
    if ni.attempts != attempt.number or ni.status == N.SETTLED:
        transition_log_append(entries=[entry], actor=actor)
        return "rejected"
    if ni.status == N.REVIEW:  # in review after timeouts: now the network has said no for good
        from common.ports import case_open

        reason = f"rejected by {attempt.method}: {code} {text}".strip()
        if ni.lock is not None and ni.lock.status == LockStatus.PENDING:
            _void(ni, actor=actor, reason=f"void: {reason}")
        transition_log_append(entries=[entry], actor=actor)
        ni.failure_reason = reason
        ni.save(update_fields=("failure_reason", "updated_at"))
        case_open(
            kind=CaseKind.ESCALATION,
            reason=f"{ni} of {ni.participant.code}, window {ni.window_id}: {reason} (funds released)",
            dedupe_key=f"netted:{ni.pk}:{ni.attempts}:{reason[:60]}",
            asset=ni.asset,
        )
        return "review"
    route = _participant_route(ni)
    fallback = method_fallback(method=attempt.method, reason_code=code, attempts=ni.attempts, account=route.participant)
    if fallback is None:
        _review(
            ni,
            actor=actor,
            reason=f"rejected by {attempt.method}: {code} {text}".strip(),
            release_funds=True,
            log_first=[entry],
        )
        return "review"
    transition_log_append(entries=[entry], actor=actor)
    ni.method = fallback
    ni.next_attempt_at = None
    reason = f"{attempt.method} rejected {code}; rerouted to {fallback}"
    if ni.status == N.SUBMITTED:  # (locked or pending: the next advance sends by the new method)
        _apply(ni, ni.mark_rerouted, actor=actor, reason=reason, update_fields=("method", "next_attempt_at"))
    else:
        ni.save(update_fields=("method", "next_attempt_at", "updated_at"))
    _after_commit_dispatch([ni.pk])
    return "rerouted"


def _on_failing(
    ni: NettedInstruction, attempt: RailAttempt, *, code: str, text: str, on: date | None, actor: Actor
) -> str:
    if attempt.status in (A.SETTLED, A.REJECTED):
        return "duplicate"
    if attempt.status != A.FAILING:
        attempt.reason_code = code[:8]
        attempt.reason_text = text[:255]
        entry = _apply_attempt(
            attempt,
            attempt.mark_failing,
            actor=actor,
            reason=f"failing {code} {text}".strip(),
            update_fields=("reason_code", "reason_text"),
        )
        transition_log_append(entries=[entry], actor=actor)
    if ni.failing_since is None:
        ni.failing_since = on or timezone.localdate()
        ni.failure_reason = f"delivery failing: {code} {text}".strip()
        ni.save(update_fields=("failing_since", "failure_reason", "updated_at"))
    if ni.status == N.LOCKED:
        _apply(ni, ni.mark_submitted, actor=actor, reason="accepted by the custodian (failing)")
    return "failing"


# --- reports -----------------------------------------------------------------------------------------


def rail_reports_fetch(*, network: str, actor: Actor = PLAN, dispatch: bool = False) -> dict[str, int]:
    """Fetch the network's new reports, store them raw (once per natural key: epoch and sequence
    number, ``netting.reports``) and apply the ones not applied yet: here, in order, or
    (``dispatch``) spread over the workers in chunks - applying is idempotent and order-tolerant
    (a settlement seen before its acceptance settles, the acceptance is then a duplicate), so
    chunks may run in parallel."""
    from netting.reports import reports_receive

    before = reports_receive(network=network)
    unapplied = RailReport.objects.filter(network=network, applied=False)
    if dispatch:  # only the new ones: ones a lost task left behind are the sweeper's (netted_sweep)
        unapplied = unapplied.filter(pk__gt=before)
    pending = list(unapplied.order_by("pk").values_list("pk", flat=True))
    if dispatch:
        from netting.tasks import reports_apply_task

        for start in range(0, len(pending), 50):
            try:
                reports_apply_task.delay(pending[start : start + 50])
            except Exception:  # broker down: the next fetch finds them unapplied
                logger.exception("could not enqueue report application")
        return {"dispatched": len(pending)}
    outcome: Counter[str] = Counter()
    for start in range(0, len(pending), 200):
        outcome.update(reports_apply(report_ids=pending[start : start + 200], actor=actor))
    return dict(outcome)


def attempts_settle(
    *, attempt_ids: list[int], actor: Actor = PLAN, mismatched: dict[int, str] | None = None
) -> dict[int, str]:
    """Settle many attempts the networks confirmed, in one transaction: the batch form of
    ``attempt_event(event="settled")``, for report application at volume. Lock order as
    everywhere: instruction rows (by pk) → window rows → every ledger account the posts touch (by
    pk) → transition-log head, taken once for the whole batch instead of once per payment.

    A confirmation that cannot be booked - of an attempt we count as rejected, of a second
    attempt of one instruction, of an instruction already settled or without its funds, or whose
    amount/side differ from the instruction (``mismatched``: attempt id → what differs) - is not
    booked: it opens an investigation case, after the batch's log append."""
    results: dict[int, str] = {}
    mismatched = mismatched or {}
    if not attempt_ids:
        return results
    investigate: list[tuple[RailAttempt, NettedInstruction, str]] = []
    with transaction.atomic():
        attempts = list(RailAttempt.objects.filter(pk__in=attempt_ids).order_by("pk"))
        nis = {
            ni.pk: ni
            for ni in NettedInstruction.objects.select_for_update(of=("self",))
            .select_related("asset", "participant", "lock")
            .filter(pk__in={a.instruction_id for a in attempts})
            .order_by("pk")
        }
        attempts = list(RailAttempt.objects.select_for_update().filter(pk__in=attempt_ids).order_by("pk"))
        eligible: list[tuple[NettedInstruction, RailAttempt]] = []
        taken: set[int] = set()
        settleable = (N.LOCKED, N.SUBMITTED, N.REVIEW, N.PENDING)
        for attempt in attempts:
            ni = nis[attempt.instruction_id]
            if attempt.status == A.SETTLED:
                results[attempt.pk] = "duplicate"
            elif attempt.pk in mismatched:
                investigate.append((attempt, ni, mismatched[attempt.pk]))
            elif (
                attempt.status == A.REJECTED
                or ni.pk in taken
                or ni.status not in settleable
                or ni.lock is None
                or ni.lock.status != LockStatus.PENDING
            ):
                investigate.append((attempt, ni, f"but {ni} is {ni.status} / attempt {attempt.status}"))
            else:
                eligible.append((ni, attempt))
                taken.add(ni.pk)
        entries: list[LogEntry] = []
        if eligible:
            windows = sorted({ni.window_id for ni, _ in eligible})
            list(
                NettingWindow.objects.select_for_update(no_key=True).filter(pk__in=windows).order_by("pk").values("pk")
            )
            targets = _targets([ni for ni, _ in eligible])
            account_ids = {t.pk for t in targets.values()} | {ni.lock.locked_account_id for ni, _ in eligible}
            list(LedgerAccount.objects.select_for_update().filter(pk__in=account_ids).order_by("pk").values("pk"))
            fees = netted_fees_pending_many([ni for ni, _ in eligible])
            now = timezone.now()
            for ni, attempt in eligible:
                reason = f"settled by {attempt.method} ({attempt.message_id})"
                _post(ni, target=targets[ni.pk], actor=actor, reason=f"{reason}: {ni}", charges=fees[ni.pk])
                attempt.resolved_at = now
                entries.append(
                    _apply_attempt(
                        attempt, attempt.mark_settled, actor=actor, reason="settled", update_fields=("resolved_at",)
                    )
                )
                ni.next_attempt_at = None
                ni.failing_since = None
                entries.append(
                    transition_run(
                        ni,
                        ni.mark_settled,
                        entity="nettedinstruction",
                        actor=actor,
                        reason=reason,
                        metadata={"message": attempt.message_id},
                        update_fields=("status", "updated_at", "next_attempt_at", "failing_since"),
                        log=False,
                    )
                )
                results[attempt.pk] = "settled"
        if entries:
            transition_log_append(entries=entries, actor=actor)
        _release_pay_outs([ni for ni, _ in eligible if ni.direction == Direction.PAY_IN])
        for window_id, settlement_date in sorted({(ni.window_id, ni.settlement_date) for ni, _ in eligible}):
            _group_complete(window_id=window_id, settlement_date=settlement_date, actor=actor)
        for attempt, ni, why in investigate:
            results[attempt.pk] = _investigate(attempt, ni, why)
    return results


def _investigate(attempt: RailAttempt, ni: NettedInstruction, why: str) -> str:
    """The network says a payment was made that we cannot book as it is: never book it silently."""
    from common.ports import case_open

    case_open(
        kind=CaseKind.INVESTIGATION,
        reason=f"{attempt.message_id} ({attempt.end_to_end_id}) reported settled {why}",
        dedupe_key=f"netted-unexpected:{attempt.pk}",
        asset=ni.asset,
    )
    return "investigate"


def reports_apply(*, report_ids: list[int], actor: Actor = PLAN) -> dict[str, int]:
    """Apply many stored reports: their confirmations settle in one batch transaction
    (``attempts_settle``), every other event on its own (``attempt_event``). Idempotent."""
    from netting.messages import report_events

    reports = list(RailReport.objects.filter(pk__in=report_ids, applied=False).order_by("pk"))
    events = {report.pk: report_events(kind=report.kind, content=report.content) for report in reports}
    wanted = {event.end_to_end_id for items in events.values() for event in items}
    seen: dict[int, str] = {}
    attempt_of: dict[str, int] = {}
    for end_to_end_id, pk, status in RailAttempt.objects.filter(end_to_end_id__in=wanted).values_list(
        "end_to_end_id", "pk", "status"
    ):
        attempt_of[end_to_end_id], seen[pk] = pk, status
    to_settle = sorted(
        {
            attempt_of[event.end_to_end_id]
            for items in events.values()
            for event in items
            if event.event == "settled" and event.end_to_end_id in attempt_of
        }
    )
    expected = {
        pk: (amount, direction)
        for pk, amount, direction in RailAttempt.objects.filter(pk__in=to_settle).values_list(
            "pk", "instruction__amount", "instruction__direction"
        )
    }
    mismatched: dict[int, str] = {}
    for items in events.values():
        for event in items:
            attempt_id = attempt_of.get(event.end_to_end_id)
            if event.event != "settled" or attempt_id not in expected:
                continue
            amount, direction = expected[attempt_id]
            side = "CRDT" if direction == Direction.PAY_IN else "DBIT"  # on the house's account
            if event.amount is not None and event.amount != amount:
                mismatched[attempt_id] = f"for {event.amount} but the instruction is for {amount}"
            elif event.side and event.side != side:
                mismatched[attempt_id] = f"as a {event.side} on the house account, expected {side}"
    settled = attempts_settle(attempt_ids=to_settle, actor=actor, mismatched=mismatched)
    outcome: Counter[str] = Counter()
    done: list[RailReport] = []
    for report in reports:
        notes, failed = [], False
        for event in events[report.pk]:
            attempt_id = attempt_of.get(event.end_to_end_id)
            if attempt_id is None:
                result = "not ours"
            elif event.event == "settled":
                result = settled.pop(attempt_id, "duplicate")  # a second confirmation in the batch
            elif _repeat(event.event, seen[attempt_id]):  # read before this batch: still a repeat
                result = "duplicate"
            else:
                try:
                    result = attempt_event(
                        attempt_id=attempt_id,
                        event=event.event,
                        code=event.code,
                        text=event.text,
                        on=event.on,
                        actor=actor,
                    )
                except Exception:  # one bad event must not hold up the rest; this report stays unapplied
                    logger.exception("report %s: applying %s failed", report.pk, event)
                    result, failed = "error", True
            outcome[result] += 1
            notes.append(f"{event.end_to_end_id or '?'}: {result}")
        if not failed:
            report.applied, report.outcome = True, "; ".join(notes)[:255]
            done.append(report)
    RailReport.objects.bulk_update(done, ["applied", "outcome"], batch_size=500)  # one statement per 500
    return dict(outcome)


# --- operations --------------------------------------------------------------------------------------


def netted_release(*, ni: NettedInstruction, actor: Actor, reason: str, approval: Approval) -> NettedInstruction:
    """Release a payment held over the net debit cap: only as the application of an approved
    four-eyes request (``approval``, being decided by ``actor``, in its transaction). Ops propose
    it with ``approval_propose(kind="netted_release", ...)``."""
    with transaction.atomic():
        stored = approval_pending(approval.pk)  # (kind, target_id, proposed_by_id) of the ops request
        user = actor_user(actor)
        if (
            stored is None
            or stored[:2] != (NETTED_RELEASE, ni.pk)
            or user is None
            or user.pk == stored[2]
            or approval.decided_by_id != user.pk
        ):
            raise NotPermitted(f"releasing netted instruction {ni.pk} past its cap needs an approved four-eyes request")
        ni = NettedInstruction.objects.select_for_update().get(pk=ni.pk)
        _apply(ni, ni.mark_released, actor=actor, reason=reason)
        _after_commit_dispatch([ni.pk])
        return ni


def netted_retry(*, ni: NettedInstruction, actor: Actor, reason: str, method: str = "") -> NettedInstruction:
    """Ops: take a payment out of review and try again (a kept lock is reused, the method is
    chosen again - or ``method``, an override approved under four-eyes; an unanswered message
    is resent as it was)."""
    with transaction.atomic():
        ni = NettedInstruction.objects.select_for_update().get(pk=ni.pk)
        latest = _latest_attempt(ni)
        if method and latest is not None and latest.status in (A.SENDING, A.TIMED_OUT):
            raise IllegalTransition(
                f"netted instruction {ni.pk} has an unanswered {latest.method} message: it is resent, not rerouted"
            )
        if latest is None or latest.status == A.REJECTED:
            ni.method = method
        elif latest.status in (A.SENDING, A.TIMED_OUT):  # a fresh budget of sends for the same message
            latest.max_sends = latest.sends + settings.CLEARHOUSE_RAIL_MAX_SENDS
            latest.save(update_fields=("max_sends",))
        ni.next_attempt_at = None
        _apply(ni, ni.mark_retry, actor=actor, reason=reason, update_fields=("method", "next_attempt_at"))
        _after_commit_dispatch([ni.pk])
        return ni


def netted_sweep(*, limit: int = 2000) -> int:
    """Beat: re-dispatch pending instructions, locked ones due for a (re)send or stuck, and
    reports left unapplied (a worker died holding them)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CLEARHOUSE_STUCK_AFTER_SECONDS)
    ids = list(
        NettedInstruction.objects.filter(
            Q(status=N.PENDING)
            | Q(status=N.LOCKED, next_attempt_at__lte=now)
            | Q(status=N.LOCKED, next_attempt_at__isnull=True, updated_at__lt=stale)
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    dispatch_netted(ids)
    stale_reports = list(
        RailReport.objects.filter(applied=False, received_at__lt=stale)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    if stale_reports:
        from netting.tasks import reports_apply_task

        for start in range(0, len(stale_reports), 50):
            reports_apply_task.delay(stale_reports[start : start + 50])
    return len(ids)


def custody_fails(*, today: date | None = None) -> list[dict]:
    """The fail report: every custody delivery failing now, with its age in business days."""
    today = today or timezone.localdate()
    rows = []
    for ni in (
        NettedInstruction.objects.filter(method=RailMethod.CUSTODY, failing_since__isnull=False, status=N.SUBMITTED)
        .select_related("participant", "asset")
        .order_by("failing_since", "pk")
    ):
        age = business_days_between(calendar=ni.asset.calendar, start=ni.failing_since, end=today)
        rows.append(
            {
                "instruction": ni.pk,
                "participant": ni.participant.code,
                # a pay-in is the participant's delivery to the house; a pay-out the house's to it
                "deliverer": ni.participant.code if ni.direction == Direction.PAY_IN else "the house",
                "asset": ni.asset.code,
                "quantity": format_amount(ni.amount, ni.asset.precision),
                "failing_since": ni.failing_since.isoformat(),
                "business_days": age,
                "buy_in_due": age >= settings.CLEARHOUSE_BUY_IN_AFTER_DAYS,
                "reason": ni.failure_reason,
            }
        )
    return rows


def custody_buy_in_check(*, today: date | None = None) -> int:
    """Beat: open a buy-in case for each delivery failing for the configured business days.
    Returns how many cases were opened now (not the ones already open)."""
    from common.ports import case_exists, case_open

    opened = 0
    for row in custody_fails(today=today):
        key = f"buy-in:{row['instruction']}"
        if not row["buy_in_due"] or case_exists(dedupe_key=key):
            continue
        receiver = row["participant"] if row["deliverer"] == "the house" else "the house"
        case_open(
            kind=CaseKind.ESCALATION,
            reason=(
                f"buy-in due: {row['deliverer']} has failed to deliver {row['quantity']} {row['asset']} to {receiver} "
                f"since {row['failing_since']} ({row['business_days']} business days; netted instruction "
                f"N{row['instruction']})"
            ),
            dedupe_key=key,
        )
        opened += 1
    return opened
