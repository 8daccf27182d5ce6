"""Settling a closed window's plan through the central settlement account (CSA), by stage.

Each non-zero net obligation becomes a ``NettedInstruction``: a pay-in (participant → CSA) or a
pay-out (CSA → participant). Then, per instruction:

1. ``plan`` - created set-based when the window closes, then dispatched in batches.
2. ``lock`` - pay-in: the participant's funds are locked on the ledger; pay-out: the CSA's. A
   pay-out waits until the participant's own pay-ins of the window and date have settled
   (delivery versus payment on the net) and until the CSA holds the value.
3. ``send`` - the payment method is chosen (``routes``), the message is built and stored with its
   ids *before* it is sent, then handed to the network. No answer → the same message is sent
   again later (the network deduplicates by message id, so it pays once).
4. ``events`` and ``reports`` - status reports, booking notifications and custody confirmations
   are fetched, stored raw and applied: settled → booked; rejected → the next method when the
   reason allows it, else manual review.
5. ``booking`` - a settled payment's lock posts (pay-in to the CSA, pay-out to the participant);
   when every instruction of a window and settlement date has settled, every trade leg of that
   window and date settles. Netting then settling moves each participant's balance by exactly
   the sum of its legs: the same final ledger as settling every leg gross.
6. ``custody`` - the fail report of custody deliveries and the buy-in cases.

``operations`` holds what ops do (release past the cap, retry from review) and the sweeper; the
fees of netted payments are ``netting.fees``; tasks are enqueued by name (``netting.dispatch``),
so nothing here imports ``netting.tasks``.

Lock order: netted instruction rows → netting window row → ledger accounts → transition-log head.
The trade legs of a window are changed only under its row: while it is open by ingest and by
``trade_cancel`` (which take the window row before any leg, so neither holds a leg while waiting
for the window), once it is closed by ``legs_settle_netted``.

What other modules use is importable from here; the stage modules are the package's own.
"""

from __future__ import annotations

from netting.pipeline.base import CSA, PLAN
from netting.pipeline.booking import attempts_settle, legs_settle_netted
from netting.pipeline.custody import custody_buy_in_check, custody_fails
from netting.pipeline.events import attempt_event
from netting.pipeline.operations import netted_release, netted_retry, netted_sweep
from netting.pipeline.plan import plan_create, plan_start
from netting.pipeline.reports import rail_reports_fetch, reports_apply, reports_apply_until
from netting.pipeline.send import attempt_send, netted_advance, netted_advance_until

__all__ = [
    "CSA",
    "PLAN",
    "attempt_event",
    "attempt_send",
    "attempts_settle",
    "custody_buy_in_check",
    "custody_fails",
    "legs_settle_netted",
    "netted_advance",
    "netted_advance_until",
    "netted_release",
    "netted_retry",
    "netted_sweep",
    "plan_create",
    "plan_start",
    "rail_reports_fetch",
    "reports_apply",
    "reports_apply_until",
]
