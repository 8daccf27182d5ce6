from ledger.models.audit import TransitionLog, TransitionLogHead
from ledger.models.ledger import Journal, LedgerAccount, LedgerLock, Posting

__all__ = ["Journal", "LedgerAccount", "LedgerLock", "Posting", "TransitionLog", "TransitionLogHead"]
