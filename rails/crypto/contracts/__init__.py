"""On-chain contracts the crypto rails deploy and call; see ``multisend``."""

from rails.crypto.contracts.multisend import (
    MAX_TRANSFERS,
    MultisendError,
    Transfer,
    build_call,
    decode_events,
    deploy,
    recipients_with_code,
)

__all__ = [
    "MAX_TRANSFERS",
    "MultisendError",
    "Transfer",
    "build_call",
    "decode_events",
    "deploy",
    "recipients_with_code",
]
