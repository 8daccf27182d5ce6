"""Payment method choice and fallback rules (rails/fiat/routing.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rails.fiat.routing import AccountDetails, NoRoute, method_choose, method_fallback

US = AccountDetails(aba="011000015", account="770001")
SEPA = AccountDetails(iban="DE13370400440532013010", bic="COBADEFFXXX")
ABROAD = AccountDetails(iban="BR1500000000000010932840814P2", bic="BRASBRRJXXX")


@pytest.mark.parametrize(
    ("currency", "amount", "urgent", "account", "method"),
    [
        ("USD", "999.99", False, US, "ach"),
        ("USD", "1000000.00", False, US, "ach"),
        ("USD", "1000000.01", False, US, "wire"),
        ("USD", "10.00", True, US, "wire"),
        ("EUR", "5000.00", False, SEPA, "sepa"),
        ("EUR", "5000.00", False, ABROAD, "swift"),
        ("USD", "5000.00", False, SEPA, "swift"),
        ("GBP", "5000.00", False, SEPA, "swift"),
    ],
)
def test_method_is_chosen_by_currency_amount_urgency_and_bank_details(currency, amount, urgent, account, method):
    assert method_choose(currency=currency, amount=Decimal(amount), urgent=urgent, account=account) == method


def test_no_usable_bank_details_is_no_route():
    with pytest.raises(NoRoute):
        method_choose(currency="USD", amount=Decimal(1), urgent=False, account=AccountDetails(aba="011000015"))


def test_fallback_only_for_method_reasons_and_within_the_attempt_limit():
    assert method_fallback(method="ach", reason_code="AM02", attempts=1, account=US) == "wire"
    assert method_fallback(method="sepa", reason_code="AG01", attempts=1, account=SEPA) == "swift"
    assert (
        method_fallback(method="ach", reason_code="AC04", attempts=1, account=US) is None
    )  # the account, not the method
    assert method_fallback(method="ach", reason_code="AM04", attempts=1, account=US) is None
    assert method_fallback(method="wire", reason_code="AM02", attempts=2, account=US) is None  # no further method
    assert method_fallback(method="ach", reason_code="AM02", attempts=3, account=US) is None  # attempts used up
    assert (
        method_fallback(
            method="sepa", reason_code="AM02", attempts=1, account=AccountDetails(iban="DE13370400440532013010")
        )
        is None
    )
