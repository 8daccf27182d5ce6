"""sese.023 / sese.025 for the custody rail: settlement instruction and settlement confirmation.

Both messages are built as version .001.11 and validated against the XSDs in ``xsd/``; the parsers
accept .001.11 only (validated first).

sese.023 and sese.025 have no group header: the business message id and creation time travel in the
business application header (head.001 AppHdr: BizMsgIdr, CreDt), which belongs to the transport, not
to this layer. The builders therefore check ``message_id`` (Max35Text) and ``created_at`` but do not
write them into the Document, and the parsers do not return them; a Document wrapped with an AppHdr
is accepted by the parsers.

Mapping (account owner = us, counterparty = the other side of the trade):

- reference: TxId (sese.023), TxIdDtls/AcctOwnrTxId (sese.025)
- movement DELI/RECE and payment APMT/FREE: SttlmTpAndAddtlParams (TxIdDtls in sese.025)
- quantity: SttlmQty/Qty/Unit (SttldQty in sese.025), units of the ISIN in FinInstrmId/ISIN
- safekeeping_account, account_owner_bic: QtyAndAcctDtls/SfkpgAcct/Id, QtyAndAcctDtls/AcctOwnr/Id/AnyBIC
- counterparty_bic, counterparty_account: Pty1 of the receiving settlement parties when we deliver,
  of the delivering settlement parties when we receive (Pty1/Id/AnyBIC, Pty1/SfkpgAcct/Id)
- settlement_amount, currency: SttlmAmt (SttldAmt in sese.025), CRDT when we deliver against payment,
  DBIT when we receive against payment. A FREE (free of payment) instruction carries no amount: its
  settlement_amount must be 0 and comes back as 0 with currency "".
- dates: TradDtls/TradDt and TradDtls/SttlmDt (sese.025: TradDtls/FctvSttlmDt, the effective date)
- partial_settlement: SttlmParams/PrtlSttlmInd (NPAR, PART, PARQ, PARC); securities transaction type TRAD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from stdnum import isin as stdnum_isin

from rails.formats.errors import FormatError
from rails.formats.iso20022.documents import (
    _Builder,
    _find,
    _load,
    _path,
    _require,
    _require_text,
    _text,
)
from rails.formats.iso20022.fields import (
    _amount,
    _check_bic,
    _date_text,
    _datetime_text,
    _money,
    _required_date_choice,
    _text_field,
)

__all__ = [
    "SecuritiesConfirmation",
    "SecuritiesInstruction",
    "build_sese023",
    "build_sese025",
    "parse_sese023",
    "parse_sese025",
]

MOVEMENTS = frozenset({"DELI", "RECE"})
PAYMENTS = frozenset({"APMT", "FREE"})
PARTIAL_SETTLEMENT = frozenset({"NPAR", "PART", "PARQ", "PARC"})
# DecimalNumber: at most 18 digits, 17 of them after the point.
_QUANTITY_DIGITS = 18
_QUANTITY_RE = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class SecuritiesInstruction:
    reference: str
    isin: str
    quantity: Decimal
    movement: str
    payment: str
    settlement_amount: Decimal
    currency: str
    trade_date: date
    settlement_date: date
    safekeeping_account: str
    account_owner_bic: str
    counterparty_account: str
    counterparty_bic: str
    partial_settlement: str = "NPAR"


@dataclass(frozen=True)
class SecuritiesConfirmation:
    reference: str
    isin: str
    quantity: Decimal
    movement: str
    settlement_amount: Decimal
    currency: str
    settlement_date: date
    safekeeping_account: str


def _quantity_text(quantity: Decimal, what: str) -> str:
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
        raise FormatError(f"{what}: quantity must be a positive decimal.Decimal, got {quantity!r}")
    normalized = quantity.normalize()
    digits = normalized.as_tuple().digits
    exponent = int(normalized.as_tuple().exponent)  # an int for every finite decimal
    integer_digits = max(len(digits) + exponent, 1)
    fraction_digits = max(-exponent, 0)
    if integer_digits + fraction_digits > _QUANTITY_DIGITS or fraction_digits > _QUANTITY_DIGITS - 1:
        raise FormatError(f"{what}: quantity {quantity} exceeds 18 digits")
    return format(normalized, "f")


def _quantity(el: Any) -> Decimal:
    text = (el.text or "").strip()
    if not _QUANTITY_RE.fullmatch(text):
        raise FormatError(f"invalid quantity {text!r}", path=_path(el), line=el.sourceline)
    return Decimal(text)


def _check_isin(value: str, what: str) -> str:
    if not stdnum_isin.is_valid(value) or value != stdnum_isin.compact(value):
        raise FormatError(f"{what}: invalid ISIN {value!r}")
    return value


def _check_common(
    what: str,
    reference: str,
    isin: str,
    quantity: Decimal,
    movement: str,
    payment: str,
    settlement_amount: Decimal,
    currency: str,
    safekeeping_account: str,
) -> tuple[str, str | None]:
    """Check the fields both messages share; return (quantity text, amount text or None if FREE)."""
    _text_field(reference, f"{what}.reference", 35)
    _check_isin(isin, f"{what}.isin")
    _text_field(safekeeping_account, f"{what}.safekeeping_account", 35)
    if movement not in MOVEMENTS:
        raise FormatError(f"{what}.movement must be DELI or RECE, got {movement!r}")
    if payment not in PAYMENTS:
        raise FormatError(f"{what}.payment must be APMT or FREE, got {payment!r}")
    quantity_text = _quantity_text(quantity, f"{what}.quantity")
    if payment == "FREE":
        if not isinstance(settlement_amount, Decimal) or settlement_amount != 0:
            raise FormatError(f"{what}: a FREE (free of payment) settlement has settlement_amount 0")
        return quantity_text, None
    return quantity_text, _money(settlement_amount, currency, f"{what}.settlement_amount")


def _add_amount(b: _Builder, parent: Any, tag: str, movement: str, amount: str | None, currency: str) -> None:
    if amount is None:
        return
    el = b.add(parent, tag)
    b.add(el, "Amt", amount, Ccy=currency)
    # Delivering against payment we receive the cash; receiving against payment we pay it.
    b.add(el, "CdtDbtInd", "CRDT" if movement == "DELI" else "DBIT")


def _read_amount(doc_root: Any, tag: str, movement: str, payment: str) -> tuple[Decimal, str]:
    amount_el = _find(doc_root, tag)
    if payment == "FREE":
        if amount_el is not None:
            raise FormatError("a FREE settlement carries no settlement amount", path=_path(amount_el))
        return Decimal(0), ""
    if amount_el is None:
        raise FormatError(f"missing {tag} for a settlement against payment", path=_path(doc_root))
    amount, currency = _amount(_require(amount_el, "Amt"))
    expected = "CRDT" if movement == "DELI" else "DBIT"
    indicator = _require_text(amount_el, "CdtDbtInd")
    if indicator != expected:
        raise FormatError(
            f"{tag}/CdtDbtInd is {indicator} but a {movement} against payment is {expected}",
            path=_path(_require(amount_el, "CdtDbtInd")),
            line=amount_el.sourceline,
        )
    return amount, currency


def build_sese023(*, message_id: str, created_at: datetime, instruction: SecuritiesInstruction) -> bytes:
    """A sese.023.001.11 securities settlement transaction instruction (see the module docstring)."""
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    i = instruction
    if not isinstance(i, SecuritiesInstruction):
        raise FormatError(f"instruction: expected a SecuritiesInstruction, got {type(i).__name__}")
    quantity, amount = _check_common(
        "instruction",
        i.reference,
        i.isin,
        i.quantity,
        i.movement,
        i.payment,
        i.settlement_amount,
        i.currency,
        i.safekeeping_account,
    )
    _check_bic(i.account_owner_bic, "instruction.account_owner_bic")
    _check_bic(i.counterparty_bic, "instruction.counterparty_bic")
    _text_field(i.counterparty_account, "instruction.counterparty_account", 35)
    if i.partial_settlement not in PARTIAL_SETTLEMENT:
        raise FormatError(f"instruction.partial_settlement must be one of {sorted(PARTIAL_SETTLEMENT)}")
    _date_text(i.trade_date, "instruction.trade_date")
    _date_text(i.settlement_date, "instruction.settlement_date")

    b = _Builder("sese.023.001.11")
    instr = b.add(b.root, "SctiesSttlmTxInstr")
    b.add(instr, "TxId", i.reference)
    params = b.add(instr, "SttlmTpAndAddtlParams")
    b.add(params, "SctiesMvmntTp", i.movement)
    b.add(params, "Pmt", i.payment)
    trade = b.add(instr, "TradDtls")
    b.add(trade, "TradDt/Dt/Dt", i.trade_date.isoformat())
    b.add(trade, "SttlmDt/Dt/Dt", i.settlement_date.isoformat())
    b.add(instr, "FinInstrmId/ISIN", i.isin)
    holding = b.add(instr, "QtyAndAcctDtls")
    b.add(holding, "SttlmQty/Qty/Unit", quantity)
    b.add(holding, "AcctOwnr/Id/AnyBIC", i.account_owner_bic)
    b.add(holding, "SfkpgAcct/Id", i.safekeeping_account)
    settlement = b.add(instr, "SttlmParams")
    b.add(settlement, "SctiesTxTp/Cd", "TRAD")
    b.add(settlement, "PrtlSttlmInd", i.partial_settlement)
    side = "RcvgSttlmPties" if i.movement == "DELI" else "DlvrgSttlmPties"
    party = b.add(instr, f"{side}/Pty1")
    b.add(party, "Id/AnyBIC", i.counterparty_bic)
    b.add(party, "SfkpgAcct/Id", i.counterparty_account)
    _add_amount(b, instr, "SttlmAmt", i.movement, amount, i.currency)
    return b.finish()


def parse_sese023(xml: bytes) -> SecuritiesInstruction:
    """The instruction of a sese.023.001.11 (validated against its XSD first)."""
    document, _ = _load(xml, "sese.023", readable=set())
    instr = _require(document, "SctiesSttlmTxInstr")
    movement = _require_text(instr, "SttlmTpAndAddtlParams/SctiesMvmntTp")
    payment = _require_text(instr, "SttlmTpAndAddtlParams/Pmt")
    side = "RcvgSttlmPties" if movement == "DELI" else "DlvrgSttlmPties"
    counterparty = _require(instr, f"{side}/Pty1")
    amount, currency = _read_amount(instr, "SttlmAmt", movement, payment)
    trade_date = _find(instr, "TradDtls/TradDt")
    if trade_date is None:
        raise FormatError("missing TradDtls/TradDt", path=_path(instr), line=instr.sourceline)
    return SecuritiesInstruction(
        reference=_require_text(instr, "TxId"),
        isin=_require_text(instr, "FinInstrmId/ISIN"),
        quantity=_quantity(_require(instr, "QtyAndAcctDtls/SttlmQty/Qty/Unit")),
        movement=movement,
        payment=payment,
        settlement_amount=amount,
        currency=currency,
        trade_date=_trade_or_settlement_date(trade_date),
        settlement_date=_trade_or_settlement_date(_require(instr, "TradDtls/SttlmDt")),
        safekeeping_account=_require_text(instr, "QtyAndAcctDtls/SfkpgAcct/Id"),
        account_owner_bic=_text(instr, "QtyAndAcctDtls/AcctOwnr/Id/AnyBIC"),
        counterparty_account=_text(counterparty, "SfkpgAcct/Id"),
        counterparty_bic=_text(counterparty, "Id/AnyBIC"),
        partial_settlement=_text(instr, "SttlmParams/PrtlSttlmInd") or "NPAR",
    )


def _trade_or_settlement_date(el: Any) -> date:
    """TradeDate/SettlementDate choice: a date (Dt/Dt or Dt/DtTm); a date code (DtCd) is rejected."""
    chosen = _find(el, "Dt")
    if chosen is None:
        raise FormatError("only explicit dates (Dt) are supported, not date codes", path=_path(el), line=el.sourceline)
    return _required_date_choice(chosen)


def build_sese025(*, message_id: str, created_at: datetime, confirmation: SecuritiesConfirmation) -> bytes:
    """A sese.025.001.11 securities settlement transaction confirmation (see the module docstring).

    A confirmation with settlement_amount 0 is reported free of payment (Pmt FREE, no SttldAmt);
    otherwise against payment (Pmt APMT, SttldAmt).
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    c = confirmation
    if not isinstance(c, SecuritiesConfirmation):
        raise FormatError(f"confirmation: expected a SecuritiesConfirmation, got {type(c).__name__}")
    if not isinstance(c.settlement_amount, Decimal):
        raise FormatError(f"confirmation.settlement_amount must be a decimal.Decimal, got {c.settlement_amount!r}")
    payment = "FREE" if c.settlement_amount == 0 else "APMT"
    quantity, amount = _check_common(
        "confirmation",
        c.reference,
        c.isin,
        c.quantity,
        c.movement,
        payment,
        c.settlement_amount,
        c.currency,
        c.safekeeping_account,
    )
    _date_text(c.settlement_date, "confirmation.settlement_date")

    b = _Builder("sese.025.001.11")
    conf = b.add(b.root, "SctiesSttlmTxConf")
    ids = b.add(conf, "TxIdDtls")
    b.add(ids, "AcctOwnrTxId", c.reference)
    b.add(ids, "SctiesMvmntTp", c.movement)
    b.add(ids, "Pmt", payment)
    b.add(conf, "TradDtls/FctvSttlmDt/Dt/Dt", c.settlement_date.isoformat())
    b.add(conf, "FinInstrmId/ISIN", c.isin)
    holding = b.add(conf, "QtyAndAcctDtls")
    b.add(holding, "SttldQty/Qty/Unit", quantity)
    b.add(holding, "SfkpgAcct/Id", c.safekeeping_account)
    b.add(conf, "SttlmParams/SctiesTxTp/Cd", "TRAD")
    _add_amount(b, conf, "SttldAmt", c.movement, amount, c.currency)
    return b.finish()


