from ledger.models.audit import AuditBatch, TransitionLog, TransitionLogHead
from ledger.models.ledger import Journal, LedgerAccount, LedgerLock, Posting

__all__ = ["AuditBatch", "Journal", "LedgerAccount", "LedgerLock", "Posting", "TransitionLog", "TransitionLogHead"]
