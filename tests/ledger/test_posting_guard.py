"""The balanced-journal guard of ledger migration 0002: every INSERT into postings must balance per
(journal, asset) over the rows it inserts, so every journal balances whatever path wrote it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from common.choices import AccountKind, JournalKind
from ledger.models import Journal, Posting
from ledger.services.ledger import account_for
from tests.factories import fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(alice, bob, usd):
    fund(alice, usd, "10.00")
    return (
        account_for(owner=alice, asset=usd, kind=AccountKind.AVAILABLE),
        account_for(owner=bob, asset=usd, kind=AccountKind.AVAILABLE),
    )


def test_posting_guard_is_one_trigger_per_statement():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgtype & 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = 'settlement_posting' AND t.tgname = 'settlement_posting_balanced'"
        )
        rows = cursor.fetchall()
    assert rows == [(0,)]  # bit 0 of tgtype: FOR EACH ROW; clear: FOR EACH STATEMENT


def test_posting_guard_accepts_many_balanced_journals_in_one_insert(accounts, usd):
    # given
    a, b = accounts
    journals = Journal.objects.bulk_create([Journal(kind=JournalKind.ADJUST, reference=f"j{n}") for n in range(3)])
    # when
    Posting.objects.bulk_create(
        posting
        for j in journals
        for posting in (
            Posting(journal=j, account=a, asset=usd, amount=Decimal("-1")),
            Posting(journal=j, account=b, asset=usd, amount=Decimal("1")),
        )
    )
    # then
    assert Posting.objects.filter(journal__in=journals).count() == 6


def test_posting_guard_refuses_an_insert_with_one_unbalanced_journal(accounts, usd):
    # given
    a, b = accounts
    good, bad = Journal.objects.bulk_create([Journal(kind=JournalKind.ADJUST, reference=r) for r in ("ok", "bad")])
    rows = [
        Posting(journal=good, account=a, asset=usd, amount=Decimal("-1")),
        Posting(journal=good, account=b, asset=usd, amount=Decimal("1")),
        Posting(journal=bad, account=a, asset=usd, amount=Decimal("-1")),
        Posting(journal=bad, account=b, asset=usd, amount=Decimal("0.99")),
    ]
    # when / then: the whole statement is refused, naming the journal
    with pytest.raises(IntegrityError, match=f"journal {bad.pk} does not balance"), transaction.atomic():
        Posting.objects.bulk_create(rows)
    assert not Posting.objects.filter(journal__in=[good, bad]).exists()


def test_posting_guard_refuses_a_journal_split_over_two_inserts(accounts, usd):
    """The price of checking per statement: a journal's postings go in one INSERT (the services
    write them so); two halves that would balance at commit are refused at the first."""
    a, b = accounts
    journal = Journal.objects.create(kind=JournalKind.ADJUST, reference="split")
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        Posting.objects.create(journal=journal, account=a, asset=usd, amount=Decimal("-1"))
        Posting.objects.create(journal=journal, account=b, asset=usd, amount=Decimal("1"))
    # and a balanced addition to a balanced journal keeps it balanced, so it is accepted
    Posting.objects.bulk_create(
        [
            Posting(journal=journal, account=a, asset=usd, amount=Decimal("-2")),
            Posting(journal=journal, account=b, asset=usd, amount=Decimal("2")),
        ]
    )
    assert Posting.objects.filter(journal=journal).count() == 2
