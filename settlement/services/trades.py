"""Trade ingest: validated trades in, trades and their two settlement legs out.

All-or-nothing per call: either every new trade of the batch is stored with its instructions,
or nothing is. Idempotent by (source, external_id): a trade already stored with the same content
is returned as it is; the same id with different content is an ``IdempotencyConflict``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from calendars import settlement_date
from common.actors import Actor, actor_label, actor_user
from common.choices import InstructionStatus, Leg, MarketCalendar
from common.exceptions import IdempotencyConflict, ValidationFailed
from common.money import quantize
from common.ports import netting_windows_for
from ledger.services.ledger import accounts_ensure
from reference.models import Instrument, Participant
from settlement.dispatch import dispatch_crypto_trades
from settlement.models import SettlementInstruction, Trade
from settlement.routing import asset_class_of, settles_gross


@dataclass(frozen=True)
class TradeInput:
    """One trade that passed validation (see ``settlement.api.serializers``)."""

    source: str
    external_id: str
    instrument: Instrument
    buyer: Participant
    seller: Participant
    quantity: Decimal
    price: Decimal
    executed_at: datetime

    @property
    def payload_hash(self) -> str:
        canonical = "|".join(
            [
                self.source,
                self.external_id,
                self.instrument.symbol,
                self.buyer.code,
                self.seller.code,
                format(self.quantity.normalize(), "f"),
                format(self.price.normalize(), "f"),
                self.executed_at.isoformat(timespec="microseconds"),
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def payment_amount(self) -> Decimal:
        return quantize(self.quantity * self.price, self.instrument.quote.precision)


@dataclass
class IngestResult:
    trades: list[Trade]  # in input order (duplicates within the batch share a trade)
    created: list[bool]

    @property
    def created_count(self) -> int:
        return len({t.pk for t, c in zip(self.trades, self.created, strict=True) if c})


def instrument_settlement_date(instrument: Instrument, executed_at: datetime) -> date:
    """Both legs settle on the base asset's cycle. A 24x7 base (crypto) ignores the quote's
    calendar because its cash leg moves on the internal ledger; otherwise the date must be a
    business day on both the market's and the currency's calendars."""
    base, quote = instrument.base, instrument.quote
    calendars: tuple[str, ...] = (base.calendar,)
    if base.calendar != MarketCalendar.ALWAYS and quote.calendar != MarketCalendar.ALWAYS:
        calendars = (base.calendar, quote.calendar)
    return settlement_date(trade_date=executed_at.date(), cycle=base.settlement_cycle, calendars=calendars)


def _store(trades: list[Trade], *, actor: Actor, window_ids: list[int | None]) -> None:
    user = actor_user(actor)
    _store_postgresql(
        trades, user_id=user.pk if user else None, reason=f"ingested by {actor_label(actor)}", window_ids=window_ids
    )


def _columns(model: type[Model]) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if f.column is not None]  # all: they are concrete


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


# The legs of a trade, derived in SQL from the rows just written: delivery = base asset seller ->
# buyer for the quantity, payment = quote currency buyer -> seller for the notional; both in the
# trade's netting window (NULL for a T+0 crypto trade), given per trade id.
_LEGS_SQL = """
WITH batch AS (
    SELECT t.id, t.seller_id, t.buyer_id, t.quantity, t.notional, t.settlement_date, i.base_id, i.quote_id,
           w.window_id
      FROM unnest(%(ids)s::bigint[], %(windows)s::bigint[]) AS w(trade_id, window_id)
      JOIN settlement_trade t ON t.id = w.trade_id
      JOIN settlement_instrument i ON i.id = t.instrument_id
)
INSERT INTO settlement_settlementinstruction
    (trade_id, leg, asset_id, payer_id, payee_id, amount, settlement_date, status, lock_id, attempt,
     failure_reason, netting_window_id, created_at, updated_at)
SELECT id, %(delivery)s, base_id, seller_id, buyer_id, quantity, settlement_date, %(pending)s,
       NULL::bigint, 1, '', window_id, %(now)s, %(now)s
  FROM batch
