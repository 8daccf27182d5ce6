from settlement.models.audit import TransitionLog, TransitionLogHead
from settlement.models.ledger import Journal, LedgerAccount, LedgerLock, Posting
from settlement.models.participants import (
    Asset,
    BankAccount,
    CustodyAccount,
    Instrument,
    Participant,
    ParticipantUser,
    WalletAddress,
)
from settlement.models.trades import SettlementInstruction, Trade

__all__ = [
    "Asset",
    "BankAccount",
    "CustodyAccount",
    "Instrument",
    "Journal",
    "LedgerAccount",
    "LedgerLock",
    "Participant",
    "ParticipantUser",
    "Posting",
    "SettlementInstruction",
    "Trade",
    "TransitionLog",
    "TransitionLogHead",
    "WalletAddress",
]
