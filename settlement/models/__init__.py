from settlement.models.batch import BatchStatus, ChainTransaction, CryptoBatch
from settlement.models.fees import FeeCharge, FeeChargeStatus, FeeKind, FeeParty, FeeRail, FeeRule, SettlementType
from settlement.models.pipeline import ChainTransfer, SettlementHalt
from settlement.models.tokens import ApiToken, AuthFailure, Scope
from settlement.models.trades import SettlementInstruction, Trade

__all__ = [
    "ApiToken",
    "AuthFailure",
    "BatchStatus",
    "ChainTransaction",
    "ChainTransfer",
    "CryptoBatch",
    "FeeCharge",
    "FeeChargeStatus",
    "FeeKind",
    "FeeParty",
    "FeeRail",
    "FeeRule",
    "Scope",
    "SettlementHalt",
    "SettlementInstruction",
    "SettlementType",
    "Trade",
]
