"""The pain family (customer to bank): pain.001 credit transfer initiation (build with sepaxml,
read .001.03, the SIX .ch.02 variant and .001.09) and the pain.002 customer payment status report."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from lxml import etree
from sepaxml import SepaTransfer

from rails.formats.errors import FormatError
from rails.formats.iso20022.documents import (
    _Builder,
    _find,
    _findall,
    _load,
    _parse_xml,
    _require,
    _require_text,
    _text,
    validate,
)
from rails.formats.iso20022.fields import (
    _agent_ids,
    _amount,
    _check_bic,
    _check_control_sum,
    _check_iban,
    _check_transfer_common,
    _datetime_text,
    _money,
    _parse_date,
    _remittance,
    _required_date_choice,
    _text_field,
)
from rails.formats.iso20022.records import CreditTransfer, Party, PaymentStatus
from rails.formats.iso20022.status import _add_original_group, _add_transaction_status, _check_statuses

# --------------------------------------------------------------------------------------------
# pain.001


def build_pain001(*, message_id: str, created_at: datetime, transfers: list[CreditTransfer]) -> bytes:
    """A SEPA credit transfer initiation, pain.001.001.03, produced with sepaxml.

    All transfers share one debtor; currency EUR; debtor and creditors by IBAN + BIC. Transfers
    are grouped into one payment-information block per value date (requested execution date), the
    blocks in order of first appearance, so parse_pain001 returns them grouped by date.
    sepaxml's random ids and clock are replaced by ``message_id`` (PmtInfId: ``message_id`` or
    ``message_id-n``) and ``created_at``; BtchBookg is false so that each transfer is booked (and
    reported on the statement) on its own. Names are transliterated to ASCII by sepaxml.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    if not transfers:
        raise FormatError("build_pain001: no transfers")
    debtor = transfers[0].debtor
    payments: list[dict[str, Any]] = []
    for i, t in enumerate(transfers):
        _check_transfer_common(t, i)
        if t.debtor != debtor:
            raise FormatError(f"transfers[{i}]: all transfers of a pain.001 must share one debtor")
        if t.currency != "EUR":
            raise FormatError(f"transfers[{i}]: a SEPA credit transfer is in EUR, got {t.currency!r}")
        cents = int(Decimal(_money(t.amount, t.currency, f"transfers[{i}].amount")) * 100)
        creditor = t.creditor
        payment: dict[str, Any] = {
            "name": creditor.name,
            "IBAN": _check_iban(creditor.iban, f"transfers[{i}].creditor.iban"),
            "BIC": _check_bic(creditor.bic, f"transfers[{i}].creditor.bic"),
            "amount": cents,
            "execution_date": t.value_date,
            "description": t.remittance,
            "endtoend_id": t.end_to_end_id,
        }
        if creditor.country:
            payment["address"] = {"country": creditor.country}
        payments.append(payment)
    config: dict[str, Any] = {
        "name": debtor.name,
        "IBAN": _check_iban(debtor.iban, "debtor.iban"),
        "BIC": _check_bic(debtor.bic, "debtor.bic"),
        "batch": True,
        "currency": "EUR",
    }
    if debtor.country:
        config["address"] = {"country": debtor.country}
    sepa = SepaTransfer(config, schema="pain.001.001.03", clean=True)
    for payment in payments:
        sepa.add_payment(payment)
    root = _parse_xml(sepa.export(validate=False))

    # Deterministic identifiers and time instead of sepaxml's random ones and its clock.
    initiation = _require(root, "CstmrCdtTrfInitn")
    _require(initiation, "GrpHdr/MsgId").text = message_id
    _require(initiation, "GrpHdr/CreDtTm").text = created_at.isoformat()
    blocks = _findall(initiation, "PmtInf")
    for n, block in enumerate(blocks, start=1):
        suffix = "" if len(blocks) == 1 else f"-{n}"
        _require(block, "PmtInfId").text = message_id[: 35 - len(suffix)] + suffix
        _require(block, "BtchBookg").text = "false"
        for remittance in _findall(block, "CdtTrfTxInf/RmtInf"):
            if not _text(remittance, "Ustrd"):
                remittance.getparent().remove(remittance)
    out = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    validate(out, "pain.001.001.03")
    return out


