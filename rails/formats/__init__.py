"""Pure-Python message formats for the fiat and custody rails (no Django, no database).

- ``iso20022``: a package, one module per message family: ``pain`` (pain.001 credit transfer
  initiation, pain.002 status report), ``pacs`` (pacs.008 credit transfer, pacs.002 status
  report), ``camt`` (camt.053 statements, camt.054 notifications), ``sese`` (sese.023 settlement
  instructions, sese.025 confirmations for custody), on the shared ``documents`` (parse, XSD
  validation against ``iso20022/xsd/``, builder), ``fields``, ``records`` and ``status`` modules.
- ``nacha``: NACHA ACH files (``build`` with achkit, strict ``reader`` with line-level errors).
- ``errors``: ``FormatError``, the one error every format raises.

Every amount is a ``decimal.Decimal``; every rejection is a ``FormatError`` (a ``ValueError``).
"""
