"""Adapters to the outside networks, mirroring the seed's three settlement networks.

- ``crypto/``: the blockchains (Ethereum, Bitcoin, Solana) behind the small interface of
  ``base.py`` (sign, broadcast, status, balance, and the errors every rail raises);
- ``fiat/``: the bank network (where it answers, its local simulator) and payment routing
  (ACH, wire, SEPA, SWIFT and the fallback after a rejection);
- ``custody/``: the custodian that settles securities deliveries;
- ``messaging.py``: the HTTP client both message networks (bank, custodian) speak, and
  ``networks.py``: those two networks by name;
- ``formats/``: the pure message formats (ISO 20022 per message family, NACHA);
- ``simulators/``: chain nodes, the bank network and the custodian, served on loopback.

``rails`` imports no app (settlement, netting, reconciliation): what the apps need is passed in
or read from the settings; business-day rules come from the pure ``calendars`` package.
"""
