"""Bitcoin rail: python-bitcoinlib builds and signs real transactions and talks to the node with
its own JSON-RPC client (``bitcoin.rpc.RawProxy``), against bitcoind or the local simulator.

Transfers are legacy P2PKH transactions (one payment output, one change output back to the
sender). A house wallet spends a chain of its own change outputs: the wallet's stored state is
the outpoint of its latest change (``state_after``), so many transfers can be signed before the
first is broadcast, and a rebroadcast always sends the very same bytes. When a wallet has no
change yet (first spend, or after its chain was broken by a double spend) the rail spends what
the node lists as unspent for the address.

The network fee is fixed at signing (fee rate from ``estimatesmartfee`` times the transaction's
size, never more than the reserve held on the ledger) and reported by ``status``.
"""

from __future__ import annotations

import http.client
from decimal import ROUND_CEILING, Decimal
from typing import Any
from urllib.parse import urlparse

from bitcoin.core import COIN, CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, b2lx, b2x, lx
from bitcoin.core.key import CPubKey
from bitcoin.core.script import SIGHASH_ALL, CScript, SignatureHash
from bitcoin.rpc import JSONRPCError, RawProxy
from bitcoin.wallet import CBitcoinAddress, CBitcoinAddressError, P2PKHBitcoinAddress

from rails.base import RailRejected, RailTimeout, RailUnavailable, SignedTransfer, TransferStatus
from rails.crypto.bitcoin_network import select_network
from rails.crypto.btc_payouts import BitcoinPayouts, payout_outputs, payout_outputs_from
from rails.crypto.signing import keystore

SATS = 8
MAX_INPUTS = 5
# P2PKH sizes in bytes: 10 overhead, 148 per input, 34 per output
MAX_SIZE = 10 + 148 * MAX_INPUTS + 34 * 2
NOT_FOUND = -5
ALREADY_CONFIRMED = -27
CONFLICTS = ("missingorspent", "mempool-conflict", "already spent")


def _size(inputs: int, outputs: int) -> int:
    return 10 + 148 * inputs + 34 * outputs


def broadcast_error(error: dict[str, Any]) -> RailRejected | None:
    """None when the node's refusal means the transaction is already known or confirmed, or an
    input is gone (ours confirmed earlier, or a double spend: status decides); else the rejection."""
    message = str(error.get("message", "")).lower()
    if error.get("code") == ALREADY_CONFIRMED or "already" in message:
        return None
    if any(marker in message for marker in CONFLICTS):
        return None
    return RailRejected(f"bitcoin node refused the transaction: {error}")


