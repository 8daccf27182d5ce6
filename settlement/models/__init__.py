from settlement.models.alerts import AlertLevel, OpsAlert
from settlement.models.approvals import ApprovalKind, ApprovalRequest, ApprovalStatus
from settlement.models.audit import TransitionLog, TransitionLogHead
from settlement.models.fees import FeeCharge, FeeChargeStatus, FeeKind, FeeParty, FeeRail, FeeRule, SettlementType
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
from settlement.models.pipeline import ChainTransfer, Notification, ReviewCase, SettlementHalt
from settlement.models.reports import DailyReport
from settlement.models.tokens import ApiToken, AuthFailure, Scope
from settlement.models.trades import SettlementInstruction, Trade

__all__ = [
    "AlertLevel",
    "ApiToken",
    "ApprovalKind",
    "ApprovalRequest",
    "ApprovalStatus",
    "Asset",
    "AuthFailure",
    "BankAccount",
    "ChainTransfer",
    "CustodyAccount",
    "DailyReport",
    "FeeCharge",
    "FeeChargeStatus",
    "FeeKind",
    "FeeParty",
    "FeeRail",
    "FeeRule",
    "Instrument",
    "Journal",
    "LedgerAccount",
    "LedgerLock",
    "Notification",
    "OpsAlert",
    "Participant",
    "ParticipantUser",
    "Posting",
    "ReviewCase",
    "Scope",
    "SettlementHalt",
    "SettlementInstruction",
    "SettlementType",
    "Trade",
    "TransitionLog",
    "TransitionLogHead",
    "WalletAddress",
]
