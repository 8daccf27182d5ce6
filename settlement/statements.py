"""Participant statements: for a period and per asset, the opening balance, every movement of the
participant's value (one line per journal: a lock between its own accounts nets to nothing and
is left out) with its reference and the fees charged in it, and the closing balance - which
equals the ledger (available + locked) at the end of the period.

Balances and lines come from aggregate queries over postings (SUM per asset, SUM per journal);
only the period's lines reach Python. Rendered as JSON, CSV or PDF (reportlab)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from common.exports import SafeCsvWriter
from common.money import format_amount
from ledger.models import Posting
from reference.models import Asset, Participant
from settlement.models import FeeCharge


@dataclass
class StatementLine:
    at: datetime
    journal_id: int
    kind: str
    reference: str
    memo: str
    amount: Decimal
    fee: Decimal
    balance: Decimal


@dataclass
class AssetStatement:
    asset: Asset
    opening: Decimal
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def fees(self) -> Decimal:
        return sum((line.fee for line in self.lines), Decimal(0))

    @property
    def closing(self) -> Decimal:
        return self.opening + sum((line.amount for line in self.lines), Decimal(0))


@dataclass
class Statement:
    participant: Participant
    start: datetime
    end: datetime
    assets: list[AssetStatement]


def statement_read(*, participant: Participant, start: datetime, end: datetime) -> Statement:
    own = Posting.objects.filter(account__owner=participant)
    openings = dict(
        own.filter(journal__created_at__lt=start).order_by().values_list("asset").annotate(total=Sum("amount"))
    )
    rows = list(
        own.filter(journal__created_at__gte=start, journal__created_at__lt=end)
        .order_by()
        .values_list(
            "journal_id", "journal__created_at", "journal__kind", "journal__reference", "journal__memo", "asset"
        )
        .annotate(amount=Sum("amount"))
        .exclude(amount=0)
        .order_by("journal__created_at", "journal_id")
    )
    journals = {row[0] for row in rows}
    mine = FeeCharge.objects.filter(participant=participant).order_by()
    fees: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for journal_id, asset_id, fee in (
        mine.filter(journal_id__in=journals).values_list("journal_id", "asset_id").annotate(total=Sum("fee"))
    ):
        fees[(journal_id, asset_id)] += fee
    for journal_id, asset_id, refund in (  # a reversal returns fees: a negative fee on its line
        mine.filter(reversal_journal_id__in=journals)
        .values_list("reversal_journal_id", "asset_id")
        .annotate(total=Sum("fee"))
    ):
        fees[(journal_id, asset_id)] -= refund
    asset_ids = set(openings) | {row[5] for row in rows}
    assets = {a.pk: a for a in Asset.objects.filter(pk__in=asset_ids)}
    statements = {pk: AssetStatement(assets[pk], openings.get(pk) or Decimal(0)) for pk in asset_ids}
    for journal_id, at, kind, reference, memo, asset_id, amount in rows:
        statement = statements[asset_id]
        balance = statement.closing + amount
        fee = fees.get((journal_id, asset_id), Decimal(0))
        statement.lines.append(StatementLine(at, journal_id, kind, reference, memo, amount, fee, balance))
    ordered = sorted(statements.values(), key=lambda s: s.asset.code)
    return Statement(participant, start, end, ordered)


def _fmt(value: Decimal, asset: Asset) -> str:
    return format_amount(value, asset.precision)


def statement_json(statement: Statement) -> str:
    def line_dict(line: StatementLine, a: Asset) -> dict[str, object]:
        return {
            "at": line.at.isoformat(),
            "journal": line.journal_id,
            "kind": line.kind,
            "reference": line.reference,
            "memo": line.memo,
            "amount": _fmt(line.amount, a),
            "fee": _fmt(line.fee, a),
            "balance": _fmt(line.balance, a),
        }

    return json.dumps(
        {
            "participant": statement.participant.code,
            "from": statement.start.isoformat(),
            "to": statement.end.isoformat(),
            "assets": [
                {
                    "asset": s.asset.code,
                    "opening": _fmt(s.opening, s.asset),
                    "fees": _fmt(s.fees, s.asset),
                    "closing": _fmt(s.closing, s.asset),
                    "lines": [line_dict(line, s.asset) for line in s.lines],
                }
                for s in statement.assets
            ],
        }
    )


CSV_COLUMNS = ["participant", "asset", "date", "journal", "kind", "reference", "memo", "amount", "fee", "balance"]


def statement_csv(statement: Statement) -> str:
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(CSV_COLUMNS)
    code = statement.participant.code
    for s in statement.assets:
        a = s.asset
        writer.writerow([code, a.code, statement.start.isoformat(), "", "opening", "", "", "", "", _fmt(s.opening, a)])
        for line in s.lines:
            amounts = [_fmt(line.amount, a), _fmt(line.fee, a), _fmt(line.balance, a)]
            writer.writerow([code, a.code, line.at.isoformat(), line.journal_id, line.kind, line.reference, line.memo,
                             *amounts])  # fmt: skip
        totals = [_fmt(s.fees, a), _fmt(s.closing, a)]
        writer.writerow([code, a.code, statement.end.isoformat(), "", "closing", "", "", "", *totals])
    return out.getvalue()


def statement_pdf(statement: Statement) -> bytes:
    """A4 PDF: a table per asset with opening, lines, fees and closing."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), title=f"Statement {statement.participant.code}")
    styles = getSampleStyleSheet()
    story = [
        Paragraph(f"Statement of {statement.participant.name} ({statement.participant.code})", styles["Title"]),
        Paragraph(f"Period {statement.start:%Y-%m-%d %H:%M} to {statement.end:%Y-%m-%d %H:%M} (UTC)", styles["Normal"]),
        Spacer(1, 12),
    ]
    for s in statement.assets:
        data = [["Date", "Kind", "Reference", "Amount", "Fee", "Balance"]]
        data.append([f"{statement.start:%Y-%m-%d}", "opening balance", "", "", "", _fmt(s.opening, s.asset)])
        for line in s.lines:
            data.append(
                [f"{line.at:%Y-%m-%d %H:%M}", line.kind, line.reference[:48], _fmt(line.amount, s.asset),
                 _fmt(line.fee, s.asset) if line.fee else "", _fmt(line.balance, s.asset)]
            )  # fmt: skip
        data.append(
            [f"{statement.end:%Y-%m-%d}", "closing balance", "", "", _fmt(s.fees, s.asset), _fmt(s.closing, s.asset)]
        )
        table = Table(data, repeatRows=1, hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                    ("ALIGN", (3, 0), (-1, -1), "RIGHT"),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                    ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.black),
                ]
            )
        )
        story += [Paragraph(f"{s.asset.code} - {s.asset.name}", styles["Heading2"]), table, Spacer(1, 12)]
    if not statement.assets:
        story.append(Paragraph("No balances and no movements in this period.", styles["Normal"]))
    doc.build(story)
    return out.getvalue()
