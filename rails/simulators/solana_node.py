"""A stand-in for a Solana validator's JSON-RPC, executing transactions in LiteSVM (the in-process
Solana VM shipped with solders).

What is real: transactions are real Solana transactions (system-program transfers signed with
ed25519 by solders), executed by the real system program in LiteSVM: signature checks, fees
(5,000 lamports per signature), rent-exemption rules and balances are Solana's own. What is
simulated: there is no cluster, no leader schedule and no gossip; every accepted transaction
lands in its own slot, and the recent blockhash stays valid until it is expired on purpose.

RPCs with Solana's names and shapes: ``sendTransaction`` (base64), ``getSignatureStatuses``,
``getLatestBlockhash``, ``isBlockhashValid``, ``getBalance``, ``getSlot``, ``getFeeForMessage``,
``getSignaturesForAddress``, ``getTransaction`` (json: account keys, pre/post balances, fee).
Controls: ``sim_fund``, ``sim_expire_blockhash``, ``sim_reorg``, ``sim_advance``, ``sim_inject``.

Extra fault switches: ``double_spend`` (just before our transaction lands, someone holding the
key moves the sender's whole balance away, so ours executes and fails for lack of funds, its
fee still charged: the account-model shape of spending the same funds twice) and ``expire``
(the blockhash our transaction carries is expired before it arrives, so it can never land).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from decimal import Decimal

from solders.account import Account
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from rails.simulators.jsonrpc import COMMON_FAULTS, JsonRpcSimulator, RpcError

LAMPORTS = 10**9
FEE_PER_SIGNATURE = 5000
FINALIZED_AFTER = 32
_NOT_LANDED = "not-landed"


@dataclass
class _Landed:
    signature: str
    slot: int
    err: str | None
    before: list[tuple[Pubkey, Account | None]]  # account states before it ran (for reorgs)
    # what getTransaction reports: account keys with their balances before and after, the fee
    keys: list[str] = field(default_factory=list)
    pre: list[int] = field(default_factory=list)
    post: list[int] = field(default_factory=list)
    fee: int = 0
    block_time: int = 0
    raw: bytes = b""  # the transaction's bytes (getTransaction with encoding "base64")


class SolanaNodeSimulator(JsonRpcSimulator):
    FAULTS = (*COMMON_FAULTS, "double_spend", "expire")
    SEND_METHODS = ("sendTransaction",)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        # our own dedupe by signature (below) instead of LiteSVM's, so a reorged transaction can land again
        self.svm = LiteSVM().with_transaction_history(0)
        self.slot = 1
        self.svm.warp_to_slot(self.slot)
        self.landed: dict[str, _Landed] = {}
        self.order: list[str] = []
        self.airdrops: dict[str, _Landed] = {}  # sim_fund credits, listed like transactions
        self.attacker = Keypair()

    def _context(self) -> dict:
        return {"slot": self.slot, "apiVersion": "2.0.0"}

    def _advance(self) -> None:
        self.slot += 1
        self.svm.warp_to_slot(self.slot)

    def _run(self, tx: Transaction) -> _Landed | str | None:
        """Execute ``tx`` in its own slot. None when it cannot land (blockhash unknown)."""
        keys = list(tx.message.account_keys)
        before = [(key, self.svm.get_account(key)) for key in keys]
        result = self.svm.send_transaction(tx)
        err = None
        if isinstance(result, FailedTransactionMetadata):
            err = str(result.err())
            if any(m in err for m in ("BlockhashNotFound", "AlreadyProcessed")):
                return None
            if any(m in err for m in ("InsufficientFundsForFee", "AccountNotFound")):
                return _NOT_LANDED  # the fee payer cannot pay: the cluster drops it, nothing lands
        self._advance()
        landed = _Landed(
            signature=str(tx.signatures[0]),
            slot=self.slot - 1,
            err=err,
            before=before,
            keys=[str(key) for key in keys],
            pre=[account.lamports if account is not None else 0 for _, account in before],
            post=[int(self.svm.get_balance(key) or 0) for key in keys],
            fee=FEE_PER_SIGNATURE * len(tx.signatures),
            block_time=int(time.time()),
            raw=bytes(tx),
        )
        self.landed[landed.signature] = landed
        self.order.append(landed.signature)
        return landed

    # --- Solana RPCs -----------------------------------------------------------------------------
    def rpc_getSlot(self, config: dict | None = None) -> int:
        return self.slot

    def rpc_getLatestBlockhash(self, config: dict | None = None) -> dict:
        return {
            "context": self._context(),
            "value": {"blockhash": str(self.svm.latest_blockhash()), "lastValidBlockHeight": self.slot + 150},
        }

    def rpc_isBlockhashValid(self, blockhash: str, config: dict | None = None) -> dict:
        return {"context": self._context(), "value": blockhash == str(self.svm.latest_blockhash())}

    def rpc_getFeeForMessage(self, message: str, config: dict | None = None) -> dict:
        return {"context": self._context(), "value": FEE_PER_SIGNATURE}

    def rpc_getBalance(self, pubkey: str, config: dict | None = None) -> dict:
        return {"context": self._context(), "value": int(self.svm.get_balance(Pubkey.from_string(pubkey)) or 0)}

    def rpc_sendTransaction(self, encoded: str, config: dict | None = None) -> str:
        encoding = (config or {}).get("encoding", "base58")
        if encoding != "base64":
            raise RpcError(-32602, "only base64 encoded transactions are accepted")
        try:
            tx = Transaction.from_bytes(base64.b64decode(encoded))
        except Exception as exc:
            raise RpcError(-32602, f"failed to deserialize transaction: {exc}") from exc
        signature = str(tx.signatures[0])
        if signature in self.landed:
            return signature  # already processed; skipPreflight clients get the signature back
        if self.take("expire"):
            self.svm.expire_blockhash()
        if self.take("double_spend"):
            self._drain(tx.message.account_keys[0])
        if self.take("drop"):
            return signature
        outcome = self._run(tx)
        if outcome is None:
            raise RpcError(-32002, "Transaction simulation failed: Blockhash not found")
        return signature

    def _drain(self, victim: Pubkey) -> None:
        """Someone holding the victim's key sweeps its balance elsewhere (simulated directly)."""
        account = self.svm.get_account(victim)
        if account is None:
            return
        self.svm.set_account(
            victim,
            Account(lamports=0, data=account.data, owner=account.owner, executable=account.executable),
        )
        self.svm.airdrop(self.attacker.pubkey(), account.lamports)

    def rpc_getSignatureStatuses(self, signatures: list[str], config: dict | None = None) -> dict:
        out: list[dict | None] = []
        for signature in signatures:
            landed = self.landed.get(signature)
            if landed is None:
                out.append(None)
                continue
            depth = self.slot - landed.slot
            out.append(
                {
                    "slot": landed.slot,
                    "confirmations": None if depth >= FINALIZED_AFTER else depth,
                    "err": landed.err,
                    "status": {"Ok": None} if landed.err is None else {"Err": landed.err},
                    "confirmationStatus": "finalized" if depth >= FINALIZED_AFTER else "confirmed",
                }
            )
        return {"context": self._context(), "value": out}

    # --- simulator controls ------------------------------------------------------------------------
    def rpc_sim_fund(self, pubkey: str, sol: Decimal | str) -> str:
        lamports = int(Decimal(str(sol)) * LAMPORTS)
        before = int(self.svm.get_balance(Pubkey.from_string(pubkey)) or 0)
        self.svm.airdrop(Pubkey.from_string(pubkey), lamports)
        self._advance()
        signature = f"airdrop:{pubkey}:{lamports}:{self.slot}"
        self.airdrops[signature] = _Landed(
            signature=signature, slot=self.slot - 1, err=None, before=[], keys=[pubkey], pre=[before],
            post=[before + lamports], block_time=int(time.time()),
        )  # fmt: skip
        return signature

    def rpc_getSignaturesForAddress(self, address: str, config: dict | None = None) -> list[dict]:
        """Newest first, at most ``limit`` (default 1,000), as a validator lists them."""
        limit = int((config or {}).get("limit") or 1000)
        found = [t for t in [*self.landed.values(), *self.airdrops.values()] if address in t.keys]
        found.sort(key=lambda t: t.slot, reverse=True)
        return [
            {
                "signature": t.signature,
                "slot": t.slot,
                "err": t.err,
                "blockTime": t.block_time,
                "confirmationStatus": "finalized" if self.slot - t.slot >= FINALIZED_AFTER else "confirmed",
            }
            for t in found[:limit]
        ]

    def rpc_getTransaction(self, signature: str, config: dict | None = None) -> dict | None:
        t = self.landed.get(signature) or self.airdrops.get(signature)
        if t is None:
            return None
        transaction: object = {"signatures": [t.signature], "message": {"accountKeys": t.keys}}
        if (config or {}).get("encoding") == "base64" and t.raw:
            transaction = [base64.b64encode(t.raw).decode(), "base64"]  # as a validator encodes it
        return {
            "slot": t.slot,
            "blockTime": t.block_time,
            "meta": {"err": t.err, "fee": t.fee, "preBalances": t.pre, "postBalances": t.post},
            "transaction": transaction,
        }

    def rpc_sim_expire_blockhash(self) -> str:
        self.svm.expire_blockhash()
        return str(self.svm.latest_blockhash())

    def rpc_sim_advance(self, slots: int = 1) -> int:
        for _ in range(int(slots)):
            self._advance()
        return self.slot

    def rpc_sim_reorg(self, depth: int = 1) -> int:
        """The last ``depth`` landed transactions vanish (their slots are skipped by the winning
        fork); account states go back to what they were before them."""
        for _ in range(min(int(depth), len(self.order))):
            landed = self.landed.pop(self.order.pop())
            for key, account in reversed(landed.before):
                if account is None:
                    account = Account(lamports=0, data=b"", owner=Pubkey.default(), executable=False)
                self.svm.set_account(key, account)
        return len(self.order)

    def balance_lamports(self, pubkey: str) -> int:
        with self.lock:
            return int(self.svm.get_balance(Pubkey.from_string(pubkey)) or 0)
