"""Payment status reports, shared by pain.002 and pacs.002: the checks and blocks both builders
use, and the reader of either (``parse_status_report``)."""

from __future__ import annotations

from typing import Any

from rails.formats.errors import FormatError
from rails.formats.iso20022.documents import (
    _Builder,
    _find,
    _findall,
    _is_element,
    _load,
    _local,
    _path,
    _require_text,
    _text,
)
from rails.formats.iso20022.fields import _reason_path, _text_field
from rails.formats.iso20022.records import PaymentStatus

# ISO external code sets used by the status builders (ExternalPaymentTransactionStatus1Code and
# ExternalPaymentGroupStatus1Code).
TRANSACTION_STATUSES = frozenset(
    {"ACCC", "ACCP", "ACFC", "ACIS", "ACPD", "ACSC", "ACSP", "ACTC", "ACWC", "ACWP", "BLCK", "CANC", "PATC"}
    | {"PDNG", "PRES", "RCVD", "RJCT"}
)
GROUP_STATUSES = TRANSACTION_STATUSES | {"PART"}


# --------------------------------------------------------------------------------------------
# pain.002 / pacs.002


def _check_statuses(
    statuses: list[PaymentStatus], original_message_id: str, original_message_type: str
) -> tuple[PaymentStatus | None, list[PaymentStatus]]:
    _text_field(original_message_id, "original_message_id", 35)
    # OrgnlMsgNmId is Max35Text: an ISO message id such as pacs.008.001.08, or e.g. "NACHA".
    _text_field(original_message_type, "original_message_type", 35)
    group: PaymentStatus | None = None
    transactions: list[PaymentStatus] = []
    for i, s in enumerate(statuses):
        if not isinstance(s, PaymentStatus):
            raise FormatError(f"statuses[{i}]: expected a PaymentStatus, got {type(s).__name__}")
        if s.original_message_id != original_message_id:
            raise FormatError(
                f"statuses[{i}]: original_message_id {s.original_message_id!r} is not {original_message_id!r}"
            )
        _text_field(s.reason_text, f"statuses[{i}].reason_text", 105, required=False)
        if s.reason_code:
            _text_field(s.reason_code, f"statuses[{i}].reason_code", 35)
        if s.reason_text and not s.reason_code:
            raise FormatError(f"statuses[{i}]: reason_text needs a reason_code")
        if s.end_to_end_id:
            _text_field(s.end_to_end_id, f"statuses[{i}].end_to_end_id", 35)
            if s.status not in TRANSACTION_STATUSES:
                raise FormatError(f"statuses[{i}]: unknown transaction status {s.status!r}")
            transactions.append(s)
        else:
            if group is not None:
                raise FormatError(f"statuses[{i}]: only one group status (empty end_to_end_id) per report")
            if s.status not in GROUP_STATUSES:
                raise FormatError(f"statuses[{i}]: unknown group status {s.status!r}")
            group = s
    if not statuses:
        raise FormatError("no statuses to report")
    return group, transactions


def _add_reason(b: _Builder, parent: Any, status: PaymentStatus) -> None:
    if status.reason_code:
        reason = b.add(parent, "StsRsnInf")
        b.add(reason, f"Rsn/{_reason_path(status.reason_code)}", status.reason_code)
        if status.reason_text:
            b.add(reason, "AddtlInf", status.reason_text)


def _add_original_group(
    b: _Builder, parent: Any, group: PaymentStatus | None, message_id: str, message_type: str
) -> None:
    original = b.add(parent, "OrgnlGrpInfAndSts")
    b.add(original, "OrgnlMsgId", message_id)
    b.add(original, "OrgnlMsgNmId", message_type)
    if group is not None:
        b.add(original, "GrpSts", group.status)
        _add_reason(b, original, group)


def _add_transaction_status(b: _Builder, tx: Any, status: PaymentStatus) -> None:
    b.add(tx, "OrgnlEndToEndId", status.end_to_end_id)
    if status.uetr:
        b.add(tx, "OrgnlUETR", status.uetr)
    b.add(tx, "TxSts", status.status)
    _add_reason(b, tx, status)


def _reason(el: Any) -> tuple[str, str]:
    """(code, text) of the first StsRsnInf under ``el``; all its AddtlInf lines joined by a blank."""
    info = _find(el, "StsRsnInf")
    if info is None:
        return "", ""
    code = _text(info, "Rsn/Cd") or _text(info, "Rsn/Prtry")
    text = " ".join((line.text or "").strip() for line in _findall(info, "AddtlInf") if (line.text or "").strip())
    return code, text


def parse_status_report(xml: bytes) -> list[PaymentStatus]:
    """The statuses of a pain.002 (any version; .10 and .11 XSD-validated, others such as the SIX
    ``pain.002.001.03.ch.02`` read structurally) or a pacs.002 (.10 XSD-validated, others read
    structurally).

    Group statuses (GrpSts) come first with an empty end_to_end_id, then per transaction. A
    payment-information status (PmtInfSts) without transactions is reported with an empty
    end_to_end_id; a transaction without TxSts inherits PmtInfSts, then GrpSts (and their reason).
    """
    document, _ = _load(xml, "pain.002", "pacs.002")
    report = next((child for child in document if _is_element(child)), None)
    if report is None or _local(report) not in {"CstmrPmtStsRpt", "FIToFIPmtStsRpt"}:
        raise FormatError("missing CstmrPmtStsRpt / FIToFIPmtStsRpt", path=_path(document), line=document.sourceline)

    statuses: list[PaymentStatus] = []
    group_status = ""
    group_reason = ("", "")
    default_message_id = ""
    for original in _findall(report, "OrgnlGrpInfAndSts"):
        message_id = _require_text(original, "OrgnlMsgId")
        default_message_id = default_message_id or message_id
        status = _text(original, "GrpSts")
        if status:
            group_status, group_reason = status, _reason(original)
            statuses.append(PaymentStatus(message_id, "", status, *group_reason))

    def transaction(tx: Any, inherited: str, inherited_reason: tuple[str, str]) -> PaymentStatus:
        message_id = _text(tx, "OrgnlGrpInf/OrgnlMsgId") or default_message_id
        if not message_id:
            raise FormatError("no original message id (OrgnlMsgId)", path=_path(tx), line=tx.sourceline)
        status = _text(tx, "TxSts")
        reason = _reason(tx)
        if not status:
            status, reason = inherited, (reason if reason[0] else inherited_reason)
        if not status:
            raise FormatError("no status (TxSts) for the transaction", path=_path(tx), line=tx.sourceline)
        end_to_end_id = _text(tx, "OrgnlEndToEndId") or _text(tx, "OrgnlTxId") or _text(tx, "OrgnlInstrId")
        return PaymentStatus(message_id, end_to_end_id, status, *reason, uetr=_text(tx, "OrgnlUETR"))

    for block in _findall(report, "OrgnlPmtInfAndSts"):
        block_status = _text(block, "PmtInfSts")
        block_reason = _reason(block) if block_status else ("", "")
        transactions = _findall(block, "TxInfAndSts")
        if not transactions and block_status:
            statuses.append(PaymentStatus(default_message_id, "", block_status, *block_reason))
        for tx in transactions:
            statuses.append(
                transaction(tx, block_status or group_status, block_reason if block_status else group_reason)
            )
    for tx in _findall(report, "TxInfAndSts"):
        statuses.append(transaction(tx, group_status, group_reason))
    return statuses
