"""Seeding for bench/crypto_settlement.py: the assets, participants with house wallets on every
chain funded on chain and on the ledger (equal), USD on the ledger, and the trade plan.

The plan is drawn first (seeded RNG), so each participant is funded for exactly what it will sell
(quantity plus a fee margin per trade, as in-flight trades each hold a fee reserve) and buy: a
normal trade can never be short, whatever order the workers take the trades in. A short trade's
seller is one of a separate pool of participants funded with less than any trade's quantity and
never buying: it is short whatever happens before it.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

# chain -> (asset code, name, precision, price, quantity range in base units of `step`, step, base
# funding, fee margin per sell, short-pool funding)
SPECS: dict[str, dict[str, Any]] = {
    "ethereum": {
        "code": "ETH", "name": "Ether", "precision": 18, "price": Decimal("3000.00"), "step": Decimal("0.001"),
        "units": (1, 50), "base": Decimal("0.1"), "margin": Decimal("0.01"), "short": Decimal("0.0001"),
    },
    "bitcoin": {
        "code": "BTC", "name": "Bitcoin", "precision": 8, "price": Decimal("60000.00"), "step": Decimal("0.0001"),
        "units": (1, 50), "base": Decimal("0.01"), "margin": Decimal("0.001"), "short": Decimal("0.00001"),
    },
    "solana": {
        "code": "SOL", "name": "Solana", "precision": 9, "price": Decimal("150.00"), "step": Decimal("0.01"),
        "units": (1, 100), "base": Decimal("1"), "margin": Decimal("0.001"), "short": Decimal("0.001"),
    },
}  # fmt: skip


@dataclass(frozen=True)
class PlannedTrade:
    n: int
    chain: str
    buyer: int  # participant index
    seller: int
    quantity: Decimal
    price: Decimal
    short: bool


@dataclass
class Plan:
    trades: list[PlannedTrade]
    normal: list[int]
    short_pool: list[int]
    sells: dict[tuple[int, str], tuple[Decimal, int]] = field(default_factory=dict)  # (party, chain) -> (qty, n)
    buys_usd: dict[int, Decimal] = field(default_factory=dict)


def plan_trades(*, trades: int, participants: int, chains: list[str], short_fraction: float, seed: int = 7) -> Plan:
    rng = random.Random(seed)
    n_short = max(1, round(participants * short_fraction)) if short_fraction > 0 else 0
    if participants - n_short < 2:
        raise SystemExit("need at least 2 participants besides the short pool")
    normal = list(range(participants - n_short))
    short_pool = list(range(participants - n_short, participants))
    plan = Plan(trades=[], normal=normal, short_pool=short_pool)
    sells: dict[tuple[int, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    buys: dict[int, Decimal] = defaultdict(Decimal)
    for n in range(trades):
        chain = chains[n % len(chains)]
        spec = SPECS[chain]
        short = n_short > 0 and rng.random() < short_fraction
        buyer, seller = rng.sample(normal, 2)
        if short:
            seller = rng.choice(short_pool)
        quantity = spec["step"] * rng.randint(*spec["units"])
        price = spec["price"] + Decimal(rng.randint(-500, 500)) / 100
        plan.trades.append(PlannedTrade(n, chain, buyer, seller, quantity, price, short))
        if not short:
            sells[seller, chain][0] += quantity
            sells[seller, chain][1] += 1
        buys[buyer] += (quantity * price).quantize(Decimal("0.01"))
    plan.sells = {key: (qty, count) for key, (qty, count) in sells.items()}
    plan.buys_usd = dict(buys)
    return plan


def funding(plan: Plan, party: int, chain: str) -> Decimal:
    spec = SPECS[chain]
    if party in plan.short_pool:
        return spec["short"]
    quantity, count = plan.sells.get((party, chain), (Decimal(0), 0))
    return spec["base"] + quantity + spec["margin"] * count


class _SolanaFaucet:
    """JSON-RPC body of the Solana simulator's ``sim_fund`` (exact decimal SOL)."""

    def __init__(self, address: str, amount: Decimal) -> None:
        self.address, self.amount = address, amount

    def to_json(self) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sim_fund", "params": [self.address, str(self.amount)]})


@dataclass
class Seeded:
    participants: list[Any]
    assets: dict[str, Any]  # chain -> Asset
    instruments: dict[str, Any]  # chain -> Instrument
    usd: Any
    wallets: dict[tuple[int, str], Any]  # (party, chain) -> WalletAddress
    seconds: float