def parse_pain001(xml: bytes) -> tuple[str, list[CreditTransfer]]:
    """(message id, transfers) of a pain.001.001.03 or .001.09.

    The SIX Swiss ``pain.001.001.03.ch.02`` is accepted and validated against the ISO .001.03 XSD
    under the ISO namespace. An EqvtAmt transfer (amount given in the debtor's currency) comes back
    with that amount and currency. Party.country is PstlAdr/Ctry ("" if absent). The control sum
    (GrpHdr and PmtInf CtrlSum) must match; NbOfTxs is not checked (the real PostFinance sample
    declares 7 and carries 8).
    """
    document, _ = _load(xml, "pain.001", readable=set())
    initiation = _require(document, "CstmrCdtTrfInitn")
    message_id = _require_text(initiation, "GrpHdr/MsgId")
    transfers: list[CreditTransfer] = []
    total = Decimal(0)
    for block in _findall(initiation, "PmtInf"):
        execution = _require(block, "ReqdExctnDt")
        # .001.03: <ReqdExctnDt>2020-07-28</ReqdExctnDt>; .001.09: <ReqdExctnDt><Dt>...</Dt></ReqdExctnDt>
        value_date = _parse_date(execution) if len(execution) == 0 else _required_date_choice(execution)
        debtor_bic, debtor_aba = _agent_ids(_find(block, "DbtrAgt"))
        debtor_account = _require(block, "DbtrAcct")
        debtor = Party(
            name=_text(block, "Dbtr/Nm"),
            country=_text(block, "Dbtr/PstlAdr/Ctry"),
            iban=_text(debtor_account, "Id/IBAN"),
            bic=debtor_bic,
            aba=debtor_aba,
            account=_text(debtor_account, "Id/Othr/Id"),
        )
        block_total = Decimal(0)
        for tx in _findall(block, "CdtTrfTxInf"):
            amount_el = _find(tx, "Amt/InstdAmt")
            if amount_el is None:
                amount_el = _require(tx, "Amt/EqvtAmt/Amt")
            amount, currency = _amount(amount_el)
            creditor_bic, creditor_aba = _agent_ids(_find(tx, "CdtrAgt"))
            creditor_account = _find(tx, "CdtrAcct")
            creditor = Party(
                name=_text(tx, "Cdtr/Nm"),
                country=_text(tx, "Cdtr/PstlAdr/Ctry"),
                iban=_text(creditor_account, "Id/IBAN") if creditor_account is not None else "",
                bic=creditor_bic,
                aba=creditor_aba,
                account=_text(creditor_account, "Id/Othr/Id") if creditor_account is not None else "",
            )
            transfers.append(
                CreditTransfer(
                    end_to_end_id=_require_text(tx, "PmtId/EndToEndId"),
                    amount=amount,
                    currency=currency,
                    debtor=debtor,
                    creditor=creditor,
                    remittance=_remittance(tx),
                    value_date=value_date,
                )
            )
            block_total += amount
        _check_control_sum(block, "CtrlSum", block_total)
        total += block_total
    _check_control_sum(initiation, "GrpHdr/CtrlSum", total)
    return message_id, transfers


def build_pain002(
    *,
    message_id: str,
    created_at: datetime,
    original_message_id: str,
    original_message_type: str,
    statuses: list[PaymentStatus],
) -> bytes:
    """A pain.002.001.10 customer payment status report, validated against its XSD.

    A status with an empty end_to_end_id becomes the group status (GrpSts, at most one); the others
    are transaction statuses, reported in one OrgnlPmtInfAndSts whose OrgnlPmtInfId is the original
    message id (PaymentStatus carries no payment-information id). Reason codes shaped like ISO codes
    (AC01, NARR) go to Rsn/Cd, others to Rsn/Prtry; reason_text is at most 105 characters.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    group, transactions = _check_statuses(statuses, original_message_id, original_message_type)
    b = _Builder("pain.002.001.10")
    report = b.add(b.root, "CstmrPmtStsRpt")
    b.add(report, "GrpHdr/MsgId", message_id)
    b.add(report[0], "CreDtTm", created_at.isoformat())
    _add_original_group(b, report, group, original_message_id, original_message_type)
    if transactions:
        block = b.add(report, "OrgnlPmtInfAndSts")
        b.add(block, "OrgnlPmtInfId", original_message_id)
        for status in transactions:
            _add_transaction_status(b, b.add(block, "TxInfAndSts"), status)
    return b.finish()
