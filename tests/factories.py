from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from common.actors import SystemActor
from common.choices import AssetKind, Chain, MarketCalendar
from ledger.services.ledger import ledger_deposit
from reference.models import Asset, Instrument, Participant, ParticipantUser
from settlement.models import Trade

ACTOR = SystemActor("tests")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


class ParticipantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Participant
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"P{n:04d}")
    name = factory.LazyAttribute(lambda o: f"Participant {o.code}")


class AssetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Asset
        django_get_or_create = ("code",)

    code = "USD"
    name = factory.LazyAttribute(lambda o: o.code)
    kind = AssetKind.FIAT
    precision = 2
    settlement_cycle = 1
    calendar = MarketCalendar.FED
    chain = ""


def usd() -> Asset:
    return AssetFactory(code="USD", kind=AssetKind.FIAT, precision=2, settlement_cycle=1, calendar=MarketCalendar.FED)


def btc() -> Asset:
    return AssetFactory(
        code="BTC",
        kind=AssetKind.CRYPTO,
        precision=8,
        settlement_cycle=0,
        calendar=MarketCalendar.ALWAYS,
        chain=Chain.BITCOIN,
    )


def aapl() -> Asset:
    return AssetFactory(
        code="AAPL",
        kind=AssetKind.SECURITY,
        precision=0,
        settlement_cycle=1,
        calendar=MarketCalendar.NYSE,
        isin="US0378331005",
    )


def instrument(base: Asset, quote: Asset, price_precision: int = 2) -> Instrument:
    found, _ = Instrument.objects.get_or_create(
        symbol=f"{base.code}/{quote.code}", defaults={"base": base, "quote": quote, "price_precision": price_precision}
    )
    return found


def participant_user(participant: Participant, username: str | None = None):
    user = UserFactory(username=username or f"{participant.code.lower()}-api")
    ParticipantUser.objects.get_or_create(user=user, defaults={"participant": participant})
    return user


def fund(participant: Participant, asset: Asset, amount: str, reference: str | None = None) -> None:
    ledger_deposit(
        owner=participant,
        asset=asset,
        amount=Decimal(amount),
        reference=reference or f"fund:{participant.code}:{asset.code}:{amount}",
        actor=ACTOR,
    )


def trade(
    *,
    buyer: Participant,
    seller: Participant,
    instrument: Instrument,
    quantity: str,
    price: str,
    external_id: str = "T1",
    source: str = "tests",
) -> Trade:
    from settlement.services.trades import TradeInput, trades_ingest

    item = TradeInput(
        source=source,
        external_id=external_id,
        instrument=instrument,
        buyer=buyer,
        seller=seller,
        quantity=Decimal(quantity),
        price=Decimal(price),
        executed_at=timezone.now(),
    )
    return trades_ingest(items=[item], actor=ACTOR).trades[0]