UNION ALL
SELECT id, %(payment)s, quote_id, buyer_id, seller_id, notional, settlement_date, %(pending)s,
       NULL::bigint, 1, '', window_id, %(now)s, %(now)s
  FROM batch
ORDER BY 1, 2
"""


def history_insert_sql(model: type[Model], where: str, history_type: str = "+") -> str:
    """INSERT ... SELECT copying live rows into the model's simple-history table as '+' (created)
    or '~' (changed) records."""
    table = model._meta.db_table
    history_table = model.history.model._meta.db_table  # type: ignore[attr-defined]
    columns = _quoted(_columns(model))
    # Identifiers come from model metadata, values travel as parameters.
    extra = "history_date, history_change_reason, history_type, history_user_id"
    head = f'INSERT INTO "{history_table}" ({columns}, {extra})'
    return f"{head} SELECT {columns}, %(now)s, %(reason)s, '{history_type}', %(user)s FROM \"{table}\" WHERE {where}"  # noqa: S608


def _store_postgresql(trades: list[Trade], *, user_id: int | None, reason: str, window_ids: list[int | None]) -> None:
    """Set-based write of a batch: trade ids from the sequence in one query, the trades by COPY, and
    their history, their legs (already in their netting windows) and the legs' history by
    INSERT ... SELECT. Five statements whatever the batch size."""
    now = timezone.now()
    fields = Trade._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('settlement_trade', 'id')) FROM generate_series(1, %s)",
            [len(trades)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        for trade, pk in zip(trades, ids, strict=True):
            trade.pk = pk
            trade.received_at = now
        raw = cursor.cursor  # psycopg cursor, for COPY; errors mapped to django.db ones (IntegrityError)
        with (
            connection.wrap_database_errors,
            raw.copy(f"COPY settlement_trade ({_quoted(_columns(Trade))}) FROM STDIN") as copy,
        ):
            for trade in trades:
                copy.write_row([getattr(trade, f.attname) for f in fields])
        params: dict[str, Any] = {
            "ids": ids,
            "windows": window_ids,
            "now": now,
            "reason": reason,
            "user": user_id,
            "delivery": Leg.DELIVERY.value,
            "payment": Leg.PAYMENT.value,
            "pending": InstructionStatus.PENDING.value,
        }
        cursor.execute(history_insert_sql(Trade, "id = ANY(%(ids)s)"), params)
        cursor.execute(_LEGS_SQL, params)
        cursor.execute(history_insert_sql(SettlementInstruction, "trade_id = ANY(%(ids)s)"), params)


def _reject_inconsistent_duplicates(items: list[TradeInput], hashes: list[str]) -> None:
    first: dict[tuple[str, str], tuple[int, str]] = {}
    errors = []
    for index, (item, digest) in enumerate(zip(items, hashes, strict=True)):
        key = (item.source, item.external_id)
        if key in first and first[key][1] != digest:
            errors.append(
                {
                    "index": index,
                    "external_id": item.external_id,
                    "errors": {"external_id": [f"Repeats item {first[key][0]} with different content."]},
                }
            )
        first.setdefault(key, (index, digest))
    if errors:
        raise ValidationFailed(
            f"{len(errors)} trade(s) repeat an external_id of the same batch with different "
            "content; nothing was stored",
            detail=errors,
        )


def _new_trades(
    items: list[TradeInput], hashes: list[str], *, existing: dict[tuple[str, str], Trade], actor: Actor
) -> dict[tuple[str, str], tuple[Trade, TradeInput]]:
    """The batch's trades not stored yet (first occurrence of each key), with their settlement
    date worked out once per instrument and trade date."""
    submitted_by = actor_user(actor)
    dates: dict[tuple[int, date], date] = {}
    new: dict[tuple[str, str], tuple[Trade, TradeInput]] = {}
    for item, digest in zip(items, hashes, strict=True):
        key = (item.source, item.external_id)
        if key in existing or key in new:
            continue
        day = (item.instrument.pk, item.executed_at.date())
        if day not in dates:
            dates[day] = instrument_settlement_date(item.instrument, item.executed_at)
        trade = Trade(
            source=item.source,
            external_id=item.external_id,
            instrument=item.instrument,
            buyer=item.buyer,
            seller=item.seller,
            quantity=item.quantity,
            price=item.price,
            notional=item.payment_amount,
            executed_at=item.executed_at,
            settlement_date=dates[day],
            payload_hash=digest,
            submitted_by=submitted_by,
        )
        new[key] = (trade, item)
    return new


def _store_new(new_trades: dict[tuple[str, str], tuple[Trade, TradeInput]], *, actor: Actor) -> None:
    """Accounts of every party and asset, the open windows share-locked, the batch written, and the
    T+0 crypto trades handed to the pipeline after commit. A fixed number of statements."""
    instruments = {item.instrument.pk: item.instrument for _, item in new_trades.values()}
    parties = {(trade.buyer_id, trade.seller_id, trade.instrument_id) for trade, _ in new_trades.values()}
    pairs = {
        (party, asset)
        for buyer, seller, instrument in parties
        for party in (buyer, seller)
        for asset in (instruments[instrument].base_id, instruments[instrument].quote_id)
    }
    accounts_ensure(pairs=pairs)
    # a netted trade's legs go in its class's open window (settlement.routing decides which)
    class_of = {
        pk: None if settles_gross(instrument) else asset_class_of(instrument.base)
        for pk, instrument in instruments.items()
    }
    windows = netting_windows_for({c for c in class_of.values() if c is not None})
    trades = [trade for trade, _ in new_trades.values()]
    window_ids = [None if (c := class_of[t.instrument_id]) is None else windows[c] for t in trades]
    _store(trades, actor=actor, window_ids=window_ids)
    crypto_t0 = [trade.pk for trade in trades if class_of[trade.instrument_id] is None]
    if crypto_t0:  # T+0 crypto settles now: hand the trades to the pipeline once committed
        transaction.on_commit(partial(dispatch_crypto_trades, crypto_t0))


# One array parameter, not an IN list of thousands of placeholders (psycopg converts those slowly).
_EXISTING_SQL = "SELECT * FROM settlement_trade WHERE source = %s AND external_id = ANY(%s)"


def _ingest_once(items: list[TradeInput], actor: Actor) -> IngestResult:
    hashes = [item.payload_hash for item in items]
    _reject_inconsistent_duplicates(items, hashes)
    keys = {(item.source, item.external_id) for item in items}
    with transaction.atomic():
        existing: dict[tuple[str, str], Trade] = {}
        for source in sorted({source for source, _ in keys}):
            ids = [ext for s, ext in keys if s == source]
            for trade in Trade.objects.raw(_EXISTING_SQL, [source, ids]):
                existing[(trade.source, trade.external_id)] = trade

        conflicts = []
        for index, (item, digest) in enumerate(zip(items, hashes, strict=True)):
            found = existing.get((item.source, item.external_id))
            if found is not None and found.payload_hash != digest:
                conflicts.append(
                    {"index": index, "source": item.source, "external_id": item.external_id, "existing_id": found.pk}
                )
        if conflicts:
            raise IdempotencyConflict(
                f"{len(conflicts)} trade(s) were already received with different content; nothing was stored",
                detail=conflicts,
            )

        new_trades = _new_trades(items, hashes, existing=existing, actor=actor)
        if new_trades:
            _store_new(new_trades, actor=actor)

    trades: list[Trade] = []
    created_flags: list[bool] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        key = (item.source, item.external_id)
        if key in existing:
            trades.append(existing[key])
            created_flags.append(False)
        else:
            trades.append(new_trades[key][0])
            created_flags.append(key not in seen)
        seen.add(key)
    return IngestResult(trades=trades, created=created_flags)


def trades_ingest(*, items: list[TradeInput], actor: Actor) -> IngestResult:
    """Store a batch of validated trades atomically and idempotently.

    Two requests carrying the same new trade at the same moment both try to insert it; the
    loser's transaction fails on the unique (source, external_id) constraint and is run once
    more, when it sees the winner's row and treats it as a replay.
    """
    try:
        return _ingest_once(items, actor)
    except IntegrityError:
        return _ingest_once(items, actor)