class BitcoinRail(BitcoinPayouts):
    decimals = SATS
    symbol = "BTC"
    base_unit = "satoshi"
    chain = "bitcoin"

    def __init__(self, url: str, *, network: str = "regtest", timeout: float = 10) -> None:
        select_network(network)
        self.url = url
        self.timeout = timeout
        self.network = network

    # --- transport -------------------------------------------------------------------------------
    def rpc(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call on a fresh connection (RawProxy is not thread safe)."""
        proxy = self.proxy()
        try:
            return proxy._call(method, *params)
        except JSONRPCError:
            raise
        except TimeoutError as exc:
            raise RailTimeout(f"bitcoin node: {method} timed out") from exc
        except (ConnectionError, OSError, http.client.HTTPException, ValueError) as exc:
            raise RailUnavailable(f"bitcoin node: {method} failed: {exc}") from exc
        finally:
            proxy.close()

    def proxy(self) -> RawProxy:
        """A fresh client connection: with the URL's credentials, or any (the simulator)."""
        if urlparse(self.url).username:
            return RawProxy(service_url=self.url, timeout=self.timeout)
        return _open_proxy(self)

    # --- units and addresses -----------------------------------------------------------------------
    @staticmethod
    def valid_address(address: str) -> bool:
        try:
            CBitcoinAddress(address)
        except (CBitcoinAddressError, ValueError):
            return False
        return True

    def _fee_rate(self) -> Decimal:
        """Satoshis per byte the node suggests for confirmation within two blocks."""
        estimate = self.rpc("estimatesmartfee", 2)
        per_kvb = Decimal(str(estimate.get("feerate") or "0.0001"))
        return (per_kvb * COIN / 1000).quantize(Decimal(1), rounding=ROUND_CEILING)

    def fee_reserve(self) -> Decimal:
        """Most a transfer may cost now: twice the suggested rate for the largest transfer we build."""
        return self.from_base_units(int(self._fee_rate() * 2 * MAX_SIZE))

    # --- signing -----------------------------------------------------------------------------------
    def _inputs(self, address: str, state: dict[str, Any]) -> list[tuple[str, int, int]]:
        if state.get("txid"):
            return [(state["txid"], int(state["vout"]), int(state["value"]))]
        unspent = self.rpc("listunspent", 0, 9_999_999, [address])
        coins = sorted(
            ((u["txid"], int(u["vout"]), self.to_base_units(Decimal(str(u["amount"])))) for u in unspent),
            key=lambda coin: -coin[2],
        )
        return coins[:MAX_INPUTS]

    def sign_transfer(
        self,
        *,
        from_address: str,
        to_address: str,
        amount: Decimal,
        nonce: int,
        fee_cap: Decimal,
        state: dict[str, Any] | None = None,
        reference: str = "",
    ) -> SignedTransfer:
        coins = self._inputs(from_address, state or {})
        value = self.to_base_units(amount)
        fee = int(self._fee_rate() * _size(len(coins), 2))
        if fee > self.to_base_units(fee_cap):
            raise RailRejected(f"network fee {self.from_base_units(fee)} BTC exceeds the reserve {fee_cap}")
        total = sum(coin[2] for coin in coins)
        change = total - value - fee
        if change < 0:
            raise RailRejected(
                f"{from_address} can spend {self.from_base_units(total)} BTC on chain, "
                f"needs {self.from_base_units(value + fee)}"
            )
        sender_script = CBitcoinAddress(from_address).to_scriptPubKey()
        outputs = [CMutableTxOut(value, CBitcoinAddress(to_address).to_scriptPubKey())]
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
            state_after={"txid": txid, "vout": 1, "value": change} if change > 0 else {},
        )

    # --- network -----------------------------------------------------------------------------------
    def broadcast(self, raw: str) -> str:
        from bitcoin.core import CTransaction, x

        txid = b2lx(CTransaction.deserialize(x(raw)).GetTxid())
        try:
            return str(self.rpc("sendrawtransaction", raw))
        except JSONRPCError as exc:
            error = broadcast_error(exc.error)
            if error is None:
                return txid  # known or confirmed already, or an input is gone: status() decides
            raise error from exc

    def status(self, *, tx_hash: str, sender: str, raw: str = "") -> TransferStatus:
        try:
            info = self.rpc("getrawtransaction", tx_hash, 2)
        except JSONRPCError as exc:
            if exc.error.get("code") != NOT_FOUND:
                raise RailUnavailable(f"bitcoin node: {exc.error}") from exc
            return TransferStatus(found=False, conflicted=bool(raw) and self._inputs_spent_elsewhere(raw))
        return self.status_of(info)

    @staticmethod
    def status_of(info: dict[str, Any]) -> TransferStatus:
        """The status of a transaction the node knows (``getrawtransaction`` verbose 2)."""
        confirmations = int(info.get("confirmations") or 0)
        fee = info.get("fee")
        return TransferStatus(
            found=True,
            confirmations=confirmations,
            block_number=info.get("blockheight") if confirmations else None,
            succeeded=True if confirmations else None,
            fee=Decimal(str(fee)) if fee is not None else None,
        )

    def _inputs_spent_elsewhere(self, raw: str) -> bool:
        """Our transaction is unknown: is any outpoint it spends known to the chain and spent?"""
        from bitcoin.core import CTransaction, x

        for txin in CTransaction.deserialize(x(raw)).vin:
            prev = b2lx(txin.prevout.hash)
            try:
                self.rpc("getrawtransaction", prev, 1)
            except JSONRPCError:
                continue  # the funding transaction itself is gone (reorg): not a double spend
            if self.rpc("gettxout", prev, txin.prevout.n, True) is None:
                return True
        return False

    def head(self) -> int:
        return int(self.rpc("getblockcount"))

    def transactions(self, *, addresses: set[str], first_block: int, last_block: int) -> list[dict[str, Any]]:
        """Every transaction of blocks ``first_block..last_block`` that spends from or pays to one
        of ``addresses``: the chain's own list, for reconciliation (``getblock`` verbosity 3, which
        carries each input's prevout). In the UTXO model a transfer from our wallet is the value
        it pays to other addresses (its change and fee excluded), ``from`` the first of our
        addresses among its inputs; a payment in is what it pays to the first of our addresses."""
        ours = {a.lower() for a in addresses}
        head = self.head()
        found = []
        for height in range(max(first_block, 1), last_block + 1):
            block = self.rpc("getblock", self.rpc("getblockhash", height), 3)
            for tx in block["tx"]:
                spenders = [(vin.get("prevout") or {}).get("scriptPubKey", {}).get("address", "") for vin in tx["vin"]]
                outputs = [(o["scriptPubKey"].get("address", ""), Decimal(str(o["value"]))) for o in tx["vout"]]
                sender = next((a for a in spenders if a.lower() in ours), "")
                payout_rows = payout_outputs_of(tx) if sender else None
                if payout_rows is not None:
                    for index, reference, to, sats in payout_rows:
                        found.append(
                            {
                                "tx_hash": tx["txid"],
                                "from": sender,
                                "to": to,
                                "amount": self.from_base_units(sats),
                                "block": height,
                                "confirmations": head - height + 1,
                                "timestamp": int(block.get("time") or 0),
                                "succeeded": True,
                                "index": index,
                                "reference": reference,
                            }
                        )
                    continue
                if sender:
                    paid = [(a, v) for a, v in outputs if a != sender]
                    receiver, amount = (paid[0][0] if paid else sender), sum((v for _, v in paid), Decimal(0))
                else:
                    receiver = next((a for a, _ in outputs if a.lower() in ours), "")
                    if not receiver:
                        continue
                    amount = sum((v for a, v in outputs if a == receiver), Decimal(0))
                    sender = next((a for a in spenders if a), "")
                found.append(
                    {
                        "tx_hash": tx["txid"],
                        "from": sender,
                        "to": receiver,
                        "amount": amount,
                        "block": height,
                        "confirmations": head - height + 1,
                        "timestamp": int(block.get("time") or 0),
                        "succeeded": True,  # a mined Bitcoin transaction cannot revert
                    }
                )
        return found

    def balance(self, address: str) -> Decimal:
        unspent = self.rpc("listunspent", 0, 9_999_999, [address])
        return sum((Decimal(str(u["amount"])) for u in unspent), Decimal(0))


def payout_outputs_of(tx: dict[str, Any]) -> list[tuple[int, str, str, int]] | None:
    """payout_outputs of a decoded transaction (``getblock`` verbosity 2+): from its hex when the
    node gives it, else from the outputs' scripts."""
    if tx.get("hex"):
        return payout_outputs(str(tx["hex"]))
    outputs = [(int(Decimal(str(o["value"])) * COIN), bytes.fromhex(o["scriptPubKey"]["hex"])) for o in tx["vout"]]
    return payout_outputs_from(outputs)


def _open_proxy(rail: BitcoinRail) -> RawProxy:
    """RawProxy insists on credentials (bitcoind cookie); the simulator takes any."""
    parsed = urlparse(rail.url)
    url = f"{parsed.scheme}://rpc:rpc@{parsed.hostname}:{parsed.port}{parsed.path}"
    return RawProxy(service_url=url, timeout=rail.timeout)
