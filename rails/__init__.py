"""Adapters to the outside networks (chains, banks, custodians) behind one small interface.

Each rail implements ``submit`` (hand over an instruction, idempotent by its reference),
``status`` (what the network says about it) and ``statement`` (what the network says happened).
The crypto, fiat and custody rails arrive with their issues.
"""
