"""The camt family (cash management): camt.054 debit/credit notifications and camt.053
statements, built as .001.08 and read in .001.02 and .001.08."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from rails.formats.errors import FormatError
from rails.formats.iso20022.documents import _Builder, _find, _findall, _load, _path, _require, _require_text, _text
from rails.formats.iso20022.fields import (
    _account_id,
    _add_account,
    _add_account_id,
    _amount,
    _check_currency,
    _date_choice,
    _date_text,
    _datetime_text,
    _money,
    _parse_datetime,
    _party_name,
    _reason_path,
    _remittance,
    _required_date_choice,
    _text_field,
)
from rails.formats.iso20022.records import Balance, Booking, Statement

ENTRY_STATUSES = frozenset({"BOOK", "PDNG", "INFO", "FUTR"})
BALANCE_TYPES = frozenset({"OPBD", "PRCD", "OPAV", "ITBD", "ITAV", "CLBD", "CLAV", "FWAV", "INFO", "XPCD"})


# --------------------------------------------------------------------------------------------
# camt.053 / camt.054


def _check_booking(booking: Booking, account: str, what: str) -> str:
    if not isinstance(booking, Booking):
        raise FormatError(f"{what}: expected a Booking, got {type(booking).__name__}")
    if booking.account != account:
        raise FormatError(f"{what}: account {booking.account!r} is not the report's account {account!r}")
    if booking.credit_debit not in {"CRDT", "DBIT"}:
        raise FormatError(f"{what}: credit_debit must be CRDT or DBIT, got {booking.credit_debit!r}")
    if booking.status not in ENTRY_STATUSES:
        raise FormatError(f"{what}: status must be one of {sorted(ENTRY_STATUSES)}, got {booking.status!r}")
    _date_text(booking.booking_date, f"{what}.booking_date")
    _date_text(booking.value_date, f"{what}.value_date")
    _text_field(booking.entry_ref, f"{what}.entry_ref", 35, required=False)
    _text_field(booking.end_to_end_id, f"{what}.end_to_end_id", 35, required=False)
    _text_field(booking.counterparty_name, f"{what}.counterparty_name", 140, required=False)
    _text_field(booking.counterparty_account, f"{what}.counterparty_account", 34, required=False)
    _text_field(booking.remittance, f"{what}.remittance", 140, required=False)
    _text_field(booking.return_reason, f"{what}.return_reason", 35, required=False)
    _text_field(booking.charge_type, f"{what}.charge_type", 4, required=False)
    if booking.charges:
        _money(booking.charges, booking.currency, f"{what}.charges")
    return _money(booking.amount, booking.currency, f"{what}.amount", positive=False)


def _add_entry(b: _Builder, parent: Any, booking: Booking, amount: str) -> None:
    entry = b.add(parent, "Ntry")
    if booking.entry_ref:
        b.add(entry, "NtryRef", booking.entry_ref)
    b.add(entry, "Amt", amount, Ccy=booking.currency)
    b.add(entry, "CdtDbtInd", booking.credit_debit)
    b.add(entry, "Sts/Cd", booking.status)
    b.add(entry, "BookgDt/Dt", booking.booking_date.isoformat())
    b.add(entry, "ValDt/Dt", booking.value_date.isoformat())
    if booking.entry_ref:
        b.add(entry, "AcctSvcrRef", booking.entry_ref)
    code = b.add(entry, "BkTxCd/Domn")
    b.add(code, "Cd", "PMNT")
    b.add(code, "Fmly/Cd", "RCDT" if booking.credit_debit == "CRDT" else "ICDT")
    b.add(code[1], "SubFmlyCd", "OTHR")
    details = (
        booking.end_to_end_id,
        booking.counterparty_name,
        booking.counterparty_account,
        booking.remittance,
        booking.return_reason,
        booking.charges,
    )
    if not any(details):
        return
    tx = b.add(entry, "NtryDtls/TxDtls")
    if booking.end_to_end_id:
        b.add(tx, "Refs/EndToEndId", booking.end_to_end_id)
    b.add(tx, "Amt", amount, Ccy=booking.currency)
    b.add(tx, "CdtDbtInd", booking.credit_debit)
    if booking.charges:
        record = b.add(tx, "Chrgs/Rcrd")
        b.add(record, "Amt", _money(booking.charges, booking.currency, "charges"), Ccy=booking.currency)
        b.add(record, "CdtDbtInd", "DBIT")
        b.add(record, "ChrgInclInd", "true" if booking.charges_included else "false")
        b.add(record, "Tp/Cd", booking.charge_type or "COMM")
    if booking.counterparty_name or booking.counterparty_account:
        # On a credit the counterparty paid us (debtor); on a debit we paid it (creditor).
        role = "Dbtr" if booking.credit_debit == "CRDT" else "Cdtr"
        parties = b.add(tx, "RltdPties")
        if booking.counterparty_name:
            b.add(parties, f"{role}/Pty/Nm", booking.counterparty_name)
        if booking.counterparty_account:
            _add_account(b, parties, f"{role}Acct", booking.counterparty_account)
    if booking.remittance:
        b.add(tx, "RmtInf/Ustrd", booking.remittance)
    if booking.return_reason:
        b.add(tx, f"RtrInf/Rsn/{_reason_path(booking.return_reason)}", booking.return_reason)


def _add_report_account(b: _Builder, parent: Any, account: str, currency: str) -> None:
    _text_field(account, "account", 34)
    _check_currency(currency, "currency")
    acct = b.add(parent, "Acct")
    _add_account_id(b, acct, account)
    b.add(acct, "Ccy", currency)


def build_camt054(
    *, message_id: str, created_at: datetime, account: str, currency: str, bookings: list[Booking]
) -> bytes:
    """A camt.054.001.08 debit/credit notification for ``account`` (one Ntfctn, Id = message_id).

    Every booking must be on ``account``. Each becomes one Ntry (NtryRef and AcctSvcrRef =
    entry_ref, bank transaction code PMNT/RCDT|ICDT/OTHR) with one TxDtls when it has details.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    amounts = [_check_booking(booking, account, f"bookings[{i}]") for i, booking in enumerate(bookings)]
    b = _Builder("camt.054.001.08")
    notification = b.add(b.root, "BkToCstmrDbtCdtNtfctn")
    b.add(notification, "GrpHdr/MsgId", message_id)
    b.add(notification[0], "CreDtTm", created_at.isoformat())
    ntfctn = b.add(notification, "Ntfctn")
    b.add(ntfctn, "Id", message_id)
    b.add(ntfctn, "CreDtTm", created_at.isoformat())
    _add_report_account(b, ntfctn, account, currency)
    for booking, amount in zip(bookings, amounts, strict=True):
        _add_entry(b, ntfctn, booking, amount)
    return b.finish()


