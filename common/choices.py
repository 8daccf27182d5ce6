from django.db import models


class AssetKind(models.TextChoices):
    CRYPTO = "crypto", "Crypto"
    FIAT = "fiat", "Fiat"
    SECURITY = "security", "Security"


class AssetClass(models.TextChoices):
    """A netting window's asset class (``settlement.routing.asset_class_of`` picks a trade's)."""

    FIAT = "fiat", "Fiat currency"
    SECURITY = "security", "Securities"
    CRYPTO = "crypto", "Crypto (T+n)"


class SettlementCycle(models.IntegerChoices):
    T0 = 0, "T+0"
    T1 = 1, "T+1"
    T2 = 2, "T+2"


class MarketCalendar(models.TextChoices):
    """Business-day calendars. ``ALWAYS`` settles every day (crypto)."""

    ALWAYS = "24x7", "Every day (24x7)"
    NYSE = "NYSE", "New York Stock Exchange"
    FED = "FED", "US Federal Reserve (Fedwire/ACH)"
    TARGET = "TARGET", "ECB TARGET2 (EUR)"
    LSE = "LSE", "London Stock Exchange"


class Chain(models.TextChoices):
    BITCOIN = "bitcoin", "Bitcoin"
    ETHEREUM = "ethereum", "Ethereum"
    SOLANA = "solana", "Solana"


class AccountKind(models.TextChoices):
    AVAILABLE = "available", "Available"
    LOCKED = "locked", "Locked"
    SYSTEM = "system", "System"


class JournalKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit (value enters)"
    LOCK = "lock", "Lock (available → locked)"
    POST = "post", "Post (locked → counterparty)"
    VOID = "void", "Void (locked → available)"
    ADJUST = "adjust", "Adjustment (reconciliation, approved by a second person)"
    FEE = "fee", "Fee (a cost passed on to a participant)"


class LockStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    POSTED = "posted", "Posted"
    VOIDED = "voided", "Voided"


class InstructionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    LOCKED = "locked", "Locked"
    PROCESSING = "processing", "Processing"
    SETTLED = "settled", "Settled"
    FAILED = "failed", "Failed"
    REVERSED = "reversed", "Reversed"
    CANCELLED = "cancelled", "Cancelled"


class Leg(models.TextChoices):
    DELIVERY = "delivery", "Delivery (base asset, seller → buyer)"
    PAYMENT = "payment", "Payment (quote currency, buyer → seller)"


class CaseKind(models.TextChoices):
    ESCALATION = "escalation", "Escalation (manual review)"
    INVESTIGATION = "investigation", "Investigation"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class AlertLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
