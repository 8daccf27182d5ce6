"""Message formats of the fiat and custody rails: XSD validity, round trips, real samples, rejections.

Plain pytest: no database, no Django. The real samples are copied into tests/data/conformance
(origins and licenses in its SOURCES.md).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import achkit
import pytest

from rails.formats import iso20022, nacha
from rails.formats.errors import FormatError
from rails.formats.iso20022 import (
    Balance,
    Booking,
    CreditTransfer,
    Party,
    PaymentStatus,
    Statement,
    sese,
)

CONFORMANCE = Path(__file__).resolve().parents[1] / "data" / "conformance"
SAMPLES = CONFORMANCE / "iso20022" / "samples"
NACHA_DIR = CONFORMANCE / "nacha"
assert CONFORMANCE.is_dir(), f"conformance samples missing: {CONFORMANCE}"

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=timezone(timedelta(hours=-4)))
OUR_IBAN = "DE89370400440532013000"


def sample(relative: str) -> bytes:
    return (SAMPLES / relative).read_bytes()


def replace_text(xml: bytes, old: str, new: str) -> bytes:
    assert xml.count(old.encode()) >= 1, old
    return xml.replace(old.encode(), new.encode(), 1)


# ---------------------------------------------------------------------------------------------
# Fixtures: messages as the rails would build them


def sepa_transfers() -> list[CreditTransfer]:
    debtor = Party("Clearhouse GmbH", "DE", iban=OUR_IBAN, bic="COBADEFFXXX")
    return [
        CreditTransfer(
            "E2E-0001",
            Decimal("1250.75"),
            "EUR",
            debtor,
            Party("Acme SA", "FR", iban="FR1420041010050500013M02606", bic="PSSTFRPPXXX"),
            "Invoice 2025-001",
            date(2025, 3, 11),
        ),
        CreditTransfer(
            "E2E-0002",
            Decimal("0.01"),
            "EUR",
            debtor,
            Party("Beta BV", "", iban="NL91ABNA0417164300", bic="ABNANL2A"),
            "",
            date(2025, 3, 12),
        ),
        CreditTransfer(
            "E2E-0003",
            Decimal("99999.99"),
            "EUR",
            debtor,
            Party("Gamma AG", "AT", iban="AT611904300234573201", bic="BKAUATWW"),
            "Settlement batch 7",
            date(2025, 3, 11),
        ),
    ]


def fedwire_transfers() -> list[CreditTransfer]:
    corp_a = Party("Corporation A", "US", aba="011104238", account="5647772655")
    corp_b = Party("Corporation B", "US", aba="021040078", account="567876543")
    return [
        CreditTransfer("WIRE-1", Decimal("510000.74"), "USD", corp_a, corp_b, "INV34563", date(2025, 3, 10)),
        CreditTransfer("WIRE-2", Decimal("5"), "USD", corp_b, corp_a, "", date(2025, 3, 10)),
    ]


def swift_transfers() -> list[CreditTransfer]:
    us = Party("Clearhouse GmbH", "DE", iban=OUR_IBAN, bic="COBADEFFXXX")
    return [
        CreditTransfer(
            "XB-1",
            Decimal("1000000"),
            "JPY",
            us,
            Party("Tokyo Trading KK", "JP", bic="BOTKJPJT", account="1234567"),
            "Trade 42",
            date(2025, 3, 12),
        ),
        CreditTransfer(
            "XB-2",
            Decimal("12.345"),
            "KWD",
            us,
            Party("Gulf Co", "KW", iban="KW81CBKU0000000000001234560101", bic="CBKUKWKW"),
            "",
            date(2025, 3, 12),
        ),
        CreditTransfer(
            "XB-3",
            Decimal("250.10"),
            "USD",
            us,
            Party("Acme Inc", "US", bic="CHASUS33", aba="021000021", account="000123456"),
            "PO 9",
            date(2025, 3, 13),
        ),
    ]


def statuses() -> list[PaymentStatus]:
    return [
        PaymentStatus("MSG-1", "", "PART"),
        PaymentStatus("MSG-1", "E2E-0001", "ACSC"),
        PaymentStatus("MSG-1", "E2E-0002", "RJCT", "AC01", "Account number invalid"),
        PaymentStatus("MSG-1", "E2E-0003", "RJCT", "E433", "Not a Fedwire participant"),
        PaymentStatus("MSG-1", "E2E-0004", "PDNG", uetr="8a562c67-ca16-48ba-b074-65581be6f011"),
    ]


def bookings() -> list[Booking]:
    return [
        Booking(
            "BK-1",
            OUR_IBAN,
            Decimal("1250.75"),
            "EUR",
            "CRDT",
            date(2025, 3, 10),
            date(2025, 3, 11),
            end_to_end_id="E2E-0001",
            counterparty_name="Acme SA",
            counterparty_account="FR1420041010050500013M02606",
            remittance="Invoice 2025-001",
        ),
        Booking(
            "BK-2",
            OUR_IBAN,
            Decimal("7"),
            "EUR",
            "DBIT",
            date(2025, 3, 10),
            date(2025, 3, 10),
            counterparty_account="ACC-77",
            return_reason="AC01",
        ),
        Booking("", OUR_IBAN, Decimal("0.00"), "EUR", "DBIT", date(2025, 3, 10), date(2025, 3, 10), status="PDNG"),
    ]


def statement() -> Statement:
    return Statement(
        statement_id="STMT-2025-03-10",
        account=OUR_IBAN,
        currency="EUR",
        created_at=NOW,
        from_date=date(2025, 3, 10),
        to_date=date(2025, 3, 10),
        opening_balance=Decimal("-5.00"),
        closing_balance=Decimal("1238.75"),
        entries=bookings(),
        other_balances=[
            Balance("CLAV", Decimal("1200.00"), "EUR", date(2025, 3, 11)),
            Balance("FWAV", Decimal("-1.00"), "EUR", date(2025, 3, 12)),
        ],
    )


def instruction(**changes: object) -> sese.SecuritiesInstruction:
    base = sese.SecuritiesInstruction(
        reference="SETT-0001",
        isin="US0378331005",
        quantity=Decimal("1500"),
        movement="DELI",
        payment="APMT",
        settlement_amount=Decimal("255000.00"),
        currency="USD",
        trade_date=date(2025, 3, 10),
        settlement_date=date(2025, 3, 11),
        safekeeping_account="SAFE-001",
        account_owner_bic="CLRHUS33XXX",
        counterparty_account="CPTY-ACC-9",
        counterparty_bic="DEUTDEFF",
    )
    return dataclasses.replace(base, **changes)


# ---------------------------------------------------------------------------------------------
# Builders: valid against the XSD, deterministic, and round-trip through their parser


def test_pain001_is_built_with_sepaxml_valid_and_round_trips():
    transfers = sepa_transfers()
    xml = iso20022.build_pain001(message_id="MSG-PAIN-1", created_at=NOW, transfers=transfers)
    iso20022.validate(xml, "pain.001.001.03")
    assert iso20022.detect(xml) == "pain.001.001.03"
    message_id, parsed = iso20022.parse_pain001(xml)
    assert message_id == "MSG-PAIN-1"
    # One payment-information block per value date, in order of first appearance.
    assert parsed == [transfers[0], transfers[2], transfers[1]]
    assert parsed[1].amount == Decimal("99999.99")
    # sepaxml's random ids and clock are replaced: the same input gives the same bytes.
    assert xml == iso20022.build_pain001(message_id="MSG-PAIN-1", created_at=NOW, transfers=transfers)
    assert b"<PmtInfId>MSG-PAIN-1-1</PmtInfId>" in xml
    assert b"<BtchBookg>false</BtchBookg>" in xml


def test_pacs008_fedwire_is_valid_and_round_trips():
    transfers = fedwire_transfers()
    xml = iso20022.build_pacs008(message_id="20250310B1QDRCQR000001", created_at=NOW, transfers=transfers)
    iso20022.validate(xml, "pacs.008.001.08")
    assert b"<Cd>FDW</Cd>" in xml and b"<Prtry>CTRC</Prtry>" in xml and b"<Cd>USABA</Cd>" in xml
    assert b"BICFI" not in xml and b"IBAN" not in xml
    message_id, parsed = iso20022.parse_pacs008(xml)
    assert message_id == "20250310B1QDRCQR000001"
    assert parsed == transfers
    assert parsed[1].amount == Decimal("5.00")


def test_pacs008_swift_cross_border_is_valid_against_the_same_xsd():
    transfers = swift_transfers()
    xml = iso20022.build_pacs008(
        message_id="XB-MSG-1", created_at=NOW, transfers=transfers, settlement_method="INDA", clearing_system=""
    )
    iso20022.validate(xml, "pacs.008.001.08")
    assert b"<BICFI>BOTKJPJT</BICFI>" in xml and b'Ccy="JPY">1000000<' in xml and b'Ccy="KWD">12.345<' in xml
    _, parsed = iso20022.parse_pacs008(xml)
    assert parsed == transfers


def test_pain002_and_pacs002_are_valid_and_round_trip():
    for build, schema in ((iso20022.build_pain002, "pain.002.001.10"), (iso20022.build_pacs002, "pacs.002.001.10")):
        xml = build(
            message_id="STS-1",
            created_at=NOW,
            original_message_id="MSG-1",
            original_message_type="pacs.008.001.08",
            statuses=statuses(),
        )
        iso20022.validate(xml, schema)
        assert iso20022.parse_status_report(xml) == statuses()
        assert b"<Prtry>E433</Prtry>" in xml and b"<Cd>AC01</Cd>" in xml


def test_camt054_is_valid_and_round_trips():
    xml = iso20022.build_camt054(
        message_id="NTF-1", created_at=NOW, account=OUR_IBAN, currency="EUR", bookings=bookings()
    )
    iso20022.validate(xml, "camt.054.001.08")
    assert iso20022.parse_camt054(xml) == bookings()


def test_camt053_is_valid_and_round_trips():
    xml = iso20022.build_camt053(message_id="STM-1", statement=statement())
    iso20022.validate(xml, "camt.053.001.08")
    assert b"<Cd>OPBD</Cd>" in xml and b"<Cd>CLBD</Cd>" in xml
    (parsed,) = iso20022.parse_camt053(xml)
    assert parsed == statement()
    assert parsed.opening_balance == Decimal("-5.00")


def test_camt053_with_a_non_iban_account():
    s = dataclasses.replace(
        statement(),
        account="0012345678",
        currency="USD",
        entries=[dataclasses.replace(b, account="0012345678", currency="USD") for b in bookings()],
        other_balances=[],
    )
    (parsed,) = iso20022.parse_camt053(iso20022.build_camt053(message_id="STM-2", statement=s))
    assert parsed == s


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"movement": "RECE", "partial_settlement": "PART", "quantity": Decimal("0.125")},
        {"payment": "FREE", "settlement_amount": Decimal("0"), "currency": ""},
    ],
)
def test_sese023_is_valid_and_round_trips(changes):
    original = instruction(**changes)
    xml = sese.build_sese023(message_id="SESE-1", created_at=NOW, instruction=original)
    iso20022.validate(xml, "sese.023.001.11")
    assert sese.parse_sese023(xml) == original


@pytest.mark.parametrize("amount", [Decimal("255000.00"), Decimal("0")])
def test_sese025_is_valid_and_round_trips(amount):
    currency = "USD" if amount else ""
    original = sese.SecuritiesConfirmation(
        "SETT-0001", "US0378331005", Decimal("1500"), "RECE", amount, currency, date(2025, 3, 11), "SAFE-001"
    )
    xml = sese.build_sese025(message_id="SESE-2", created_at=NOW, confirmation=original)
    iso20022.validate(xml, "sese.025.001.11")
    assert sese.parse_sese025(xml) == original


# ---------------------------------------------------------------------------------------------
# Builders refuse bad input


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: dataclasses.replace(t, amount=1250.75), "decimal.Decimal"),
        (lambda t: dataclasses.replace(t, amount=Decimal("1.005")), "more decimals"),
        (lambda t: dataclasses.replace(t, amount=Decimal("-1")), "positive"),
        (lambda t: dataclasses.replace(t, currency="USD"), "EUR"),
        (lambda t: dataclasses.replace(t, creditor=dataclasses.replace(t.creditor, iban="FR00BAD")), "IBAN"),
        (lambda t: dataclasses.replace(t, end_to_end_id="X" * 36), "end_to_end_id"),
    ],
)
def test_pain001_rejects_bad_transfers(mutate, message):
    transfers = sepa_transfers()
    transfers[0] = mutate(transfers[0])
    with pytest.raises(FormatError, match=message):
        iso20022.build_pain001(message_id="M", created_at=NOW, transfers=transfers)


def test_pain001_rejects_a_second_debtor():
    transfers = sepa_transfers()
    transfers[1] = dataclasses.replace(transfers[1], debtor=transfers[1].creditor)
    with pytest.raises(FormatError, match="one debtor"):
        iso20022.build_pain001(message_id="M", created_at=NOW, transfers=transfers)


def test_fedwire_rules_are_enforced():
    transfers = fedwire_transfers()
    with pytest.raises(FormatError, match="USD"):
        iso20022.build_pacs008(
            message_id="M", created_at=NOW, transfers=[dataclasses.replace(transfers[0], currency="EUR")]
        )
    bad_aba = dataclasses.replace(transfers[0], creditor=dataclasses.replace(transfers[0].creditor, aba="021040079"))
    with pytest.raises(FormatError, match="ABA"):
        iso20022.build_pacs008(message_id="M", created_at=NOW, transfers=[bad_aba])
    with pytest.raises(FormatError, match="more decimals"):
        iso20022.build_pacs008(
            message_id="M", created_at=NOW, transfers=[dataclasses.replace(transfers[0], amount=Decimal("1.001"))]
        )


def test_status_report_about_an_ach_file():
    xml = iso20022.build_pain002(
        message_id="STS-2",
        created_at=NOW,
        original_message_id="ACH-FILE-1",
        original_message_type="NACHA",
        statuses=[PaymentStatus("ACH-FILE-1", "SETTLE-0001", "RJCT", "AM04", "Insufficient funds")],
    )
    assert iso20022.parse_status_report(xml)[0].reason_code == "AM04"


def test_status_and_custody_builders_refuse_bad_input():
    with pytest.raises(FormatError, match="unknown transaction status"):
        iso20022.build_pacs002(
            message_id="S",
            created_at=NOW,
            original_message_id="MSG-1",
            original_message_type="pacs.008.001.08",
            statuses=[PaymentStatus("MSG-1", "E2E", "DONE")],
        )
    with pytest.raises(FormatError, match="not the report's account"):
        iso20022.build_camt054(
            message_id="N", created_at=NOW, account="OTHER-ACCOUNT", currency="EUR", bookings=bookings()
        )
    with pytest.raises(FormatError, match="ISIN"):
        sese.build_sese023(message_id="S", created_at=NOW, instruction=instruction(isin="US0378331006"))
    with pytest.raises(FormatError, match="FREE"):
        sese.build_sese023(message_id="S", created_at=NOW, instruction=instruction(payment="FREE"))


# ---------------------------------------------------------------------------------------------
# Tampered messages are rejected, naming the element and line


def test_tampered_amount_with_three_decimals_is_rejected():
    xml = iso20022.build_pacs008(message_id="M", created_at=NOW, transfers=fedwire_transfers()[:1])
    tampered = replace_text(xml, ">510000.74<", ">510000.745<")
    iso20022.validate(tampered, "pacs.008.001.08")  # the XSD allows 5 decimals ...
    with pytest.raises(FormatError, match="more decimals than USD") as info:  # ... ISO 4217 does not
        iso20022.parse_pacs008(tampered)
    assert info.value.path.endswith("/CdtTrfTxInf/IntrBkSttlmAmt")
    assert info.value.line is not None and "(line " in str(info.value)

    pain = iso20022.build_pain001(message_id="M", created_at=NOW, transfers=sepa_transfers())
    with pytest.raises(FormatError, match="InstdAmt"):
        iso20022.parse_pain001(replace_text(pain, ">1250.75<", ">1250.755<"))


def test_tampered_missing_mandatory_element_is_rejected_by_the_xsd():
    xml = iso20022.build_camt053(message_id="STM-1", statement=statement())
    start, end = xml.index(b"<Acct>"), xml.index(b"</Acct>") + len(b"</Acct>")
    tampered = xml[:start] + xml[end:]
    with pytest.raises(FormatError, match=r"invalid camt\.053\.001\.08") as info:
        iso20022.parse_camt053(tampered)
    assert info.value.path == "/Document/BkToCstmrStmt/Stmt"
    assert info.value.line is not None

    sese_xml = sese.build_sese023(message_id="S", created_at=NOW, instruction=instruction())
    with pytest.raises(FormatError, match="TxId"):
        sese.parse_sese023(replace_text(sese_xml, "<TxId>SETT-0001</TxId>", ""))


def test_tampered_control_sum_and_direction_are_rejected():
    pain = iso20022.build_pain001(message_id="M", created_at=NOW, transfers=sepa_transfers())
    with pytest.raises(FormatError, match="CtrlSum") as info:
        iso20022.parse_pain001(replace_text(pain, "<CtrlSum>101250.75</CtrlSum>", "<CtrlSum>101250.76</CtrlSum>"))
    assert info.value.path == "/Document/CstmrCdtTrfInitn/GrpHdr/CtrlSum"
    sese_xml = sese.build_sese023(message_id="S", created_at=NOW, instruction=instruction())
    with pytest.raises(FormatError, match="CdtDbtInd"):
        sese.parse_sese023(replace_text(sese_xml, "<CdtDbtInd>CRDT</CdtDbtInd>", "<CdtDbtInd>DBIT</CdtDbtInd>"))


def test_not_xml_wrong_message_and_doctype_are_rejected():
    with pytest.raises(FormatError, match="not well-formed") as info:
        iso20022.detect(b"<Document>\n<unclosed></Document>")
    assert info.value.line == 2
    with pytest.raises(FormatError, match="unknown message namespace"):
        iso20022.detect(b'<Document xmlns="urn:example:other"/>')
    with pytest.raises(FormatError, match=r"expected camt\.053"):
        iso20022.parse_camt053(
            iso20022.build_camt054(message_id="N", created_at=NOW, account=OUR_IBAN, currency="EUR", bookings=[])
        )
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document>&x;</Document>'
    with pytest.raises(FormatError, match="DOCTYPE"):
        iso20022.detect(xxe)
    with pytest.raises(FormatError, match="no XSD"):
        iso20022.validate(b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"/>', "camt.053.001.04")


# ---------------------------------------------------------------------------------------------
# Real samples


def test_every_iso_sample_is_detected():
    expected = {
        "camt053/prowide_camt.053.001.07_with_AppHdr.xml": "camt.053.001.07",
        "pain001/moov_musterfile_pain.001_Nov2020.xml": "pain.001.001.03.ch.02",
        "pacs008/fedwire_CustomerCreditTransfer_Scenario1_Step1_pacs.008.xml": "pacs.008.001.08",
        "pacs008/prowide_pacs.008.001.07_with_AppHdr.xml": "pacs.008.001.07",
        "camt054/genkgo_camt054.v8.xml": "camt.054.001.08",
    }
    for name, message in expected.items():
        assert iso20022.detect(sample(name)) == message


def test_camt053_samples():
    (all_types,) = iso20022.parse_camt053(sample("camt053/genkgo_camt053.v2.all-balance-types.xml"))
    assert (all_types.opening_balance, all_types.closing_balance) == (Decimal("1.01"), Decimal("4.04"))
    assert [b.type for b in all_types.other_balances] == [
        "PRCD",
        "OPAV",
        "CLAV",
        "FWAV",
        "INFO",
        "ITAV",
        "ITBD",
        "XPCD",
    ]
    assert all_types.account == "CH2801234000123456789"  # Othr/Id, no IBAN
    (entry,) = all_types.entries
    assert entry.amount == Decimal("8.85") and entry.end_to_end_id == "000000001"  # "8.850" in the file
    assert entry.counterparty_name == "" and entry.remittance == "Transaction Description"

    (minimal,) = iso20022.parse_camt053(sample("camt053/genkgo_camt053.v2.minimal.xml"))
    assert minimal.closing_balance == Decimal("-27.00")  # CLBD DBIT
    assert minimal.from_date == date(2007, 10, 18) and minimal.currency == "EUR"

    first, second = iso20022.parse_camt053(sample("camt053/genkgo_camt053.v2.multi.statement.xml"))
    assert (first.statement_id, second.statement_id) == ("253EURNL26VAYB8060476890", "254EURNL26VAYB8060476890")
    assert (second.opening_balance, second.closing_balance) == (Decimal("27.00"), Decimal("20.00"))
    assert second.entries[0].credit_debit == "DBIT" and second.entries[0].amount == Decimal("7.00")

    (v8,) = iso20022.parse_camt053(sample("camt053/genkgo_camt053.v8.xml"))
    (entry,) = v8.entries
    assert entry.entry_ref == "AAAASESS-FP-CN_98765/01" and entry.booking_date == date(2014, 12, 31)
    assert (entry.counterparty_name, entry.counterparty_account) == ("NAME NAME", "NL56AGDH9619008421")
    assert entry.remittance == "4654654654654654" and entry.status == "BOOK"

    (fi,) = iso20022.parse_camt053(sample("camt053/moov_FI_camt_053_sample.xml"))
    assert (fi.opening_balance, fi.closing_balance, len(fi.entries)) == (Decimal("10000.00"), Decimal("23644.83"), 10)
    movement = sum(e.amount if e.credit_debit == "CRDT" else -e.amount for e in fi.entries)
    assert fi.opening_balance + movement == fi.closing_balance

    (postfinance,) = iso20022.parse_camt053(
        sample("camt053/moov_postfinance_camt.053_P_CH2909000000250094239_1110092698_0_2020112503071366.xml")
    )
    assert (postfinance.currency, len(postfinance.entries)) == ("CHF", 5)
    assert (postfinance.opening_balance, postfinance.closing_balance) == (Decimal("211993.19"), Decimal("215112.21"))

    (prowide,) = iso20022.parse_camt053(sample("camt053/prowide_camt.053.001.07_with_AppHdr.xml"))
    assert (prowide.account, prowide.currency, prowide.entries) == ("2345234534", "USD", [])
    assert (prowide.opening_balance, prowide.closing_balance) == (Decimal("234234.00"), Decimal("234299.00"))


def test_camt054_samples():
    for name in ("genkgo_camt054.v2.xml", "genkgo_camt054.v8.xml"):
        (booking,) = iso20022.parse_camt054(sample(f"camt054/{name}"))
        assert (booking.amount, booking.currency, booking.credit_debit) == (Decimal("200000.00"), "SEK", "DBIT")
    fi = iso20022.parse_camt054(sample("camt054/moov_FI_camt_054_sample.xml"))
    assert len(fi) == 6 and fi[-1].status == "INFO" and {b.account for b in fi} == {"FI7433010001222090"}
    (returned,) = iso20022.parse_camt054(
        sample("camt054/moov_postfinance_camt054-returns_p_ch2909000000250094239_1109800798_0_2019052023472022.xml")
    )
    assert (returned.return_reason, returned.end_to_end_id, returned.amount) == (
        "AC01",
        "EndToEndId-004-01-01",
        Decimal("400.00"),
    )
    (credit,) = iso20022.parse_camt054(
        sample("camt054/moov_postfinance_camt.054-Credit_P_CH2909000000250094239_1110092691_0_2019042421291293.xml")
    )
    assert (credit.amount, credit.currency, credit.value_date) == (Decimal("1500.00"), "CHF", date(2019, 4, 25))


def test_status_report_samples():
    (accepted,) = iso20022.parse_status_report(
        sample("pacs002/fedwire_CustomerCreditTransfer_Scenario1_Step2_pacs.002_ACSC.xml")
    )
    assert (accepted.status, accepted.original_message_id) == ("ACSC", "20250310B1QDRCQR000001")
    assert accepted.uetr == "8a562c67-ca16-48ba-b074-65581be6f011"
    (rejected,) = iso20022.parse_status_report(
        sample("pacs002/fedwire_CustomerCreditTransfer_Scenario2_Step2_pacs.002_RJCT.xml")
    )
    assert (rejected.status, rejected.reason_code) == ("RJCT", "E433")
    assert rejected.reason_text.startswith("The routing number of the Instructed Agent")

    (group,) = iso20022.parse_status_report(sample("pain002/moov_postfinance_pain002-epo_p_0_0_0_2018032614401842.xml"))
    assert group == PaymentStatus("MsgId-005", "", "RJCT", "AM10", "904114;ControlSum fehlerhaft")
    for name, message_id, end_to_end_id in (
        ("ch2909000000250094239_1109800799_0_2018032612092784", "MsgId-006", "EndToEndId-006-01-01"),
        ("ch5109000000250092291_1110097605_0_2018031511252307", "MsgId-001", "EndToEndId-001-03-04"),
    ):
        (status,) = iso20022.parse_status_report(sample(f"pain002/moov_postfinance_pain002-epo_p_{name}.xml"))
        assert (status.original_message_id, status.end_to_end_id) == (message_id, end_to_end_id)
        assert (status.status, status.reason_code) == ("RJCT", "AC01")


def test_credit_transfer_samples():
    message_id, (wire,) = iso20022.parse_pacs008(
        sample("pacs008/fedwire_CustomerCreditTransfer_Scenario1_Step1_pacs.008.xml")
    )
    assert message_id == "20250310B1QDRCQR000001"
    assert (wire.amount, wire.currency, wire.value_date) == (Decimal("510000.74"), "USD", date(2025, 3, 10))
    assert wire.debtor == Party("Corporation A", "US", aba="011104238", account="5647772655")
    assert (wire.creditor.aba, wire.creditor.account, wire.remittance) == ("021040078", "567876543", "INV34563")

    message_id, transfers = iso20022.parse_pain001(sample("pain001/moov_musterfile_pain.001_Nov2020.xml"))
    assert message_id == "MsgId-001" and len(transfers) == 8
    assert sum(t.amount for t in transfers) == Decimal("38.00")
    first = transfers[0]
    assert (first.amount, first.currency, first.value_date) == (Decimal("6.20"), "CHF", date(2020, 7, 28))
    assert (first.debtor.iban, first.debtor.bic) == ("CH0309000000250090342", "POFICHBEXXX")
    assert transfers[1].creditor.account == "014295803"  # Othr/Id, no IBAN
    assert transfers[5].amount == Decimal("1.00") and transfers[5].creditor.bic == "AABBCCDDXXX"  # EqvtAmt


def test_prowide_pacs008_v07_is_rejected_for_its_control_sum():
    with pytest.raises(FormatError, match="CtrlSum 10000 does not equal") as info:
        iso20022.parse_pacs008(sample("pacs008/prowide_pacs.008.001.07_with_AppHdr.xml"))
    assert info.value.path == "/message/Document/FIToFICstmrCdtTrf/GrpHdr/CtrlSum" and info.value.line == 31


def test_malformed_iso_samples_are_rejected():
    wrong = sample("malformed/genkgo_camt053.v2.wrong.xml")
    with pytest.raises(FormatError, match="Tag 'Stmt' expected") as info:
        iso20022.parse_camt053(wrong)
    assert (info.value.path, info.value.line) == ("/Document/BkToCstmrStmt", 3)
    with pytest.raises(FormatError, match="Stmt"):
        iso20022.validate(wrong, "camt.053.001.02")

    no_namespace = sample("malformed/moov_invalid_pain_v11.xml")
    with pytest.raises(FormatError, match="no namespace") as info:
        iso20022.parse_status_report(no_namespace)
    assert (info.value.path, info.value.line) == ("/Document", 1)
    with pytest.raises(FormatError, match="no namespace"):
        iso20022.validate(no_namespace, "pain.002.001.11")


# ---------------------------------------------------------------------------------------------
# NACHA


def ach_entries() -> list[nacha.AchEntry]:
    return [
        nacha.AchEntry("SETTLE-0001", Decimal("1234.56"), False, "021000021", "123456789", "ACME CORP"),
        nacha.AchEntry("SETTLE-0002", Decimal("0.01"), True, "011000015", "98765-4321", "BETA LLC"),
        nacha.AchEntry("SETTLE-0003", Decimal("99999999.99"), True, "231380104", "744567899", "GAMMA INC"),
    ]


def build_ach(entries: list[nacha.AchEntry] | None = None, **changes: object) -> str:
    arguments: dict[str, object] = {
        "file_id_modifier": "A",
        "created_at": NOW,
        "origin_routing": "021000021",
        "origin_name": "CLEARHOUSE BANK",
        "company_id": "1234567890",
        "company_name": "CLEARHOUSE",
        "effective_date": date(2025, 3, 11),
        "entries": ach_entries() if entries is None else entries,
    }
    arguments.update(changes)
    return nacha.build_ach_file(**arguments)  # type: ignore[arg-type]


def test_ach_round_trip_with_debits_and_credits():
    text = build_ach()
    assert achkit.validate(text) == {"ok": True, "errors": []}
    lines = text.splitlines()
    assert len(lines) % 10 == 0 and {len(line) for line in lines} == {94}
    parsed = nacha.parse_ach_file(text)
    assert [dataclasses.replace(e, trace_number="") for e in parsed] == ach_entries()
    assert [e.trace_number for e in parsed] == ["021000020000001", "021000020000002", "021000020000003"]
    (batch,) = nacha.read_ach_file(text).batches
    assert (batch.service_class, batch.sec_code, batch.effective_date) == (200, "CCD", date(2025, 3, 11))
    credits_only = build_ach([ach_entries()[0]], sec_code="PPD")
    assert nacha.read_ach_file(credits_only).batches[0].service_class == 220


def test_ach_builder_refuses_bad_input():
    entry = ach_entries()[0]
    cases = [
        (dataclasses.replace(entry, amount=Decimal("1.001")), "2 decimals"),
        (dataclasses.replace(entry, amount=12.5), "decimal.Decimal"),
        (dataclasses.replace(entry, routing="021000022"), "ABA"),
        (dataclasses.replace(entry, trace_ref="lower-case"), "trace_ref"),
        (dataclasses.replace(entry, trace_ref="X" * 16), "trace_ref"),
    ]
    for bad, message in cases:
        with pytest.raises(FormatError, match=message):
            build_ach([bad])
    with pytest.raises(FormatError, match="sec_code"):
        build_ach(sec_code="WEB")


def test_ach_tampered_amount_breaks_the_control_totals():
    text = build_ach()
    tampered = text.replace("0000123456SETTLE-0001", "0000123457SETTLE-0001", 1)
    assert not achkit.validate(tampered)["ok"]
    with pytest.raises(FormatError, match=r"line 6 \(batch control\): total credit '000000123456' != 123457"):
        nacha.parse_ach_file(tampered)


def test_ach_return_code_mapping():
    assert [nacha.ach_return_to_iso(c) for c in ("R01", "R02", "R03", "R04", "R10", "r01")] == [
        "AM04",
        "AC04",
        "AC01",
        "AC01",
        "NARR",
        "AM04",
    ]
    assert [nacha.iso_to_ach_return(c) for c in ("AM04", "AC04", "AC01", "NARR")] == ["R01", "R02", "R03", ""]


def test_real_ach_files_are_read():
    read = {path.name: nacha.read_ach_file(path.read_text()) for path in sorted(NACHA_DIR.glob("*.ach"))}
    assert len(read) == 7

    (credit,) = read["ppd-credit.ach"].entries
    assert (credit.amount, credit.debit, credit.routing, credit.name) == (
        Decimal("1000000.00"),
        False,
        "231380104",
        "Credit Account 1",
    )
    debits = read["ccd-debit.ach"].entries
    assert [(e.trace_ref, e.amount, e.debit) for e in debits] == [
        ("location1234567", Decimal("5000.00"), True),
        ("Fee123456789012", Decimal("1.25"), True),
    ]
    assert read["web-credit.ach"].entries[0].trace_ref == "#789654"

    returns = read["return-WEB.ach"].entries
    assert [(e.return_code, e.amount, e.debit) for e in returns] == [
        ("R01", Decimal("123.54"), True),
        ("R03", Decimal("45.65"), False),
    ]
    assert [nacha.ach_return_to_iso(e.return_code) for e in returns] == ["AM04", "AC01"]
    assert {e.return_code for e in read["dishonored-return.ach"].entries} == {"R68"}
    (noc,) = read["cor-example.ach"].entries
    assert (noc.change_code, noc.return_code, noc.amount) == ("C01", "", Decimal("0.00"))

    bank_file = read["20110805A.ach"]
    assert [b.sec_code for b in bank_file.batches] == ["PPD", "PPD", "IAT", "IAT"]
    assert len(bank_file.entries) == 48
    iat = bank_file.batches[2].entries[0]
    assert (iat.name, iat.trace_ref, iat.amount) == ("HAYDEN BANKS", "A276", Decimal("1090.00"))
    assert len(bank_file.warnings) == 2 and "batch count '000005' != 4" in bank_file.warnings[1]
    assert all(not f.warnings for name, f in read.items() if name != "20110805A.ach")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ppd-debit-invalid-entryDetail-checkDigit.ach", r"line 3 \(entry detail\): receiving DFI routing number"),
        ("adv-invalidFileControl.ach", r"line 2 \(batch header\): service class code '280'"),
        ("return-no-file-header-control.ach", r"line 1 \(batch header\): expected the file header"),
        ("pos-invalidReturnFile.ach", r"line 4 \(addenda 99\): return reason code 'R96'"),
    ],
)
def test_malformed_ach_files_are_rejected(name, expected):
    with pytest.raises(FormatError, match=expected):
        nacha.parse_ach_file((NACHA_DIR / "malformed" / name).read_text())
