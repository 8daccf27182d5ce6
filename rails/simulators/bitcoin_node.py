"""A stand-in for bitcoind's JSON-RPC (no bitcoind can run here), regtest flavoured.

What is real: transactions are real Bitcoin transactions built and signed with python-bitcoinlib;
the simulator deserialises them, checks every input exists and is unspent (confirmed or in the
mempool), verifies every signature with python-bitcoinlib's script interpreter, checks value in
>= value out, and keeps a UTXO set. What is simulated: there is no proof of work, no P2P network
and no wallet beyond "watch every address"; blocks are mined on demand (``automine``: a block
per accepted transaction, like anvil) or with ``sim_mine``.

RPCs with bitcoind's names and shapes: ``sendrawtransaction``, ``getrawtransaction`` (verbose 1/2;
2 includes ``fee``), ``getblockcount``, ``gettxout``, ``gettransaction``, ``listunspent``,
``estimatesmartfee``, ``getblockchaininfo``, ``getblockhash``, ``getblock`` (verbosity 1-3; 3 with
each input's prevout). Test/demo controls: ``sim_fund``, ``sim_mine``,
``sim_reorg``, ``sim_inject``, ``sim_clear``, ``sim_automine``.

Extra fault switches: ``double_spend`` (before our transaction arrives, another transaction
spending the same inputs is mined; ours is then refused as a conflict) and ``reorg`` via
``sim_reorg(depth)`` (the last ``depth`` blocks vanish with their transactions, as when another
branch wins and our transactions were never relayed to it).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal

from bitcoin import SelectParams
from bitcoin.core import COIN, CTransaction, b2lx, x
from bitcoin.core.script import CScript
from bitcoin.core.scripteval import SCRIPT_VERIFY_P2SH, VerifyScript, VerifyScriptError
from bitcoin.wallet import CBitcoinAddress

from rails.simulators.jsonrpc import COMMON_FAULTS, JsonRpcSimulator, RpcError

SelectParams("regtest")

FEE_RATE_SAT_PER_VB = 10
Outpoint = tuple[str, int]


@dataclass
class _Tx:
    txid: str
    inputs: list[Outpoint]
    outputs: list[tuple[int, bytes]]  # (satoshis, scriptPubKey)
    raw: str | None  # None for coinbase-like funding and simulated attacker transactions
    fee: int = 0
    height: int | None = None  # None while in the mempool


@dataclass
class _State:
    blocks: list[list[str]] = field(default_factory=list)  # txids per block, height = index + 1
    mempool: list[str] = field(default_factory=list)
    txs: dict[str, _Tx] = field(default_factory=dict)


def _sats(value: Decimal) -> int:
    return int((Decimal(value) * COIN).to_integral_value())


def _btc(sats: int) -> Decimal:
    return (Decimal(sats) / COIN).quantize(Decimal("0.00000001"))


def _script(script: bytes) -> dict:
    """A scriptPubKey as bitcoind decodes it: hex, and the address when it pays one."""
    try:
        address = str(CBitcoinAddress.from_scriptPubKey(CScript(script)))
    except Exception:  # not a standard address script
        return {"hex": script.hex()}
    return {"hex": script.hex(), "address": address}


class BitcoinNodeSimulator(JsonRpcSimulator):
    FAULTS = (*COMMON_FAULTS, "double_spend")
    SEND_METHODS = ("sendrawtransaction",)
    jsonrpc_version = "1.0"

    def __init__(self, *, automine: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.automine = automine
        self.state = _State()
        self.utxos: dict[Outpoint, tuple[int, bytes]] = {}
        self.spent_by: dict[Outpoint, str] = {}
        self.block_times: dict[int, int] = {}  # height -> unix time it was mined

    # --- bookkeeping -----------------------------------------------------------------------------
    def _apply(self, tx: _Tx) -> None:
        for outpoint in tx.inputs:
            self.spent_by[outpoint] = tx.txid
        for index, output in enumerate(tx.outputs):
            self.utxos[(tx.txid, index)] = output
        self.state.txs[tx.txid] = tx

    def _height(self) -> int:
        return len(self.state.blocks)

    def _mine(self, blocks: int = 1) -> list[str]:
        hashes = []
        for _ in range(blocks):
            height = self._height() + 1
            for txid in self.state.mempool:
                self.state.txs[txid].height = height
            self.state.blocks.append(list(self.state.mempool))
            self.block_times[height] = int(time.time())
            self.state.mempool.clear()
            hashes.append(self._block_hash(height))
        return hashes

    def _block_hash(self, height: int) -> str:
        seed = ",".join(self.state.blocks[height - 1]).encode() + height.to_bytes(8, "big")
        return hashlib.sha256(seed).hexdigest()

    def _accept(self, tx: _Tx) -> str:
        self.state.mempool.append(tx.txid)
        self._apply(tx)
        if self.automine:
            self._mine(1)
        return tx.txid

    def _available(self, outpoint: Outpoint) -> bool:
        return outpoint in self.utxos and outpoint not in self.spent_by

    # --- bitcoind RPCs ---------------------------------------------------------------------------
    def rpc_getblockcount(self) -> int:
        return self._height()

    def rpc_getblockchaininfo(self) -> dict:
        return {"chain": "regtest", "blocks": self._height(), "headers": self._height()}

    def rpc_estimatesmartfee(self, conf_target: int = 6, mode: str = "conservative") -> dict:
        return {"feerate": _btc(FEE_RATE_SAT_PER_VB * 1000), "blocks": min(int(conf_target), 2)}

    def rpc_sendrawtransaction(self, hexstring: str, maxfeerate: object = None) -> str:
        try:
            ctx = CTransaction.deserialize(x(hexstring))
        except Exception as exc:
            raise RpcError(-22, f"TX decode failed: {exc}") from exc
        txid = b2lx(ctx.GetTxid())
        known = self.state.txs.get(txid)
        if known is not None:
            if known.height is not None:
                raise RpcError(-27, "Transaction outputs already in utxo set")
            return txid  # already in the mempool: bitcoind answers with the txid
        inputs = [(b2lx(txin.prevout.hash), txin.prevout.n) for txin in ctx.vin]
        if self.take("double_spend"):
            self._attacker_spend(inputs)
        value_in = 0
        for index, outpoint in enumerate(inputs):
            if outpoint not in self.utxos:
                raise RpcError(-25, "bad-txns-inputs-missingorspent")
            if outpoint in self.spent_by:
                raise RpcError(-26, "txn-mempool-conflict")
            value, script = self.utxos[outpoint]
            try:
                VerifyScript(ctx.vin[index].scriptSig, CScript(script), ctx, index, (SCRIPT_VERIFY_P2SH,))
            except VerifyScriptError as exc:
                raise RpcError(-26, f"mandatory-script-verify-flag-failed ({exc})") from exc
            value_in += value
        outputs = [(int(out.nValue), bytes(out.scriptPubKey)) for out in ctx.vout]
        value_out = sum(value for value, _ in outputs)
        if value_out > value_in:
            raise RpcError(-26, "bad-txns-in-belowout")
        tx = _Tx(txid=txid, inputs=inputs, outputs=outputs, raw=hexstring, fee=value_in - value_out)
        if self.take("drop"):
            return txid  # acknowledged, never kept
        return self._accept(tx)

    def _attacker_spend(self, inputs: list[Outpoint]) -> None:
        """Someone else holding the key spends our inputs first, and it is mined."""
        spendable = [o for o in inputs if self._available(o)]
        if not spendable:
            return
        value = sum(self.utxos[o][0] for o in spendable)
        burn = bytes(CBitcoinAddress("mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY8").to_scriptPubKey())
        tx = _Tx(txid=os.urandom(32).hex(), inputs=spendable, outputs=[(value - 1000, burn)], raw=None, fee=1000)
        self.state.mempool.append(tx.txid)
        self._apply(tx)
        self._mine(1)

    def _verbose(self, tx: _Tx, verbosity: int) -> dict:
        out: dict = {"txid": tx.txid, "hash": tx.txid, "hex": tx.raw or ""}
        if tx.height is not None:
            out |= {
                "blockhash": self._block_hash(tx.height),
                "confirmations": self._height() - tx.height + 1,
                "blockheight": tx.height,
            }
        if verbosity >= 2:
            out["fee"] = _btc(tx.fee)
        return out

    def rpc_getrawtransaction(self, txid: str, verbose: int | bool = 0, blockhash: str | None = None) -> object:
        tx = self.state.txs.get(txid)
        if tx is None:
            raise RpcError(-5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
        if not verbose:
            return tx.raw or ""
        return self._verbose(tx, int(verbose))

    def rpc_gettransaction(self, txid: str, include_watchonly: bool = True) -> dict:
        tx = self.state.txs.get(txid)
        if tx is None:
            raise RpcError(-5, "Invalid or non-wallet transaction id")
        return self._verbose(tx, 2) | {"amount": _btc(sum(v for v, _ in tx.outputs))}

    def rpc_getblockhash(self, height: int) -> str:
        if not 1 <= int(height) <= self._height():
            raise RpcError(-8, "Block height out of range")
        return self._block_hash(int(height))

    def rpc_getblock(self, blockhash: str, verbosity: int = 1) -> object:
        """bitcoind's block: txids (1), or decoded transactions (2), with each input's prevout
        (3: value and scriptPubKey with its address, as Bitcoin Core 23+ reports it)."""
        height = next((h for h in range(1, self._height() + 1) if self._block_hash(h) == blockhash), None)
        if height is None:
            raise RpcError(-5, "Block not found")
        txids = self.state.blocks[height - 1]
        block = {
            "hash": blockhash,
            "height": height,
            "confirmations": self._height() - height + 1,
            "time": self.block_times.get(height, 0),
            "nTx": len(txids),
        }
        if int(verbosity) < 2:
            return block | {"tx": list(txids)}
        return block | {"tx": [self._decoded(self.state.txs[txid], int(verbosity)) for txid in txids]}

    def _decoded(self, tx: _Tx, verbosity: int) -> dict:
        vin = []
        for prev_txid, index in tx.inputs:
            entry: dict = {"txid": prev_txid, "vout": index}
            if verbosity >= 3 and (prev_txid, index) in self.utxos:
                value, script = self.utxos[(prev_txid, index)]
                entry["prevout"] = {"value": _btc(value), "scriptPubKey": _script(script)}
            vin.append(entry)
        vout = [{"value": _btc(v), "n": n, "scriptPubKey": _script(script)} for n, (v, script) in enumerate(tx.outputs)]
        return {"txid": tx.txid, "hash": tx.txid, "fee": _btc(tx.fee), "vin": vin, "vout": vout}

    def rpc_gettxout(self, txid: str, n: int, include_mempool: bool = True) -> dict | None:
        outpoint = (txid, int(n))
        if outpoint not in self.utxos:
            return None
        spender = self.spent_by.get(outpoint)
        if spender is not None and (include_mempool or self.state.txs[spender].height is not None):
            return None
        tx = self.state.txs[txid]
        if tx.height is None and not include_mempool:
            return None
        value, script = self.utxos[outpoint]
        return {
            "confirmations": 0 if tx.height is None else self._height() - tx.height + 1,
            "value": _btc(value),
            "scriptPubKey": {"hex": script.hex()},
        }

    def rpc_listunspent(self, minconf: int = 1, maxconf: int = 9_999_999, addresses: list[str] | None = None) -> list:
        wanted = {bytes(CBitcoinAddress(a).to_scriptPubKey()): a for a in addresses or []}
        out = []
        for (txid, vout), (value, script) in self.utxos.items():
            if (txid, vout) in self.spent_by or (wanted and script not in wanted):
                continue
            height = self.state.txs[txid].height
            confirmations = 0 if height is None else self._height() - height + 1
            if minconf <= confirmations <= maxconf:
                out.append(
                    {
                        "txid": txid,
                        "vout": vout,
                        "address": wanted.get(script, ""),
                        "scriptPubKey": script.hex(),
                        "amount": _btc(value),
                        "confirmations": confirmations,
                    }
                )
        return out

    # --- simulator controls ------------------------------------------------------------------------
    def rpc_sim_fund(self, address: str, amount: Decimal | str) -> str:
        """Pay ``amount`` BTC to ``address`` out of thin air (a coinbase stand-in) and mine it."""
        script = bytes(CBitcoinAddress(address).to_scriptPubKey())
        tx = _Tx(txid=os.urandom(32).hex(), inputs=[], outputs=[(_sats(Decimal(str(amount))), script)], raw=None)
        self.state.mempool.append(tx.txid)
        self._apply(tx)
        self._mine(1)
        return tx.txid

    def rpc_sim_mine(self, blocks: int = 1) -> list[str]:
        return self._mine(int(blocks))

    def rpc_sim_automine(self, on: bool) -> bool:
        self.automine = bool(on)
        return self.automine

    def rpc_sim_reorg(self, depth: int = 1, new_blocks: int = 0) -> int:
        """The last ``depth`` blocks are replaced by a branch without their transactions."""
        depth = min(int(depth), self._height())
        removed = self.state.blocks[len(self.state.blocks) - depth :]
        del self.state.blocks[len(self.state.blocks) - depth :]
        gone = {txid for block in removed for txid in block}
        # mempool transactions that spent outputs of the vanished ones go too
        self.state.mempool = [t for t in self.state.mempool if t not in gone]
        self._rebuild_without(gone)
        self._mine(int(new_blocks))
        return self._height()

    def _rebuild_without(self, gone: set[str]) -> None:
        keep = dict(self.state.txs)
        for txid in gone:
            keep.pop(txid, None)
        self.state.txs = keep
        valid_mempool = []
        self.utxos.clear()
        self.spent_by.clear()
        ordered = [t for block in self.state.blocks for t in block]
        txs, self.state.txs = self.state.txs, {}
        for txid in ordered:
            self._apply(txs[txid])
        for txid in self.state.mempool:
            tx = txs[txid]
            if all(self._available(o) for o in tx.inputs):
                self._apply(tx)
                valid_mempool.append(txid)
        self.state.mempool = valid_mempool

    def balance_sats(self, address: str, *, minconf: int = 0) -> int:
        with self.lock:
            return sum(_sats(u["amount"]) for u in self.rpc_listunspent(minconf, 9_999_999, [address]))