def seed(*, plan: Plan, participants: int, chains: list[str], keystore_path: Path, anvil: Any) -> Seeded:
    """Create everything the plan needs. House-wallet keys are generated here and written to the
    keystore in one go (its documented JSON form, mode 600) instead of one locked rewrite of the
    whole file per key; chain deposits go out concurrently and are credited with
    ``chain_deposit_credit`` (idempotent by transaction), exactly as a deposit would be."""
    from common.actors import SystemActor, stamp_history
    from common.choices import AssetKind, MarketCalendar
    from ledger.services.ledger import ledger_deposit
    from rails.crypto.registry import chain_rail_of
    from rails.crypto.signing import address_for_key, new_private_key
    from reference.models import Asset, Instrument, Participant, WalletAddress
    from settlement.crypto.wallets import chain_deposit_credit

    started = time.monotonic()
    actor = SystemActor("bench")
    usd = Asset.objects.create(
        code="USD", name="US dollar", kind=AssetKind.FIAT, precision=2, settlement_cycle=1, calendar=MarketCalendar.FED
    )
    assets, instruments = {}, {}
    for chain in chains:
        spec = SPECS[chain]
        assets[chain] = Asset.objects.create(
            code=spec["code"], name=spec["name"], kind=AssetKind.CRYPTO, precision=spec["precision"],
            settlement_cycle=0, calendar=MarketCalendar.ALWAYS, chain=chain, required_confirmations=1,
        )  # fmt: skip
        instruments[chain] = Instrument.objects.create(
            symbol=f"{spec['code']}/USD", base=assets[chain], quote=usd, price_precision=2
        )
    parties = Participant.objects.bulk_create(
        [Participant(code=f"P{i:05d}", name=f"Participant {i}") for i in range(participants)]
    )
    keys: dict[str, str] = {}
    wallets: dict[tuple[int, str], Any] = {}
    for i, party in enumerate(parties):
        for chain in chains:
            key = new_private_key(chain)
            address = address_for_key(key, chain)
            keys[address.lower()] = key
            wallet = WalletAddress(participant=party, chain=chain, address=address, label="house custody")
            stamp_history(wallet, actor=actor, reason="wallet provisioned (bench)")
            wallet.save()
            wallets[i, chain] = wallet
    keystore_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(keystore_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle)
    print(f"seed: {len(parties)} participants, {len(wallets)} house wallets ({time.monotonic() - started:.1f} s)")

    def pay(item: tuple[tuple[int, str], Any]) -> tuple[Any, str, Decimal]:
        (i, chain), wallet = item
        amount = funding(plan, i, chain)
        rail = chain_rail_of(chain)
        if chain == "ethereum":  # anvil's first development account, automined
            tx = anvil.w3.eth.send_transaction(
                {"from": anvil.w3.eth.accounts[0], "to": wallet.address, "value": rail.to_base_units(amount)}
            )
            return wallet, tx.to_0x_hex(), amount
        if chain == "bitcoin":
            return wallet, rail.rpc("sim_fund", wallet.address, str(amount)), amount
        return wallet, rail.rpc(_SolanaFaucet(wallet.address, amount)), amount

    paid = [pay(item) for item in wallets.items()]  # anvil mines each at once: no wait per payment
    eth_txs = [tx for wallet, tx, _ in paid if wallet.chain == "ethereum"]
    for tx in eth_txs[-1:]:
        anvil.w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    for wallet, tx, amount in paid:
        chain_deposit_credit(wallet=wallet, asset=assets[wallet.chain], amount=amount, tx_hash=tx, actor=actor)
    print(f"seed: {len(paid)} wallets funded on chain and on the ledger ({time.monotonic() - started:.1f} s)")
    for i, party in enumerate(parties):
        need = plan.buys_usd.get(i, Decimal(0))
        if need:
            ledger_deposit(
                owner=party, asset=usd, amount=need + Decimal("1000.00"), reference=f"bench:usd:{i}", actor=actor
            )
    seconds = time.monotonic() - started
    print(f"seed: USD on the ledger for the buyers; seeding took {seconds:.1f} s (not part of any rate)")
    return Seeded(
        participants=parties, assets=assets, instruments=instruments, usd=usd, wallets=wallets, seconds=seconds
    )


def trade_inputs(plan: Plan, seeded: Seeded, *, start: int, stop: int, executed_at: Any) -> list[Any]:
    from settlement.services.trades import TradeInput

    return [
        TradeInput(
            source="bench",
            external_id=f"C{t.n}",
            instrument=seeded.instruments[t.chain],
            buyer=seeded.participants[t.buyer],
            seller=seeded.participants[t.seller],
            quantity=t.quantity,
            price=t.price,
            executed_at=executed_at,
        )
        for t in plan.trades[start:stop]
    ]
