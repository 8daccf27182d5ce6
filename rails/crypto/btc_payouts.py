"""Bitcoin payouts: one transaction pays many settlements.

Layout of a payout transaction (documented, ``payouts_in`` and ``transactions`` rely on it):
output ``i`` (0 <= i < n) pays payout ``i``; output ``n`` is an OP_RETURN carrying the
references, ``REFS_MAGIC`` then per payout one length byte and its ASCII (in pushes of at most
520 bytes); output ``n + 1`` is the change back to the sender, when there is any (the wallet's
next ``state``). Inputs: the wallet's change chain, as for single transfers. One OP_RETURN of up
to ~65 bytes per payout is standard on Bitcoin Core 30+ (``-datacarriersize`` 100 000); older
nodes need ``-datacarriersize`` raised. ``max_payouts`` = 800 keeps the worst case (64-character
references, 5 inputs) under the 100 kvB standard size.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CTransaction, b2lx, b2x, lx, x
from bitcoin.core.key import CPubKey
from bitcoin.core.script import OP_RETURN, SIGHASH_ALL, CScript, SignatureHash
from bitcoin.rpc import JSONRPCError
from bitcoin.wallet import CBitcoinAddress, CBitcoinAddressError, P2PKHBitcoinAddress

from rails.base import (
    BaseUnits,
    Payout,
    RailError,
    RailRejected,
    RailTimeout,
    RailUnavailable,
    SignedTransfer,
    TransferStatus,
)
from rails.crypto.signing import keystore

if TYPE_CHECKING:
    from bitcoin.rpc import RawProxy

MAX_PAYOUTS = 800
REFS_MAGIC = b"CHREFS1"
PUSH_MAX = 520
_MAX_INPUTS = 5
# bytes of the OP_RETURN output a batch of one can need: value 8, script length 1-3, OP_RETURN 1,
# push opcodes, magic 7, one length byte and 64 reference bytes
_OP_RETURN_ONE = 8 + 3 + 1 + 2 + len(REFS_MAGIC) + 1 + 64
PAYOUT_RESERVE_BYTES = 10 + 148 * _MAX_INPUTS + 34 * 2 + 2 + _OP_RETURN_ONE


def references_script(references: Sequence[str]) -> CScript:
    data = bytearray(REFS_MAGIC)
    for reference in references:
        raw = reference.encode("ascii")
        data += bytes([len(raw)]) + raw
    chunks = [bytes(data[i : i + PUSH_MAX]) for i in range(0, len(data), PUSH_MAX)]
    return CScript([OP_RETURN, *chunks])


def references_of(script: bytes, count: int) -> list[str] | None:
    """The references an OP_RETURN script of ``references_script`` carries, or None."""
    try:
        ops = list(CScript(script))
    except Exception:  # not a parseable script
        return None
    if not ops or ops[0] != OP_RETURN or not all(isinstance(op, bytes) for op in ops[1:]):
        return None
    data = b"".join(op for op in ops[1:] if isinstance(op, bytes))
    if not data.startswith(REFS_MAGIC):
        return None
    pos, found = len(REFS_MAGIC), []
    for _ in range(count):
        if pos >= len(data):
            return None
        size = data[pos]
        raw = data[pos + 1 : pos + 1 + size]
        if len(raw) != size:
            return None
        found.append(raw.decode("ascii", errors="replace"))
        pos += 1 + size
    return found if pos == len(data) else None


def _varint_size(n: int) -> int:
    return 1 if n < 0xFD else 3 if n <= 0xFFFF else 5


def payout_size(inputs: int, payouts: int, op_return_script: int) -> int:
    """Upper bound of the serialised size: 148 per P2PKH input (73-byte signature), 34 per
    P2PKH output (payouts and change), the OP_RETURN output, counts as varints."""
    outputs = payouts + 2
    return (
        8
        + _varint_size(inputs)
        + 148 * inputs
        + _varint_size(outputs)
        + 34 * (payouts + 1)
        + 8
        + _varint_size(op_return_script)
        + op_return_script
    )


def _address(script: bytes) -> str:
    try:
        return str(CBitcoinAddress.from_scriptPubKey(CScript(script)))
    except (CBitcoinAddressError, ValueError):
        return ""


def payout_outputs(raw: str) -> list[tuple[int, str, str, int]] | None:
    """(index, reference, address, satoshis) per payout of a payout transaction's bytes, or None
    when the transaction is not one (no references output where the layout puts it)."""
    tx = CTransaction.deserialize(x(raw))
    return payout_outputs_from([(int(out.nValue), bytes(out.scriptPubKey)) for out in tx.vout])


def payout_outputs_from(outputs: Sequence[tuple[int, bytes]]) -> list[tuple[int, str, str, int]] | None:
    for n, (value, script) in enumerate(outputs):
        if value == 0 and script[:1] == bytes([OP_RETURN]):
            references = references_of(script, n)
            if references is None:
                return None
            return [(i, references[i], _address(outputs[i][1]), outputs[i][0]) for i in range(n)]
    return None


class BitcoinPayouts(BaseUnits):
    """Mixed into BitcoinRail: ``sign_payouts``, ``broadcast_many``, ``status_many``, ``payouts_in``."""

    max_payouts = MAX_PAYOUTS

    if TYPE_CHECKING:  # provided by BitcoinRail

        def rpc(self, method: str, *params: Any) -> Any: ...
        def proxy(self) -> RawProxy: ...
        def _fee_rate(self) -> Decimal: ...
        def _inputs(self, address: str, state: dict[str, Any]) -> list[tuple[str, int, int]]: ...
        def status(self, *, tx_hash: str, sender: str, raw: str = "") -> TransferStatus: ...
        @staticmethod
        def status_of(info: dict[str, Any]) -> TransferStatus: ...

    def payout_fee_reserve(self) -> Decimal:
        """Per payout: twice the suggested rate for a batch of one with the most inputs; a batch
        of n is never larger than n of those."""
        return self.from_base_units(int(self._fee_rate() * 2 * PAYOUT_RESERVE_BYTES))

    def rpc_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[tuple[Any, dict[str, Any] | None]]:
        """One JSON-RPC batch request: (result, error) per call, in order."""
        import http.client

        if not calls:
            return []
        proxy = self.proxy()
        try:
            answers = proxy._batch(
                [{"version": "1.1", "method": m, "params": p, "id": i} for i, (m, p) in enumerate(calls)]
            )
        except TimeoutError as exc:
            raise RailTimeout("bitcoin node: batch timed out") from exc
        except (ConnectionError, OSError, http.client.HTTPException, ValueError, JSONRPCError) as exc:
            raise RailUnavailable(f"bitcoin node: batch failed: {exc}") from exc
        finally:
            proxy.close()
        if not isinstance(answers, list):
            raise RailUnavailable(f"bitcoin node: batch answered {str(answers)[:200]}")
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        if any(i not in by_id for i in range(len(calls))):
            raise RailUnavailable("bitcoin node: batch answer incomplete")
        return [(by_id[i].get("result"), by_id[i].get("error")) for i in range(len(calls))]

    def sign_payouts(
        self,
        *,
        from_address: str,
        payouts: Sequence[Payout],
        nonce: int,
        fee_cap: Decimal,
        state: dict[str, Any] | None = None,
    ) -> SignedTransfer:
        if not 0 < len(payouts) <= self.max_payouts:
            raise RailRejected(f"{len(payouts)} payouts; one transaction carries 1 to {self.max_payouts}")
        try:
            payments = [
                CMutableTxOut(self.to_base_units(p.amount), CBitcoinAddress(p.to_address).to_scriptPubKey())
                for p in payouts
            ]
        except (CBitcoinAddressError, ValueError) as exc:
            raise RailRejected(f"invalid payout: {exc}") from exc
        refs = CMutableTxOut(0, references_script([p.reference for p in payouts]))
        coins = self._inputs(from_address, state or {})
        fee = int(self._fee_rate() * payout_size(len(coins), len(payouts), len(refs.scriptPubKey)))
        if fee > self.to_base_units(fee_cap):
            raise RailRejected(f"network fee {self.from_base_units(fee)} BTC exceeds the reserve {fee_cap}")
        total = sum(coin[2] for coin in coins)
        change = total - sum(int(out.nValue) for out in payments) - fee
        if change < 0:
            raise RailRejected(
                f"{from_address} can spend {self.from_base_units(total)} BTC on chain, "
                f"needs {self.from_base_units(total - change)}"
            )
        sender_script = CBitcoinAddress(from_address).to_scriptPubKey()
        outputs = [*payments, refs]
        if change > 0:
            outputs.append(CMutableTxOut(change, sender_script))
        tx = CMutableTransaction([CMutableTxIn(COutPoint(lx(txid), vout)) for txid, vout, _ in coins], outputs)
        for index in range(len(coins)):
            digest = SignatureHash(sender_script, tx, index, SIGHASH_ALL)
            signature, pubkey = keystore().sign_bitcoin_digest(from_address, digest)
            if P2PKHBitcoinAddress.from_pubkey(CPubKey(pubkey)) != CBitcoinAddress(from_address):
                raise RailRejected(f"the key held for {from_address} does not match the address")
            tx.vin[index].scriptSig = CScript([signature + bytes([SIGHASH_ALL]), pubkey])
        txid = b2lx(tx.GetTxid())
        return SignedTransfer(
            tx_hash=txid,
            raw=b2x(tx.serialize()),
            nonce=nonce,
            fee_cap=self.from_base_units(fee),
            state_after={"txid": txid, "vout": len(outputs) - 1, "value": change} if change > 0 else {},
        )

    def broadcast_many(self, raws: Sequence[str]) -> list[RailError | None]:
        from rails.crypto.bitcoin import broadcast_error

        answers = self.rpc_many([("sendrawtransaction", [raw]) for raw in raws])
        return [None if error is None else broadcast_error(error) for _, error in answers]

    def status_many(self, txs: Sequence[tuple[str, str, str]]) -> list[TransferStatus]:
        """One batch of ``getrawtransaction``; the conflict check only for the unknown ones."""
        answers = self.rpc_many([("getrawtransaction", [tx_hash, 2]) for tx_hash, _, _ in txs])
        out = []
        for (tx_hash, sender, raw), (info, error) in zip(txs, answers, strict=True):
            if error is not None:
                if error.get("code") != -5:
                    raise RailUnavailable(f"bitcoin node: {error}")
                out.append(self.status(tx_hash=tx_hash, sender=sender, raw=raw))
                continue
            out.append(self.status_of(info))
        return out

    def payouts_in(self, tx_hash: str) -> list[tuple[int, str, str, Decimal]]:
        """(index, reference, to_address, amount) per payout, from the transaction's outputs."""
        try:
            info = self.rpc("getrawtransaction", tx_hash, 1)
        except JSONRPCError as exc:
            raise RailTimeout(f"bitcoin node does not know {tx_hash}: {exc.error}") from exc
        rows = payout_outputs(str(info["hex"]))
        if rows is None:
            raise RailRejected(f"{tx_hash} is not a payout transaction")
        return [(i, reference, address, self.from_base_units(sats)) for i, reference, address, sats in rows]
