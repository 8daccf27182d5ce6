"""ISO 20022 messages for the fiat and custody rails: build, validate and parse.

Messages and versions
---------------------
- pain.001 (customer credit transfer initiation): built as pain.001.001.03 with sepaxml (SEPA, EUR);
  read in .001.03 (including the SIX Swiss ``pain.001.001.03.ch.02`` namespace, validated against the
  ISO .001.03 XSD after mapping the namespace) and .001.09.
- pacs.008 (FI to FI customer credit transfer): built and read as pacs.008.001.08, either as a Fedwire
  Funds wire (USD, agents by ABA routing number, accounts by account number) or as a cross-border
  SWIFT transfer (agents by BIC, accounts by IBAN, any currency). pacs.008.001.07 is read structurally.
- pain.002 / pacs.002 (payment status reports): built as pain.002.001.10 and pacs.002.001.10.
- camt.053 / camt.054 (statement, debit/credit notification): built as .001.08.
- sese.023 / sese.025 (securities settlement instruction, confirmation): ``sese``, .001.11.

Validation policy of the parsers: a document of a version we ship an XSD for (``SCHEMAS``) is
validated against that XSD first; a version we have no XSD for is read structurally (every element
the parser needs must be present, amounts and codes are checked, but nothing else is). On top of the
XSD, every amount read must not carry more decimals than its currency has (ISO 20022 rule
"CurrencyAmount", which the XSDs do not enforce), and declared money control totals (CtrlSum,
TtlIntrBkSttlmAmt) must equal the sum of the transactions.

A document may come bare (root ``Document``) or wrapped together with a business application
header (``<AppHdr>`` head.001) under any root element, as the prowide samples are.

Modules, one per message family, on two shared ones:

- ``documents``: XML parsing, element lookup, message detection, XSD validation, the builder;
- ``fields``: currency amounts, dates, text, identifiers (IBAN, BIC, ABA), parties, control sums;
- ``records``: the dataclasses messages are built from and parsed into;
- ``pain`` (pain.001, pain.002), ``pacs`` (pacs.008, pacs.002), ``status`` (what both status
  reports share, and their reader), ``camt`` (camt.053, camt.054), ``sese`` (sese.023, sese.025).

The underscore helpers of ``documents`` and ``fields`` are this package's own kit; code outside
the package uses the names exported here (and ``sese``'s). Every rejection is a
``rails.formats.errors.FormatError``.
"""

from __future__ import annotations

from rails.formats.errors import FormatError
from rails.formats.iso20022.camt import build_camt053, build_camt054, parse_camt053, parse_camt054
from rails.formats.iso20022.documents import SCHEMAS, detect, validate
from rails.formats.iso20022.fields import minor_units
from rails.formats.iso20022.pacs import build_pacs002, build_pacs008, parse_pacs008
from rails.formats.iso20022.pain import build_pain001, build_pain002, parse_pain001
from rails.formats.iso20022.records import Balance, Booking, CreditTransfer, Party, PaymentStatus, Statement
from rails.formats.iso20022.status import parse_status_report

__all__ = [
    "SCHEMAS",
    "Balance",
    "Booking",
    "CreditTransfer",
    "FormatError",
    "Party",
    "PaymentStatus",
    "Statement",
    "build_camt053",
    "build_camt054",
    "build_pacs002",
    "build_pacs008",
    "build_pain001",
    "build_pain002",
    "detect",
    "minor_units",
    "parse_camt053",
    "parse_camt054",
    "parse_pacs008",
    "parse_pain001",
    "parse_status_report",
    "validate",
]
