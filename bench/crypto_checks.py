"""The invariants bench/crypto_settlement.py checks at the end of a run, each printed OK or FAIL
with its counts; ``check_all`` returns whether every one held.

The on-chain check reads every chain transaction of a confirmed transfer back from its node (in
a few threads, plain JSON-RPC) and matches each transfer to one payment in it: recipient and
amount, and the settlement reference where the chain carries one (Solana: the memo of the signed
bytes whose signature landed; an Ethereum multisend: the ``Sent`` log's reference; a Bitcoin
OP_RETURN). A plain Ether transfer or a Bitcoin payment without OP_RETURN carries no reference:
it is matched by transaction, recipient and amount, and counted as such.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read(), parse_float=Decimal)
    if answer.get("error"):
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass(frozen=True)
class Payment:
    to: str
    amount: Decimal
    reference: bytes | str | None  # what the chain carries, if anything


class Results:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, ok: bool, name: str, detail: str) -> None:
        self.failed += not ok
        print(f"  [{'OK' if ok else 'FAIL'}] {name}: {detail}")


def _eth_payments(url: str, tx_hash: str) -> tuple[bool, list[Payment]]:
    from web3 import Web3

    receipt = rpc(url, "eth_getTransactionReceipt", [tx_hash])
    if receipt is None or int(receipt["status"], 16) != 1:
        return False, []
    topic = Web3.keccak(text="Sent(bytes32,address,uint256)").to_0x_hex()
    logs = [log for log in receipt["logs"] if log["topics"] and log["topics"][0].lower() == topic]
    wei = Decimal(10) ** 18
    if logs:  # a multisend: one Sent(reference, recipient, amount) per payment, in log order
        logs.sort(key=lambda log: int(log["logIndex"], 16))
        return True, [
            Payment(
                to="0x" + log["topics"][2][-40:],
                amount=Decimal(int(log["data"], 16)) / wei,
                reference=bytes.fromhex(log["topics"][1][2:]),
            )
            for log in logs
        ]
    tx = rpc(url, "eth_getTransactionByHash", [tx_hash])
    return True, [Payment(to=tx["to"], amount=Decimal(int(tx["value"], 16)) / wei, reference=None)]


def _btc_payments(url: str, txid: str, sender: str) -> tuple[bool, list[Payment]]:
    """The outputs of the transaction as the node holds it (its raw bytes, decoded here), change to
    the sender left out; an OP_RETURN output is the reference it carries."""
    from bitcoin.core import CTransaction, b2lx
    from bitcoin.core.script import OP_RETURN, CScript
    from bitcoin.wallet import CBitcoinAddress

    from rails.crypto.bitcoin_network import select_network

    select_network("regtest")
    tx = rpc(url, "getrawtransaction", [txid, 2])
    if tx is None or not tx.get("confirmations") or not tx.get("hex"):
        return False, []
    decoded = CTransaction.deserialize(bytes.fromhex(tx["hex"]))
    if b2lx(decoded.GetTxid()) != txid:
        return False, []
    payments, note = [], None
    for out in decoded.vout:
        script = CScript(out.scriptPubKey)
        if script and script[0] == OP_RETURN:
            note = next((bytes(op) for op in list(script)[1:] if isinstance(op, bytes)), b"")
            continue
        address = str(CBitcoinAddress.from_scriptPubKey(script))
        if address != sender:  # change goes back to the sender
            payments.append(Payment(to=address, amount=Decimal(out.nValue) / 10**8, reference=None))
    return True, [Payment(p.to, p.amount, note) for p in payments]


def _sol_payments(url: str, signature: str, raw: str) -> tuple[bool, list[Payment]]:
    tx = rpc(url, "getTransaction", [signature, {"encoding": "json", "commitment": "confirmed"}])
    if tx is None or tx["meta"].get("err") is not None:
        return False, []
    keys = tx["transaction"]["message"]["accountKeys"]
    meta = tx["meta"]
    gained = [(key, post - pre) for key, pre, post in zip(keys, meta["preBalances"], meta["postBalances"], strict=True)]
    memo = _solana_memo(raw, signature)
    lamports = Decimal(10) ** 9
    return True, [Payment(to=key, amount=Decimal(g) / lamports, reference=memo) for key, g in gained[1:] if g > 0]


def _solana_memo(raw: str, signature: str) -> str | None:
    """The memo text of the stored signed transaction, if its signature is the one that landed."""
    import base64

    from solders.transaction import Transaction

    if not raw:
        return None
    try:
        data = bytes.fromhex(raw.removeprefix("0x"))  # how the Solana rail stores it
    except ValueError:
        data = base64.b64decode(raw)
    tx = Transaction.from_bytes(data)
    if str(tx.signatures[0]) != signature:
        return None
    memo_program = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
    keys = tx.message.account_keys
    texts = [
        bytes(ix.data).decode(errors="replace")
        for ix in tx.message.instructions
        if str(keys[ix.program_id_index]) == memo_program
    ]
    return "\n".join(texts) if texts else None


def _sol_per_recipient(items: list[dict[str, Any]], payments: list[Payment]) -> list[Payment]:
    """Solana payments are read from balance changes, so two legs paying the same recipient in one
    transaction show as one gain: split it back into the legs' amounts when they add up to it."""
    gained = {p.to.lower(): p for p in payments}
    out: list[Payment] = []
    wanted: dict[str, list[Decimal]] = defaultdict(list)
    for t in items:
        wanted[t["to_address"].lower()].append(Decimal(t["amount"]))
    for to, payment in gained.items():
        amounts = wanted.get(to, [])
        if len(amounts) > 1 and sum(amounts) == payment.amount:
            out.extend(Payment(to=payment.to, amount=a, reference=payment.reference) for a in amounts)
        else:
            out.append(payment)
    return out


