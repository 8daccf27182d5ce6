"""Pure-Python message formats for the fiat and custody rails (no Django, no database).

- ``iso20022``: pain.001 / pacs.008 credit transfers, pain.002 / pacs.002 status reports and
  camt.053 / camt.054 statements and notifications, validated against the XSDs in ``xsd/``.
- ``nacha``: NACHA ACH files (build with achkit, strict reader with line-level errors).
- ``sese``: sese.023 settlement instructions and sese.025 confirmations for custody.

Every amount is a ``decimal.Decimal``; every rejection is a ``FormatError`` (a ``ValueError``).
"""
