"""The pacs family (bank to bank): pacs.008 FI to FI credit transfers (Fedwire Funds or SWIFT
cross-border, .001.08; .001.07 read structurally) and the pacs.002 FI to FI payment status report."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from rails.formats.errors import FormatError
from rails.formats.iso20022.documents import _Builder, _find, _findall, _load, _path, _require, _require_text, _text
from rails.formats.iso20022.fields import (
    _agent_ids,
    _amount,
    _check_aba,
    _check_bic,
    _check_control_sum,
    _check_iban,
    _check_transfer_common,
    _datetime_text,
    _money,
    _parse_date,
    _party_name,
    _remittance,
    _text_field,
)
from rails.formats.iso20022.records import CreditTransfer, Party, PaymentStatus
from rails.formats.iso20022.status import _add_original_group, _add_transaction_status, _check_statuses

# --------------------------------------------------------------------------------------------
# pacs.008


def _uetr(message_id: str, end_to_end_id: str) -> str:
    """A UUIDv4-shaped UETR derived from the message and end-to-end ids (stable across rebuilds)."""
    digest = hashlib.sha256(f"{message_id}\x1f{end_to_end_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _add_agent(b: _Builder, parent: Any, tag: str, party: Party, fedwire: bool, what: str) -> None:
    fin = b.add(parent, f"{tag}/FinInstnId")
    if not fedwire and not party.bic and not party.aba:
        raise FormatError(f"{what}: a BIC (or an ABA routing number) identifies the agent")
    if party.bic and not fedwire:
        b.add(fin, "BICFI", _check_bic(party.bic, f"{what}.bic"))
    if party.aba or fedwire:
        member = b.add(fin, "ClrSysMmbId")
        b.add(member, "ClrSysId/Cd", "USABA")
        b.add(member, "MmbId", _check_aba(party.aba, f"{what}.aba"))


def _add_party(b: _Builder, parent: Any, tag: str, party: Party) -> None:
    party_el = b.add(parent, tag)
    b.add(party_el, "Nm", party.name)
    if party.country:
        b.add(party_el, "PstlAdr/Ctry", party.country)


def _add_party_account(b: _Builder, parent: Any, tag: str, party: Party, fedwire: bool, what: str) -> None:
    if fedwire:
        if not party.account:
            raise FormatError(f"{what}: a Fedwire party is identified by its account number (account)")
        b.add(parent, f"{tag}/Id/Othr/Id", _text_field(party.account, f"{what}.account", 34))
    elif party.iban:
        b.add(parent, f"{tag}/Id/IBAN", _check_iban(party.iban, f"{what}.iban"))
    elif party.account:
        b.add(parent, f"{tag}/Id/Othr/Id", _text_field(party.account, f"{what}.account", 34))
    else:
        raise FormatError(f"{what}: an IBAN (or an account number) identifies the account")


def build_pacs008(
    *,
    message_id: str,
    created_at: datetime,
    transfers: list[CreditTransfer],
    settlement_method: str = "CLRG",
    clearing_system: str = "FDW",
) -> bytes:
    """A pacs.008.001.08, validated against its XSD.

    With ``settlement_method="CLRG"`` and ``clearing_system="FDW"`` it is a Fedwire Funds customer
    transfer: USD, local instrument CTRC, charges SLEV, agents (debtor/creditor and instructing/
    instructed) by ABA routing number (ClrSysMmbId USABA), accounts by account number (Othr/Id);
    a party's BIC and IBAN are not sent. Any other combination (e.g. ``settlement_method="INDA"``,
    ``clearing_system=""``) is a cross-border SWIFT transfer: any currency, charges SHAR, agents by
    BIC (plus ABA if given), accounts by IBAN (account number if there is no IBAN). The instructing
    and instructed agents are the debtor's and creditor's agents (direct relationship). The UETR is
    derived from message and end-to-end id.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    if settlement_method not in {"CLRG", "INDA", "INGA", "COVE"}:
        raise FormatError(f"settlement_method must be CLRG, INDA, INGA or COVE, got {settlement_method!r}")
    if settlement_method == "CLRG" and not clearing_system:
        raise FormatError("settlement_method CLRG needs a clearing_system (e.g. FDW)")
    if clearing_system and (not isinstance(clearing_system, str) or len(clearing_system) > 3):
        raise FormatError(f"clearing_system must be an ISO cash clearing system code, got {clearing_system!r}")
    fedwire = settlement_method == "CLRG" and clearing_system == "FDW"
    if not transfers:
        raise FormatError("build_pacs008: no transfers")

    b = _Builder("pacs.008.001.08")
    transfer_el = b.add(b.root, "FIToFICstmrCdtTrf")
    header = b.add(transfer_el, "GrpHdr")
    b.add(header, "MsgId", message_id)
    b.add(header, "CreDtTm", created_at.isoformat())
    b.add(header, "NbOfTxs", str(len(transfers)))
    settlement = b.add(header, "SttlmInf")
    b.add(settlement, "SttlmMtd", settlement_method)
    if clearing_system:
        b.add(settlement, "ClrSys/Cd", clearing_system)
    for i, t in enumerate(transfers):
        _check_transfer_common(t, i)
        if fedwire and t.currency != "USD":
            raise FormatError(f"transfers[{i}]: a Fedwire transfer is in USD, got {t.currency!r}")
        amount = _money(t.amount, t.currency, f"transfers[{i}].amount")
        tx = b.add(transfer_el, "CdtTrfTxInf")
        b.add(tx, "PmtId/EndToEndId", t.end_to_end_id)
        pmt_id = tx[0]
        b.add(pmt_id, "UETR", _uetr(message_id, t.end_to_end_id))
        if fedwire:
            b.add(tx, "PmtTpInf/LclInstrm/Prtry", "CTRC")
        b.add(tx, "IntrBkSttlmAmt", amount, Ccy=t.currency)
        b.add(tx, "IntrBkSttlmDt", t.value_date.isoformat())
        b.add(tx, "ChrgBr", "SLEV" if settlement_method == "CLRG" else "SHAR")
        _add_agent(b, tx, "InstgAgt", t.debtor, fedwire, f"transfers[{i}].debtor")
        _add_agent(b, tx, "InstdAgt", t.creditor, fedwire, f"transfers[{i}].creditor")
        _add_party(b, tx, "Dbtr", t.debtor)
        _add_party_account(b, tx, "DbtrAcct", t.debtor, fedwire, f"transfers[{i}].debtor")
        _add_agent(b, tx, "DbtrAgt", t.debtor, fedwire, f"transfers[{i}].debtor")
        _add_agent(b, tx, "CdtrAgt", t.creditor, fedwire, f"transfers[{i}].creditor")
        _add_party(b, tx, "Cdtr", t.creditor)
        _add_party_account(b, tx, "CdtrAcct", t.creditor, fedwire, f"transfers[{i}].creditor")
        if t.remittance:
            b.add(tx, "RmtInf/Ustrd", t.remittance)
    return b.finish()


