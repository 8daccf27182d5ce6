"""Where a netted payment goes: the participant's bank or custody account on file and the payment
method (``rails.fiat.routing``; securities go to the custodian; assets without an external rail
are a book transfer), and what a batch of payments reads once instead of per payment."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from common.choices import AssetKind
from netting.fees import NettedFeeBook, netted_fee_book
from netting.messages import Route
from netting.models import Direction, NettedInstruction, RailMethod
from rails.fiat.routing import AccountDetails, NoRoute, method_choose
from reference.models import BankAccount, CustodyAccount


@dataclass
class Batch:
    """What a batch of netted instructions reads once instead of per payment (issue 19): the
    participants' bank and custody accounts on file and the fee book. Read before the rows are
    locked; each row is still re-read under its lock."""

    banks: dict[tuple[int, int], BankAccount]
    custody: dict[int, CustodyAccount]
    fees: NettedFeeBook | None

    @classmethod
    def load(cls, ids: list[int]) -> Batch:
        rows = list(NettedInstruction.objects.filter(pk__in=ids).values_list("participant_id", "asset_id"))
        participants = {p for p, _ in rows}
        banks: dict[tuple[int, int], BankAccount] = {}
        for bank in BankAccount.objects.filter(participant_id__in=participants).order_by("pk"):
            banks.setdefault((bank.participant_id, bank.currency_id), bank)
        custody: dict[int, CustodyAccount] = {}
        for account in CustodyAccount.objects.filter(participant_id__in=participants).order_by("pk"):
            custody.setdefault(account.participant_id, account)
        return cls(banks=banks, custody=custody, fees=netted_fee_book(netted_ids=ids))


def participant_route(ni: NettedInstruction, batch: Batch | None = None) -> Route:
    """The method and the participant's account details of a payment (raises ``NoRoute``)."""
    asset = ni.asset
    if asset.kind == AssetKind.SECURITY:
        if batch is not None:
            custody = batch.custody.get(ni.participant_id)
        else:
            custody = CustodyAccount.objects.filter(participant=ni.participant).order_by("pk").first()
        if custody is None:
            raise NoRoute(f"{ni.participant.code} has no custody account on file")
        details = AccountDetails(bic=custody.custodian_bic, account=custody.account_id)
        return Route(RailMethod.CUSTODY, details, ni.participant.name)
    if asset.kind != AssetKind.FIAT:
        return Route(RailMethod.LEDGER, AccountDetails(), ni.participant.name)
    if batch is not None:
        bank = batch.banks.get((ni.participant_id, asset.pk))
    else:
        bank = BankAccount.objects.filter(participant=ni.participant, currency=asset).order_by("pk").first()
    if bank is None:
        raise NoRoute(f"{ni.participant.code} has no {asset.code} bank account on file")
    details = AccountDetails(iban=bank.iban, bic=bank.bic, aba=bank.aba_routing, account=bank.account_number)
    # A pay-out leaves once the pay-ins have landed, on the settlement date itself: it must arrive
    # that day. A pay-in submitted on the settlement date or later is late already.
    urgent = ni.direction == Direction.PAY_OUT or ni.settlement_date <= timezone.localdate()
    method = ni.method or method_choose(currency=asset.code, amount=ni.amount, urgent=urgent, account=details)
    return Route(method, details, bank.holder_name)
