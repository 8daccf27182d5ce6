"""A market settled through the bank and custodian simulators: four participants with USD and
EUR bank accounts and custody accounts, funded the same on the ledger and at the networks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from common.choices import AssetKind, MarketCalendar
from netting.models import NettedInstruction, NettedStatus
from netting.pipeline import netted_advance, rail_reports_fetch
from rails import networks as rail_network
from reference.models import Asset, BankAccount, CustodyAccount, Participant
from tests import factories

IBANS = ["DE13370400440532013010", "DE83370400440532013011", "DE56370400440532013012", "DE29370400440532013013"]
ROUTING = "011000015"
CUSTODIAN_BIC = "DTCYUS33XXX"
START = {"USD": "1000000.00", "EUR": "500000.00", "AAPL": "10000"}


@dataclass
class FiatMarket:
    usd: Asset
    eur: Asset
    aapl: Asset
    aapl_usd: Any
    eur_usd: Any
    parties: list[Participant]
    bank: Any
    custodian: Any

    def bank_key(self, party: Participant, currency: str) -> str:
        account = BankAccount.objects.get(participant=party, currency__code=currency)
        return account.iban or account.account_number

    def safekeeping(self, party: Participant) -> str:
        return CustodyAccount.objects.get(participant=party).account_id


@pytest.fixture
def fiat_market(db) -> FiatMarket:
    rail_network.reset()
    bank = rail_network.local_network("bank")
    custodian = rail_network.local_network("custodian")
    bank.today = custodian.today = timezone.localdate()
    usd = factories.usd()
    eur = factories.AssetFactory(
        code="EUR", kind=AssetKind.FIAT, precision=2, settlement_cycle=2, calendar=MarketCalendar.TARGET
    )
    aapl = factories.aapl()
    parties = []
    for i in range(4):
        party = factories.ParticipantFactory(code=f"F{i}", name=f"Firm {i} LLC")
        parties.append(party)
        BankAccount.objects.create(
            participant=party, currency=usd, holder_name=party.name, aba_routing=ROUTING, account_number=f"77000{i}"
        )
        BankAccount.objects.create(
            participant=party, currency=eur, holder_name=party.name, iban=IBANS[i], bic="COBADEFFXXX"
        )
        CustodyAccount.objects.create(participant=party, custodian_bic=CUSTODIAN_BIC, account_id=f"SAFE-F{i}")
        bank.open_account(f"77000{i}", currency="USD", name=party.name, balance=START["USD"])
        bank.open_account(IBANS[i], currency="EUR", name=party.name, balance=START["EUR"])
        custodian.open_account(f"SAFE-F{i}", isin=aapl.isin, quantity=START["AAPL"])
        for asset in (usd, eur, aapl):
            factories.fund(party, asset, START[asset.code])
    yield FiatMarket(
        usd=usd,
        eur=eur,
        aapl=aapl,
        aapl_usd=factories.instrument(aapl, usd),
        eur_usd=factories.instrument(eur, usd, price_precision=4),
        parties=parties,
        bank=bank,
        custodian=custodian,
    )
    rail_network.reset()


def pump(rounds: int = 6) -> None:
    """Let time pass for the pipeline: advance every open instruction (resends due now) and
    apply the networks' reports, a few rounds (a settled pay-in releases pay-outs)."""
    for _ in range(rounds):
        NettedInstruction.objects.filter(next_attempt_at__isnull=False).update(next_attempt_at=None)
        ids = list(
            NettedInstruction.objects.filter(status__in=[NettedStatus.PENDING, NettedStatus.LOCKED]).values_list(
                "pk", flat=True
            )
        )
        netted_advance(ids=ids)
        rail_reports_fetch(network="bank")
        rail_reports_fetch(network="custodian")


def settle_day(market: FiatMarket, day: date) -> None:
    market.bank.set_date(day)
    market.custodian.set_date(day)
    pump()


def balances(parties: list[Participant], assets: list[Asset]) -> dict[tuple[str, str], Decimal]:
    from ledger.models import LedgerAccount

    result = {}
    for party in parties:
        for asset in assets:
            account = LedgerAccount.objects.filter(owner=party, asset=asset, kind="available").first()
            result[(party.code, asset.code)] = account.balance if account else Decimal(0)
    return result


def trades_settle(market: FiatMarket, rows: list[tuple[Any, Any, str, str]], *, source: str) -> date:
    """Ingest AAPL/USD trades (buyer, seller, quantity, price), close the open windows, let the
    pipeline send, and settle their day at the networks; returns that settlement date."""
    from netting.models import NettingWindow, WindowStatus
    from netting.services import window_close
    from settlement.services.trades import TradeInput, trades_ingest
    from tests.factories import ACTOR

    trades_ingest(
        items=[
            TradeInput(source, f"{source}-{n}", market.aapl_usd, buyer, seller, Decimal(q), Decimal(px), timezone.now())
            for n, (buyer, seller, q, px) in enumerate(rows)
        ],
        actor=ACTOR,
    )
    for window in NettingWindow.objects.filter(status=WindowStatus.OPEN):
        window_close(window=window, actor=ACTOR)
    pump()
    day = NettedInstruction.objects.values_list("settlement_date", flat=True).first()
    settle_day(market, day)
    return day
