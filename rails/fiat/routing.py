"""Which payment method carries a fiat payment, and which one to try after a rejection.

The rules read the configuration in ``settings.CLEARHOUSE_FIAT_ROUTING``:

* USD to a US account (ABA routing number): ACH, unless the amount is above ``ach_max`` or the
  payment is urgent (value date today or earlier: ACH needs a business day), then WIRE.
* EUR to an IBAN in the SEPA zone with a BIC: SEPA credit transfer.
* Anything else (another currency, a non-SEPA IBAN, USD to an account abroad): SWIFT.

A rejection whose ISO 20022 reason code says the *method* was the problem (amount over the
method's limit, transaction type not allowed, cut-off missed, ...) is retried by the method's
fallback (ACH → WIRE, SEPA → SWIFT) while attempts remain; a rejection about the *account*
(AC04 closed, AM04 insufficient funds, AC01 wrong number) goes to manual review at once, because
another method would be refused for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException


@dataclass(frozen=True)
class AccountDetails:
    """The bank details the choice depends on (a participant's ``BankAccount`` or the house's)."""

    iban: str = ""
    bic: str = ""
    aba: str = ""
    account: str = ""


class NoRoute(Exception):
    """No method can carry this payment with these bank details."""


def _config() -> dict:
    return settings.CLEARHOUSE_FIAT_ROUTING


def _in_sepa(iban: str) -> bool:
    try:
        return IBAN(iban).in_sepa_zone
    except SchwiftyException:
        return False


def method_choose(*, currency: str, amount: Decimal, urgent: bool, account: AccountDetails) -> str:
    """The first method to try for a payment to or from ``account``."""
    if currency == "USD" and account.aba and account.account:
        if urgent or amount > Decimal(_config()["ach_max"]):
            return "wire"
        return "ach"
    if currency == "EUR" and account.iban and account.bic and _in_sepa(account.iban):
        return "sepa"
    if account.iban and account.bic:
        return "swift"
    raise NoRoute(f"no payment method for {currency} with these bank details (need ABA + account or IBAN + BIC)")


def method_fallback(*, method: str, reason_code: str, attempts: int, account: AccountDetails) -> str | None:
    """The method to try after ``method`` was rejected with ``reason_code``, or None (review)."""
    config = _config()
    if reason_code not in config["reroute_reasons"] or attempts >= int(config["max_attempts"]):
        return None
    nxt = config["fallback"].get(method)
    if nxt == "wire" and not (account.aba and account.account):
        return None
    if nxt == "swift" and not (account.iban and account.bic):
        return None
    return nxt