def parse_sese025(xml: bytes) -> SecuritiesConfirmation:
    """The confirmation of a sese.025.001.11 (validated against its XSD first).

    settlement_date is the effective settlement date (TradDtls/FctvSttlmDt); a FREE confirmation
    comes back with settlement_amount 0 and currency "".
    """
    document, _ = _load(xml, "sese.025", readable=set())
    conf = _require(document, "SctiesSttlmTxConf")
    movement = _require_text(conf, "TxIdDtls/SctiesMvmntTp")
    payment = _require_text(conf, "TxIdDtls/Pmt")
    amount, currency = _read_amount(conf, "SttldAmt", movement, payment)
    effective = _require(conf, "TradDtls/FctvSttlmDt")
    chosen = _find(effective, "Dt")
    if chosen is None:
        raise FormatError("only an explicit effective settlement date (Dt) is supported", path=_path(effective))
    return SecuritiesConfirmation(
        reference=_require_text(conf, "TxIdDtls/AcctOwnrTxId"),
        isin=_require_text(conf, "FinInstrmId/ISIN"),
        quantity=_quantity(_require(conf, "QtyAndAcctDtls/SttldQty/Qty/Unit")),
        movement=movement,
        settlement_amount=amount,
        currency=currency,
        settlement_date=_required_date_choice(chosen),
        safekeeping_account=_require_text(conf, "QtyAndAcctDtls/SfkpgAcct/Id"),
    )
