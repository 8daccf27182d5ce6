from __future__ import annotations

from decimal import Decimal

import pytest

from common.choices import AccountKind, AssetKind, Chain, MarketCalendar
from ledger.models import LedgerAccount
from rails.crypto import registry
from rails.simulators.eth_chain import reset_local_chain
from settlement.crypto.wallets import local_chain_fund, wallet_provision
from tests import factories
from tests.factories import ACTOR


@pytest.fixture
def chain(settings, tmp_path, db):
    """A fresh in-process Ethereum chain, a private keystore, tasks run in-process."""
    settings.CLEARHOUSE_KEYSTORE = str(tmp_path / "keystore.json")
    settings.CLEARHOUSE_ETH_RPC_URL = "local"
    settings.CLEARHOUSE_CHAIN_RAILS = ["ethereum"]
    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 1
    settings.CLEARHOUSE_BROADCAST_MAX_RETRIES = 3
    settings.CELERY_TASK_ALWAYS_EAGER = True
    registry.reset()
    local = reset_local_chain()
    yield local
    registry.reset()


@pytest.fixture
def per_trade(settings):
    """The per-trade pipeline (crypto/crypto trades, ``CLEARHOUSE_CRYPTO_ENGINE=trade``) where a test
    follows one trade's own chain transfer; the batch engine's tests are tests/crypto/test_batch_*.py."""
    settings.CLEARHOUSE_CRYPTO_ENGINE = "trade"


@pytest.fixture
def eth(db):
    return factories.AssetFactory(
        code="ETH",
        name="Ether",
        kind=AssetKind.CRYPTO,
        precision=18,
        settlement_cycle=0,
        calendar=MarketCalendar.ALWAYS,
        chain=Chain.ETHEREUM,
        required_confirmations=1,
    )


@pytest.fixture
def eth_usd(eth, usd):
    return factories.instrument(eth, usd)


@pytest.fixture
def funded(chain, eth, usd, alice, bob):
    """alice buys ETH with USD (ledger); bob sells ETH from his house wallet (on chain)."""
    wallets = {p.code: wallet_provision(participant=p, chain=Chain.ETHEREUM, actor=ACTOR) for p in (alice, bob)}
    local_chain_fund(wallet=wallets["BOB"], asset=eth, amount=Decimal("10"), actor=ACTOR)
    local_chain_fund(wallet=wallets["ALICE"], asset=eth, amount=Decimal("1"), actor=ACTOR)
    factories.fund(alice, usd, Decimal("100000.00"))
    return wallets


def ledger_total(participant, asset) -> Decimal:
    rows = LedgerAccount.objects.filter(
        owner=participant, asset=asset, kind__in=[AccountKind.AVAILABLE, AccountKind.LOCKED]
    )
    return sum((row.balance for row in rows), Decimal(0))


def ledger_available(participant, asset) -> Decimal:
    row = LedgerAccount.objects.filter(owner=participant, asset=asset, kind=AccountKind.AVAILABLE).first()
    return row.balance if row else Decimal(0)
