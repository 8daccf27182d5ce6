"""Post random demo trades to a running server through the REST API, as the matching engine would."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from reference.models import Instrument, Participant

PRICES = {
    "BTC/USD": "65000",
    "ETH/USD": "3200",
    "SOL/USD": "150",
    "ETH/BTC": "0.049",
    "BTC/EUR": "60000",
    "AAPL/USD": "190",
    "MSFT/USD": "410",
    "EUR/USD": "1.08",
}


def random_trade(
    rng: random.Random, index: int, instruments: list[Instrument], codes: list[str], prefix: str
) -> dict[str, Any]:
    instrument = rng.choice(instruments)
    buyer, seller = rng.sample(codes, 2)
    base_price = Decimal(PRICES.get(instrument.symbol, "100"))
    price = (base_price * Decimal(rng.randint(9500, 10500)) / 10000).quantize(
        Decimal(1).scaleb(-instrument.price_precision)
    )
    if instrument.base.precision == 0:
        quantity = Decimal(rng.randint(1, 500))
    elif instrument.base.kind == "fiat":  # FX: a currency amount
        quantity = Decimal(rng.randint(1_000, 500_000))
    else:
        quantity = (Decimal(rng.randint(1, 2000)) / 1000).quantize(
            Decimal(1).scaleb(-min(3, instrument.base.precision))
        )
    # ECHO is thinly funded: its big trades fail settlement, which the demo wants to show.
    return {
        "external_id": f"{prefix}-{index:07d}",
        "symbol": instrument.symbol,
        "buyer": buyer,
        "seller": seller,
        "quantity": str(quantity),
        "price": str(price),
        "executed_at": (timezone.now() - timedelta(seconds=rng.randint(0, 600))).isoformat(),
    }


def post_json(url: str, token: str, payload: Any, timeout: float = 60) -> tuple[int, Any]:
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (operator-given http URL)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Command(BaseCommand):
    help = "Post demo trades to the API of a running server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--token", required=True)
        parser.add_argument("--trades", type=int, default=300)
        parser.add_argument("--batch", type=int, default=50)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--prefix", default="DEMO")

    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])  # noqa: S311 (demo data, not security)
        instruments = list(Instrument.objects.select_related("base", "quote"))
        codes = list(Participant.objects.values_list("code", flat=True))
        if not instruments or len(codes) < 2:
            raise CommandError("seed the database first (manage.py seed_demo)")
        url = options["url"].rstrip("/") + "/api/v1/trades/"
        created = existing = 0
        trades = [random_trade(rng, i, instruments, codes, options["prefix"]) for i in range(options["trades"])]
        for start in range(0, len(trades), options["batch"]):
            status, body = post_json(url, options["token"], {"trades": trades[start : start + options["batch"]]})
            if status not in (200, 201):
                raise CommandError(f"API answered {status}: {body}")
            created += body["created"]
            existing += body["existing"]
        # One bad batch, to show what an upstream system gets back for invalid input.
        bad = dict(trades[0], external_id=f"{options['prefix']}-BAD", buyer="NOBODY", quantity="-1")
        status, body = post_json(url, options["token"], {"trades": [bad]})
        self.stdout.write(f"Posted {len(trades)} trades: {created} created, {existing} already known.")
        self.stdout.write(f"An invalid trade is refused with HTTP {status}: {json.dumps(body['error']['detail'])}")
