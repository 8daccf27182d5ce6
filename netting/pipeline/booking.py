"""Stage 5, booking: a confirmed payment's lock posts (pay-in to the CSA, pay-out to the
participant), a refused one's is voided or kept for review; when every payment of a window and
settlement date has settled, every trade leg of that window and date settles (both legs of a
trade are in the same window and date, so delivery and payment settle together).

Lock order: netted instruction rows → netting window row → ledger accounts → transition-log head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from common.actors import Actor, actor_user
from common.choices import AccountKind, CaseKind, InstructionStatus, LockStatus
from ledger.locking import lock_accounts
from ledger.models import LedgerAccount, LedgerLock
from ledger.services.audit import LogEntry, transition_log_append, transition_run
from ledger.services.ledger import account_for, ledger_void
from netting.dispatch import dispatch_netted_after_commit
from netting.fees import netted_fees_pending, netted_fees_pending_many
from netting.locking import lock_attempts, lock_net_payments, lock_windows_no_key
from netting.models import Direction, NettedInstruction, RailAttempt
from netting.pipeline.base import PLAN, A, N, attempt_apply, csa_account, netted_apply
from settlement.locking import lock_instructions
from settlement.models import SettlementInstruction
from settlement.models.fees import FeeCharge, FeeChargeStatus
from settlement.services.fees import fee_charges_mark, lock_post_with_fees


def _lock_of(ni: NettedInstruction) -> LedgerLock:
    if ni.lock is None:  # pragma: no cover - every caller checked the payment holds its funds
        raise RuntimeError(f"{ni} holds no funds")
    return ni.lock


def post(
    ni: NettedInstruction, *, target: LedgerAccount, actor: Actor, reason: str, charges: list[FeeCharge] | None = None
) -> None:
    """Post a netted payment's lock to its target, its fee (if any) to the fee revenue account
    in the same journal (``charges``: its pending fee charges when the caller read them)."""
    if charges is None:
        charges = netted_fees_pending(ni)
    lock_post_with_fees(
        lock=_lock_of(ni), to_account=target, amount=ni.amount, charges=charges, actor=actor, reason=reason
    )


def targets_of(nis: list[NettedInstruction]) -> dict[int, LedgerAccount]:
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
                csa[ni.asset_id] = csa_account(ni)
            targets[ni.pk] = csa[ni.asset_id]
        else:
            account = found.get((ni.participant_id, ni.asset_id))
            if account is None:
                account = account_for(owner=ni.participant, asset=ni.asset, kind=AccountKind.AVAILABLE)
            account.asset = ni.asset  # no lazy asset load when the journal reads its precision
            targets[ni.pk] = account
    return targets


def void(ni: NettedInstruction, *, actor: Actor, reason: str) -> None:
    ledger_void(lock=_lock_of(ni), actor=actor, reason=reason)
    fee_charges_mark(charges=netted_fees_pending(ni), status=FeeChargeStatus.VOIDED, actor=actor, reason=reason)


def settle(
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
    lock_windows_no_key([ni.window_id]).values_list("pk").first()
    if ni.direction == Direction.PAY_IN:
        target = csa_account(ni)
    else:
        target = account_for(owner=ni.participant, asset=ni.asset, kind=AccountKind.AVAILABLE)
    post(ni, target=target, actor=actor, reason=f"{reason}: {ni}")
    if log_first:
        transition_log_append(entries=log_first, actor=actor)
    netted_apply(ni, ni.mark_settled, actor=actor, reason=reason, metadata=metadata, update_fields=("next_attempt_at",))
    if ni.direction == Direction.PAY_IN:
        release_pay_outs([ni])
    group_complete(window_id=ni.window_id, settlement_date=ni.settlement_date, actor=actor)


def release_pay_outs(pay_ins: list[NettedInstruction]) -> None:
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
    dispatch_netted_after_commit(ids)


def group_complete(*, window_id: int, settlement_date: date, actor: Actor) -> int:
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
            lock_instructions(pk__in=ids[start : start + chunk], status=InstructionStatus.PENDING)
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


# --- review and investigation ------------------------------------------------------------------


def review(
    ni: NettedInstruction, *, actor: Actor, reason: str, release_funds: bool, log_first: list[LogEntry] | None = None
) -> None:
    """To manual review with a case. ``release_funds`` only when the network said no for good: a
    payment that merely went unanswered may still be made, so its lock stays. A payment already
    in review (it went there unanswered) stays there: a refusal arriving now releases its funds
    and opens a case of its own."""
    from common.ports import case_open

    already = ni.status == N.REVIEW
    if release_funds and ni.lock is not None and ni.lock.status == LockStatus.PENDING:
        void(ni, actor=actor, reason=f"void: {reason}")
    if log_first:
        transition_log_append(entries=log_first, actor=actor)
        log_first.clear()  # appended: a caller holding the list must not append them again
    ni.failure_reason = reason
    if already:
        ni.save(update_fields=("failure_reason", "updated_at"))
        case = f"{ni} of {ni.participant.code}, window {ni.window_id}: {reason} (funds released)"
    else:
        netted_apply(
            ni, ni.mark_review, actor=actor, reason=reason, update_fields=("failure_reason", "next_attempt_at")
        )
        case = f"{ni} of {ni.participant.code} ({ni.get_direction_display()}), window {ni.window_id}: {reason}"
    case_open(
        kind=CaseKind.ESCALATION,
        reason=case,
        dedupe_key=f"netted:{ni.pk}:{ni.attempts}:{reason[:60]}",
        asset=ni.asset,
    )


def investigate(attempt: RailAttempt, ni: NettedInstruction, why: str) -> str:
    """The network says a payment was made that we cannot book as it is: never book it silently."""
    from common.ports import case_open

    case_open(
        kind=CaseKind.INVESTIGATION,
        reason=f"{attempt.message_id} ({attempt.end_to_end_id}) reported settled {why}",
        dedupe_key=f"netted-unexpected:{attempt.pk}",
        asset=ni.asset,
    )
    return "investigate"


# --- many confirmations at once ------------------------------------------------------------------


@dataclass
class _Confirmations:
    """A batch of confirmed attempts sorted out under their locks."""

    results: dict[int, str] = field(default_factory=dict)
    eligible: list[tuple[NettedInstruction, RailAttempt]] = field(default_factory=list)
    investigate: list[tuple[RailAttempt, NettedInstruction, str]] = field(default_factory=list)


_SETTLEABLE = (N.LOCKED, N.SUBMITTED, N.REVIEW, N.PENDING)


def _confirmations_lock(attempt_ids: list[int]) -> tuple[list[RailAttempt], dict[int, NettedInstruction]]:
    """The confirmed attempts and their payments, locked: payment rows first (by pk), then the
    attempt rows (by pk)."""
    attempts = list(RailAttempt.objects.filter(pk__in=attempt_ids).order_by("pk"))
    nis = {
        ni.pk: ni
        for ni in lock_net_payments(
            of_self=True, related=("asset", "participant", "lock"), pk__in={a.instruction_id for a in attempts}
        ).order_by("pk")
    }
    attempts = list(lock_attempts(pk__in=attempt_ids).order_by("pk"))
    return attempts, nis


def _confirmations_sort(
    attempts: list[RailAttempt], nis: dict[int, NettedInstruction], mismatched: dict[int, str]
) -> _Confirmations:
    """Which confirmations book (one per payment, of its funds still locked) and which are
    duplicates or need an investigation."""
    sorted_out = _Confirmations()
    taken: set[int] = set()
    for attempt in attempts:
        ni = nis[attempt.instruction_id]
        if attempt.status == A.SETTLED:
            sorted_out.results[attempt.pk] = "duplicate"
        elif attempt.pk in mismatched:
            sorted_out.investigate.append((attempt, ni, mismatched[attempt.pk]))
        elif (
            attempt.status == A.REJECTED
            or ni.pk in taken
            or ni.status not in _SETTLEABLE
            or ni.lock is None
            or ni.lock.status != LockStatus.PENDING
        ):
            sorted_out.investigate.append((attempt, ni, f"but {ni} is {ni.status} / attempt {attempt.status}"))
        else:
            sorted_out.eligible.append((ni, attempt))
            taken.add(ni.pk)
    return sorted_out


def _confirmations_book(
    eligible: list[tuple[NettedInstruction, RailAttempt]], *, actor: Actor, results: dict[int, str]
) -> list[LogEntry]:
    """Lock the windows and every account the posts touch (by pk), post each payment and run its
    and its attempt's transitions; returns their log entries, to append once for the batch."""
    entries: list[LogEntry] = []
    if not eligible:
        return entries
    windows = sorted({ni.window_id for ni, _ in eligible})
    list(lock_windows_no_key(windows).values("pk"))
    targets = targets_of([ni for ni, _ in eligible])
    account_ids = {t.pk for t in targets.values()} | {_lock_of(ni).locked_account_id for ni, _ in eligible}
    list(lock_accounts(account_ids).values("pk"))
    fees = netted_fees_pending_many([ni for ni, _ in eligible])
    now = timezone.now()
    for ni, attempt in eligible:
        reason = f"settled by {attempt.method} ({attempt.message_id})"
        post(ni, target=targets[ni.pk], actor=actor, reason=f"{reason}: {ni}", charges=fees[ni.pk])
        attempt.resolved_at = now
        entries.append(
            attempt_apply(attempt, attempt.mark_settled, actor=actor, reason="settled", update_fields=("resolved_at",))
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
    return entries


def _confirmations_complete(eligible: list[tuple[NettedInstruction, RailAttempt]], *, actor: Actor) -> None:
    """Release the pay-outs the settled pay-ins fund and settle the legs of completed groups."""
    release_pay_outs([ni for ni, _ in eligible if ni.direction == Direction.PAY_IN])
    for window_id, settlement_date in sorted({(ni.window_id, ni.settlement_date) for ni, _ in eligible}):
        group_complete(window_id=window_id, settlement_date=settlement_date, actor=actor)


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
    if not attempt_ids:
        return {}
    with transaction.atomic():
        attempts, nis = _confirmations_lock(attempt_ids)
        batch = _confirmations_sort(attempts, nis, mismatched or {})
        entries = _confirmations_book(batch.eligible, actor=actor, results=batch.results)
        if entries:
            transition_log_append(entries=entries, actor=actor)
        _confirmations_complete(batch.eligible, actor=actor)
        for attempt, ni, why in batch.investigate:
            batch.results[attempt.pk] = investigate(attempt, ni, why)
    return batch.results
