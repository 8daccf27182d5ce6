"""The custody rail: the custodian that settles securities deliveries (sese.023 in, sese.025 out).

- ``custodian``: where the custodian answers and its local simulator with the house's account open.

Messages are built in ``rails.formats.iso20022.sese`` and sent with the message-network client of
``rails.messaging``; ``rails.networks`` names both networks.
"""