def _transfer_party(tx: Any, role: str) -> Party:
    party = _find(tx, role)
    account = _find(tx, f"{role}Acct")
    bic, aba = _agent_ids(_find(tx, f"{role}Agt"))
    country = ""
    if party is not None:
        country = _text(party, "PstlAdr/Ctry") or _text(party, "CtryOfRes")
    return Party(
        name=_party_name(party),
        country=country,
        iban=_text(account, "Id/IBAN") if account is not None else "",
        bic=bic,
        aba=aba,
        account=_text(account, "Id/Othr/Id") if account is not None else "",
    )


def parse_pacs008(xml: bytes) -> tuple[str, list[CreditTransfer]]:
    """(message id, transfers) of a pacs.008.001.08 (XSD-validated) or .001.07 (read structurally).

    A Party's ``aba`` is its agent's ClrSysMmbId when the clearing system is USABA, ``bic`` its
    agent's BICFI; ``iban``/``account`` come from the account. The value date is the transaction's
    IntrBkSttlmDt, else the group header's. CtrlSum and TtlIntrBkSttlmAmt, when present, must equal
    the sum of IntrBkSttlmAmt (the prowide .07 sample declares 10000 for a single 5000 transaction
    and is rejected for that).
    """
    document, _ = _load(xml, "pacs.008", readable={"pacs.008.001.07"})
    transfer_el = _require(document, "FIToFICstmrCdtTrf")
    header = _require(transfer_el, "GrpHdr")
    message_id = _require_text(header, "MsgId")
    header_date = _find(header, "IntrBkSttlmDt")
    transfers: list[CreditTransfer] = []
    total = Decimal(0)
    for tx in _findall(transfer_el, "CdtTrfTxInf"):
        amount, currency = _amount(_require(tx, "IntrBkSttlmAmt"))
        date_el = _find(tx, "IntrBkSttlmDt")
        if date_el is None:
            date_el = header_date
        if date_el is None:
            raise FormatError("no interbank settlement date (IntrBkSttlmDt)", path=_path(tx), line=tx.sourceline)
        transfers.append(
            CreditTransfer(
                end_to_end_id=_require_text(tx, "PmtId/EndToEndId"),
                amount=amount,
                currency=currency,
                debtor=_transfer_party(tx, "Dbtr"),
                creditor=_transfer_party(tx, "Cdtr"),
                remittance=_remittance(tx),
                value_date=_parse_date(date_el),
            )
        )
        total += amount
    _check_control_sum(header, "CtrlSum", total)
    _check_control_sum(header, "TtlIntrBkSttlmAmt", total)
    return message_id, transfers


def build_pacs002(
    *,
    message_id: str,
    created_at: datetime,
    original_message_id: str,
    original_message_type: str,
    statuses: list[PaymentStatus],
) -> bytes:
    """A pacs.002.001.10 FI to FI payment status report, validated against the (Fedwire) XSD.

    Same conventions as build_pain002; each TxInfAndSts carries its OrgnlGrpInf, as Fedwire's do,
    and the OrgnlUETR when the status has one.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    group, transactions = _check_statuses(statuses, original_message_id, original_message_type)
    b = _Builder("pacs.002.001.10")
    report = b.add(b.root, "FIToFIPmtStsRpt")
    b.add(report, "GrpHdr/MsgId", message_id)
    b.add(report[0], "CreDtTm", created_at.isoformat())
    if group is not None:
        _add_original_group(b, report, group, original_message_id, original_message_type)
    for status in transactions:
        tx = b.add(report, "TxInfAndSts")
        b.add(tx, "OrgnlGrpInf/OrgnlMsgId", original_message_id)
        b.add(tx[0], "OrgnlMsgNmId", original_message_type)
        _add_transaction_status(b, tx, status)
    return b.finish()