def _add_balance(b: _Builder, parent: Any, code: str, amount: Decimal, currency: str, on: date, what: str) -> None:
    if not isinstance(amount, Decimal):
        raise FormatError(f"{what}: amount must be a decimal.Decimal, got {amount!r}")
    text = _money(abs(amount), currency, what, positive=False)
    balance = b.add(parent, "Bal")
    b.add(balance, "Tp/CdOrPrtry/Cd", code)
    b.add(balance, "Amt", text, Ccy=currency)
    b.add(balance, "CdtDbtInd", "DBIT" if amount < 0 else "CRDT")
    b.add(balance, "Dt/Dt", _date_text(on, what))


def build_camt053(*, message_id: str, statement: Statement) -> bytes:
    """A camt.053.001.08 with one statement: OPBD (dated from_date) and CLBD (dated to_date)
    balances, then ``statement.other_balances``, then the entries (see build_camt054).

    FrToDt runs from from_date 00:00:00 to to_date 23:59:59 (no offset); GrpHdr and Stmt CreDtTm
    are ``statement.created_at``.
    """
    _text_field(message_id, "message_id", 35)
    if not isinstance(statement, Statement):
        raise FormatError(f"statement: expected a Statement, got {type(statement).__name__}")
    s = statement
    _text_field(s.statement_id, "statement.statement_id", 35)
    created = _datetime_text(s.created_at, "statement.created_at")
    _date_text(s.from_date, "statement.from_date")
    _date_text(s.to_date, "statement.to_date")
    if s.to_date < s.from_date:
        raise FormatError("statement: to_date is before from_date")
    amounts = [_check_booking(booking, s.account, f"statement.entries[{i}]") for i, booking in enumerate(s.entries)]
    b = _Builder("camt.053.001.08")
    statement_msg = b.add(b.root, "BkToCstmrStmt")
    b.add(statement_msg, "GrpHdr/MsgId", message_id)
    b.add(statement_msg[0], "CreDtTm", created)
    stmt = b.add(statement_msg, "Stmt")
    b.add(stmt, "Id", s.statement_id)
    b.add(stmt, "CreDtTm", created)
    b.add(stmt, "FrToDt/FrDtTm", datetime.combine(s.from_date, time(0, 0, 0)).isoformat())
    b.add(stmt[-1], "ToDtTm", datetime.combine(s.to_date, time(23, 59, 59)).isoformat())
    _add_report_account(b, stmt, s.account, s.currency)
    _add_balance(b, stmt, "OPBD", s.opening_balance, s.currency, s.from_date, "statement.opening_balance")
    _add_balance(b, stmt, "CLBD", s.closing_balance, s.currency, s.to_date, "statement.closing_balance")
    for i, balance in enumerate(s.other_balances):
        what = f"statement.other_balances[{i}]"
        if not isinstance(balance, Balance) or balance.type not in BALANCE_TYPES:
            raise FormatError(f"{what}: expected a Balance with a type in {sorted(BALANCE_TYPES)}")
        _add_balance(b, stmt, balance.type, balance.amount, balance.currency, balance.date, what)
    for booking, amount in zip(s.entries, amounts, strict=True):
        _add_entry(b, stmt, booking, amount)
    return b.finish()