def _reference_matches(carried: bytes | str | None, reference: str) -> bool | None:
    """None: the chain carries no reference here; else whether it is this settlement's."""
    if carried is None:
        return None
    if isinstance(carried, str):
        return reference in carried
    from web3 import Web3

    text = reference.encode()
    candidates = {
        hashlib.sha256(text).digest(),
        bytes(Web3.keccak(text=reference)),
        text[:32].ljust(32, b"\0"),
        text[:32].rjust(32, b"\0"),
    }
    return carried in candidates or reference.encode() in carried


def check_onchain(results: Results, *, urls: dict[str, str]) -> None:
    """Each settled trade: exactly one confirmed transfer, found on chain as one payment to the
    buyer's wallet of the trade's quantity (with its reference where the chain carries one); no
    chain transaction pays more than its transfers say."""
    from common.choices import InstructionStatus as S
    from settlement.models import ChainTransfer, SettlementInstruction
    from settlement.models.pipeline import TransferStatus as TS

    settled_legs = set(
        SettlementInstruction.objects.filter(status=S.SETTLED, leg="delivery").values_list("pk", flat=True)
    )
    transfers = list(
        ChainTransfer.objects.filter(status=TS.CONFIRMED).values(
            "pk", "instruction_id", "chain", "from_address", "to_address", "amount", "tx_hash", "output_index",
            "raw_tx", "chain_tx__raw_tx", "instruction__trade_id", "attempt",
        )
    )  # fmt: skip
    per_leg = Counter(t["instruction_id"] for t in transfers)
    not_one = [leg for leg in settled_legs if per_leg.get(leg, 0) != 1]
    stray = [leg for leg in per_leg if leg not in settled_legs]
    live = ChainTransfer.objects.exclude(status__in=[TS.CONFIRMED, TS.FAILED]).count()
    results.line(
        not not_one and not stray and not live,
        "one confirmed chain transfer per settled trade",
        f"{len(settled_legs)} settled delivery legs, {len(not_one)} without exactly one, "
        f"{len(stray)} confirmed transfers of unsettled legs, {live} transfers not final",
    )
    from settlement.models import SettlementInstruction as SI

    references = {leg.pk: f"{leg.reference}:a{leg.attempt}" for leg in SI.objects.filter(pk__in=per_leg)}  # as paid
    by_tx: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for t in transfers:
        by_tx[t["chain"], t["tx_hash"]].append(t)

    def fetch(key: tuple[str, str]) -> tuple[tuple[str, str], bool, list[Payment]]:
        chain, tx_hash = key
        first = by_tx[key][0]
        if chain == "ethereum":
            return key, *_eth_payments(urls[chain], tx_hash)
        if chain == "bitcoin":
            return key, *_btc_payments(urls[chain], tx_hash, first["from_address"])
        return key, *_sol_payments(urls[chain], tx_hash, first["raw_tx"] or first["chain_tx__raw_tx"] or "")

    with ThreadPoolExecutor(max_workers=6) as pool:
        fetched = list(pool.map(fetch, by_tx))
    unmatched, missing, extra = 0, 0, 0
    ref_ok, ref_bad, ref_none = 0, 0, 0
    for key, landed, payments in fetched:
        items = by_tx[key]
        if not landed:
            missing += len(items)
            continue
        if key[0] == "solana":  # balance changes: payments to one recipient in one transaction add up
            payments = _sol_per_recipient(items, payments)
        extra += max(0, len(payments) - len(items))
        free = list(payments)
        for t in sorted(items, key=lambda t: t["output_index"]):
            want = (t["to_address"].lower(), Decimal(t["amount"]))
            hit = next((p for p in free if (p.to.lower(), p.amount) == want), None)
            if len(items) > 1 and t["output_index"] < len(payments):  # a batch: the payment at its position
                at = payments[t["output_index"]]
                hit = at if (at.to.lower(), at.amount) == want and at in free else hit
            if hit is None:
                unmatched += 1
                continue
            free.remove(hit)
            verdict = _reference_matches(hit.reference, references[t["instruction_id"]])
            ref_none += verdict is None
            ref_ok += verdict is True
            ref_bad += verdict is False
    results.line(
        not (unmatched or missing or extra),
        "each confirmed transfer is one payment on chain (tx, recipient, amount)",
        f"{len(transfers)} transfers in {len(by_tx)} chain transactions: {missing} not landed/reverted, "
        f"{unmatched} without their payment, {extra} payments beyond the transfers",
    )
    from reference.models import WalletAddress

    senders = list(WalletAddress.objects.filter(chain="ethereum").values_list("address", flat=True))
    if senders:
        with ThreadPoolExecutor(max_workers=6) as pool:
            nonces = sum(
                pool.map(lambda a: int(rpc(urls["ethereum"], "eth_getTransactionCount", [a, "latest"]), 16), senders)
            )
        landed_eth = sum(1 for (chain, _), landed, _ in fetched if chain == "ethereum" and landed)
        results.line(
            nonces == landed_eth,
            "no Ethereum transaction from a house wallet beyond the confirmed ones",
            f"{nonces} transactions sent by {len(senders)} house wallets (their nonces), {landed_eth} confirmed",
        )
    results.line(
        not ref_bad,
        "the payment carries its settlement reference (where the chain carries one)",
        f"{ref_ok} carry it, {ref_bad} carry another, {ref_none} carry none (plain ETH transfer, BTC w/o OP_RETURN)",
    )


