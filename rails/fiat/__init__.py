"""The banking rail: the bank network (ACH, wire, SEPA, SWIFT) and which method carries a payment.

- ``bank``: where the bank network answers and its local simulator with the house's accounts open.
- ``routing``: the payment method of a fiat payment and the fallback after a rejection.

Messages are built in ``rails.formats`` (ISO 20022 pain/pacs/camt, NACHA) and sent with the
message-network client of ``rails.messaging``; ``rails.networks`` names both networks.
"""