def _charge_amount(el: Any, currency: str) -> Decimal:
    amount, charge_currency = _amount(el)
    if charge_currency != currency:
        raise FormatError(
            f"charges in {charge_currency} on an entry in {currency} cannot be passed on",
            path=_path(el),
            line=el.sourceline,
        )
    return amount


def _charges(holders: list[Any], currency: str) -> tuple[Decimal, bool, str]:
    """Total charges of the Chrgs under ``holders`` (an entry, or its transactions): .001.08
    records (Rcrd: a CRDT record is a refund), else the total (TtlChrgsAndTaxAmt); .001.02 lists
    each charge as its own Chrgs with Amt. Returns (total, included in the entry amount, type):
    "included" only when every record says so."""
    total = Decimal(0)
    included = True
    kinds: list[str] = []
    for holder in holders:
        for chrgs in _findall(holder, "Chrgs"):
            records = _findall(chrgs, "Rcrd") or ([chrgs] if _find(chrgs, "Amt") is not None else [])
            if not records:
                total_el = _find(chrgs, "TtlChrgsAndTaxAmt")
                if total_el is not None:
                    total += _charge_amount(total_el, currency)
                continue
            for record in records:
                amount = _charge_amount(_require(record, "Amt"), currency)
                total += -amount if _text(record, "CdtDbtInd") == "CRDT" else amount
                # .001.08: included unless ChrgInclInd says false (its usage rule). .001.02 has no
                # indicator and its samples go both ways, so the entry amount is taken as is.
                flag = _text(record, "ChrgInclInd").lower()
                if flag == "false" or (not flag and record is chrgs):
                    included = False
                kinds.append(_text(record, "Tp/Cd") or _text(record, "Tp/Prtry/Id"))
    return total, included, next((k for k in kinds if k), "")


def _booking(entry: Any, account: str, fallback: date) -> Booking:
    amount, currency = _amount(_require(entry, "Amt"))
    credit_debit = _require_text(entry, "CdtDbtInd")
    status_el = _require(entry, "Sts")
    status = (status_el.text or "").strip() or _text(status_el, "Cd") or _text(status_el, "Prtry")
    booked = _date_choice(_find(entry, "BookgDt"))
    valued = _date_choice(_find(entry, "ValDt"))
    booking_date = booked or valued or fallback
    details: dict[str, Any] = {}
    transactions = _findall(entry, "NtryDtls/TxDtls")
    charges, included, charge_type = _charges([entry] if _find(entry, "Chrgs") is not None else transactions, currency)
    if len(transactions) == 1:
        tx = transactions[0]
        role = "Dbtr" if credit_debit == "CRDT" else "Cdtr"
        details = {
            "end_to_end_id": _text(tx, "Refs/EndToEndId"),
            "counterparty_name": _party_name(_find(tx, f"RltdPties/{role}")),
            "counterparty_account": _account_id(_find(tx, f"RltdPties/{role}Acct")),
            "remittance": _remittance(tx),
            "return_reason": _text(tx, "RtrInf/Rsn/Cd") or _text(tx, "RtrInf/Rsn/Prtry"),
        }
    return Booking(
        entry_ref=_text(entry, "AcctSvcrRef") or _text(entry, "NtryRef"),
        account=account,
        amount=amount,
        currency=currency,
        credit_debit=credit_debit,
        booking_date=booking_date,
        value_date=valued or booking_date,
        status=status,
        charges=charges,
        charges_included=included,
        charge_type=charge_type[:4],
        **details,
    )


def _report_account(report: Any) -> str:
    account = _account_id(_require(report, "Acct"))
    if not account:
        raise FormatError("account has neither IBAN nor Othr/Id", path=_path(_find(report, "Acct")))
    return account


def _report_created(report: Any, header: Any) -> datetime:
    created = _find(report, "CreDtTm")
    if created is None:
        created = _require(header, "CreDtTm")
    return _parse_datetime(created)