def check_all(*, urls: dict[str, str], short_ids: set[str]) -> bool:
    """Every invariant, printed; whether all held. Ledger == chain covers every wallet in the
    database (the seeded house wallets and any the engine added)."""
    from django.db.models import Count

    from common.choices import AccountKind, LockStatus
    from common.choices import InstructionStatus as S
    from ledger.models import LedgerAccount, LedgerLock
    from ledger.services.audit import transition_log_verify
    from ledger.services.integrity import ledger_verify_balances
    from rails.crypto.registry import chain_rail_of
    from settlement.models import SettlementInstruction, Trade

    results = Results()
    print("\ninvariants:")
    ledger = ledger_verify_balances()
    results.line(
        ledger.ok,
        "every journal balanced, every balance = its postings",
        f"{ledger.accounts} accounts, {len(ledger.unbalanced)} unbalanced journals, "
        f"{len(ledger.mismatches)} balance mismatches, {len(ledger.foreign_asset)} foreign-asset postings",
    )
    negative = LedgerAccount.objects.filter(allow_negative=False, balance__lt=0).count()
    results.line(negative == 0, "no negative balance", f"{negative} non-overdraft accounts below zero")
    totals: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for owner, asset, balance in LedgerAccount.objects.filter(
        kind__in=[AccountKind.AVAILABLE, AccountKind.LOCKED], owner__isnull=False
    ).values_list("owner_id", "asset_id", "balance"):
        totals[owner, asset] += balance
    from reference.models import Asset, WalletAddress

    wallets = list(WalletAddress.objects.all())
    asset_of = {a.chain: a.pk for a in Asset.objects.exclude(chain="")}
    off = [
        w for w in wallets
        if chain_rail_of(w.chain).balance(w.address) != totals[w.participant_id, asset_of[w.chain]]
    ]  # fmt: skip
    results.line(
        not off, "ledger == chain for every house wallet", f"{len(wallets) - len(off)} of {len(wallets)} equal"
    )
    check_onchain(results, urls=urls)
    legs = dict(
        SettlementInstruction.objects.values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("status", "n")
    )
    open_legs = sum(n for status, n in legs.items() if status not in (S.SETTLED, S.FAILED, S.CANCELLED))
    results.line(open_legs == 0, "0 legs left non-final", f"legs by status {legs}")
    short = Trade.objects.filter(source="bench", external_id__in=short_ids)
    short_legs = SettlementInstruction.objects.filter(trade__in=short)
    short_not_failed = short_legs.exclude(status=S.FAILED).count()
    pending_locks = LedgerLock.objects.filter(status=LockStatus.PENDING).count()
    locked_left = LedgerAccount.objects.filter(kind=AccountKind.LOCKED).exclude(balance=0).count()
    results.line(
        short_not_failed == 0 and pending_locks == 0 and locked_left == 0,
        "short trades failed with funds released",
        f"{short.count()} short trades, {short_not_failed} of their legs not failed; {pending_locks} ledger locks "
        f"still pending, {locked_left} locked accounts not at zero",
    )
    normal_failed = SettlementInstruction.objects.exclude(trade__in=short).filter(status=S.FAILED).count()
    results.line(normal_failed == 0, "every funded trade settled", f"{normal_failed} legs of funded trades failed")
    audit = transition_log_verify()
    results.line(
        audit.ok, "audit verifier (transition log chain)", f"{audit.checked} entries, problems {audit.problems[:3]}"
    )
    return results.failed == 0
