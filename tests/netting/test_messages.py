"""Reading the networks' reports: a custodian's advice is outside input like any other."""

from __future__ import annotations

import pytest
from django.test import override_settings

from netting.messages import house_accounts, report_events


@pytest.mark.parametrize("kind", ["custody.fail", "custody.reject"])
def test_report_events_refuses_a_deeply_nested_custody_advice(kind):
    # given an advice nested far deeper than any real one (json.loads recurses once per level)
    content = "[" * 5000 + "]" * 5000
    # when / then it is refused as malformed before it is parsed, like the API's and imports' JSON
    with pytest.raises(ValueError, match="nested deeper"):
        report_events(kind=kind, content=content)


def test_report_events_reads_a_custody_fail_advice():
    # given a well-formed advice, when it is read, then it is one failing event with its reason
    advice = '{"reference": "R1", "reason": "LACK", "since": "2026-11-24"}'
    (event,) = report_events(kind="custody.fail", content=advice)
    assert (event.end_to_end_id, event.event, event.code) == ("R1", "failing", "LACK")


def test_house_accounts_skips_an_account_configured_without_identifier():
    # given a house account with an IBAN, one with a number only, and one with neither
    accounts = {"EUR": {"iban": "DE12500105170648489890"}, "USD": {"account": "4400123456"}, "GBP": {"bic": "X"}}
    # when the identifiers are listed, then the two that can appear in bookings are, sortable
    with override_settings(CLEARHOUSE_HOUSE_BANK_ACCOUNTS=accounts):
        assert sorted(house_accounts()) == ["4400123456", "DE12500105170648489890"]
