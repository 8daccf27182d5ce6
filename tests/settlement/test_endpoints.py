import pytest
from django.core.exceptions import ValidationError

from reference.models import BankAccount, CustodyAccount, Participant
from tests.factories import ParticipantFactory

pytestmark = pytest.mark.django_db


def bank(participant, currency, **fields) -> BankAccount:
    return BankAccount(participant=participant, currency=currency, holder_name="Alice Ltd", **fields)


def test_valid_iban_and_bic_are_normalised(alice, usd):
    account = bank(alice, usd, iban="de89 3704 0044 0532 0130 00", bic="cobadeffxxx")
    account.full_clean()
    assert account.iban == "DE89370400440532013000"
    assert account.bic == "COBADEFFXXX"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"iban": "DE89370400440532013001"}, "iban"),  # checksum wrong
        ({"iban": "DE89370400440532013000", "bic": "NOTABIC"}, "bic"),
        ({"aba_routing": "021000022", "account_number": "123"}, "aba_routing"),  # check digit wrong
        ({"aba_routing": "021000021"}, "account_number"),
        ({}, "iban"),
    ],
)
def test_invalid_bank_details_are_refused(alice, usd, fields, bad_field):
    with pytest.raises(ValidationError) as exc:
        bank(alice, usd, **fields).full_clean()
    assert bad_field in exc.value.message_dict


def test_valid_aba_routing_is_accepted(alice, usd):
    bank(alice, usd, aba_routing="021000021", account_number="9000001").full_clean()


def test_lei_is_validated():
    ParticipantFactory.build(code="OKAY", lei="5493001KJTIIGC8Y1R12").full_clean()
    with pytest.raises(ValidationError):
        Participant(code="BAD", name="x", lei="5493001KJTIIGC8Y1R13").full_clean()


def test_custody_account_needs_a_real_bic(alice):
    with pytest.raises(ValidationError):
        CustodyAccount(participant=alice, custodian_bic="XX", account_id="1").full_clean()