def parse_camt054(xml: bytes) -> list[Booking]:
    """The bookings of every notification (Ntfctn) of a camt.054.

    Versions .001.02 and .001.08 are validated against their XSD; other versions (the PostFinance
    .001.04 samples) are read structurally.

    Bookings: one per Ntry, amount positive. entry_ref is AcctSvcrRef, else NtryRef, else "".
    booking_date is BookgDt, else ValDt, else the report's creation date; value_date is ValDt, else
    booking_date. end_to_end_id, counterparty (the debtor of a credit, the creditor of a debit),
    remittance and return_reason come from the entry's transaction details when it has exactly one
    TxDtls; a batch entry with several keeps them empty. charges: the entry's own Chrgs, else the
    sum over its transactions' Chrgs (see Booking).
    """
    document, _ = _load(xml, "camt.054")
    message = _require(document, "BkToCstmrDbtCdtNtfctn")
    header = _require(message, "GrpHdr")
    bookings: list[Booking] = []
    for notification in _findall(message, "Ntfctn"):
        account = _report_account(notification)
        fallback = _report_created(notification, header).date()
        bookings.extend(_booking(entry, account, fallback) for entry in _findall(notification, "Ntry"))
    return bookings


def _signed_balance(balance: Any) -> tuple[str, Decimal, str, date]:
    code = _text(balance, "Tp/CdOrPrtry/Cd") or _require_text(balance, "Tp/CdOrPrtry/Prtry")
    amount, currency = _amount(_require(balance, "Amt"))
    if _require_text(balance, "CdtDbtInd") == "DBIT":
        amount = -amount
    return code, amount, currency, _required_date_choice(_require(balance, "Dt"))


_OPENING = ("OPBD", "PRCD", "OPAV", "ITBD")
_CLOSING = ("CLBD", "ITBD", "CLAV")


def parse_camt053(xml: bytes) -> list[Statement]:
    """The statements (Stmt) of a camt.053.

    Versions .001.02 and .001.08 are validated against their XSD; other versions (PostFinance
    .001.04, prowide .001.07 behind an AppHdr) are read structurally.

    Balances: opening_balance is the first OPBD, else PRCD, else OPAV, else ITBD; closing_balance
    the last CLBD, else ITBD, else CLAV (a statement with neither is rejected). All other balances go
    to other_balances, signed. currency is Acct/Ccy, else the currency of the opening balance.
    from_date/to_date come from FrToDt, else the dates of the opening/closing balances. created_at
    is Stmt/CreDtTm, else GrpHdr/CreDtTm, naive when the document has no offset. Balance continuity
    (opening + entries = closing) is not checked here: several real samples do not satisfy it.

    Bookings: one per Ntry, amount positive. entry_ref is AcctSvcrRef, else NtryRef, else "".
    booking_date is BookgDt, else ValDt, else the report's creation date; value_date is ValDt, else
    booking_date. end_to_end_id, counterparty (the debtor of a credit, the creditor of a debit),
    remittance and return_reason come from the entry's transaction details when it has exactly one
    TxDtls; a batch entry with several keeps them empty. charges: the entry's own Chrgs, else the
    sum over its transactions' Chrgs (see Booking).
    """
    document, _ = _load(xml, "camt.053")
    message = _require(document, "BkToCstmrStmt")
    header = _require(message, "GrpHdr")
    statements: list[Statement] = []
    for stmt in _findall(message, "Stmt"):
        account = _report_account(stmt)
        created_at = _report_created(stmt, header)
        balances = [_signed_balance(balance) for balance in _findall(stmt, "Bal")]
        opening = next((bal for code in _OPENING for bal in balances if bal[0] == code), None)
        closing = next(
            (bal for code in _CLOSING for bal in reversed(balances) if bal[0] == code and bal is not opening), None
        )
        if opening is None or closing is None:
            raise FormatError(
                "statement has no opening (OPBD/PRCD/OPAV/ITBD) or closing (CLBD/ITBD/CLAV) balance",
                path=_path(stmt),
                line=stmt.sourceline,
            )
        period = _find(stmt, "FrToDt")
        from_date, to_date = opening[3], closing[3]
        if period is not None:
            from_date = _parse_datetime(_require(period, "FrDtTm")).date()
            to_date = _parse_datetime(_require(period, "ToDtTm")).date()
        statements.append(
            Statement(
                statement_id=_require_text(stmt, "Id"),
                account=account,
                currency=_text(stmt, "Acct/Ccy") or opening[2],
                created_at=created_at,
                from_date=from_date,
                to_date=to_date,
                opening_balance=opening[1],
                closing_balance=closing[1],
                entries=[_booking(entry, account, created_at.date()) for entry in _findall(stmt, "Ntry")],
                other_balances=[Balance(*bal) for bal in balances if bal is not opening and bal is not closing],
            )
        )
    return statements
