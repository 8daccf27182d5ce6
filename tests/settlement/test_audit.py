from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from common.choices import Leg
from ledger.models import AuditBatch, TransitionLog
from ledger.services.audit import transition_log_verify
from ledger.tasks import transition_log_anchor_task, transition_log_verify_task
from ops.models import OpsAlert
from settlement.services.instructions import instruction_cancel, instruction_fail, instruction_retry
from tests.factories import ACTOR, trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged(alice, bob, btc_usd):
    for n in range(3):
        t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id=f"T{n}")
        leg = t.instructions.get(leg=Leg.DELIVERY)
        instruction_fail(instruction=leg, actor=ACTOR, reason=f"fail {n}")  # one log row each
    return list(TransitionLog.objects.order_by("id"))


def raw(sql: str, *params) -> None:
    """Tamper as a superuser with direct database access would: around the append-only trigger."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # triggers off, as a superuser could
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = DEFAULT")


def test_chain_links_every_batch_to_the_previous(logged):
    # each transition appended alone is a batch of one entry: its leaf hash, the batch chained
    assert len(logged) == 3
    batches = list(AuditBatch.objects.order_by("seq"))
    assert [row.batch_id for row in logged] == [batch.uid for batch in batches]
    assert [row.prev_hash for row in logged] == ["", "", ""]
    for before, after in itertools.pairwise(batches):
        assert after.prev_hash == before.hash
    report = transition_log_verify()
    assert report.ok and report.checked == 3 and report.batches == 3
    call_command("verify_transition_log")


def test_log_rows_cannot_be_updated_or_deleted(logged):
    for sql in ("UPDATE settlement_transitionlog SET reason = 'x'", "DELETE FROM settlement_transitionlog"):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql)


def test_verify_detects_an_edited_row(logged):
    raw("UPDATE settlement_transitionlog SET reason = 'nothing to see' WHERE id = %s", logged[1].pk)
    report = transition_log_verify()
    assert not report.ok
    assert any(f"row {logged[1].pk}: content does not match" in p for p in report.problems)
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("verify_transition_log")


def test_verify_detects_a_deleted_row(logged):
    raw("DELETE FROM settlement_transitionlog WHERE id = %s", logged[1].pk)
    report = transition_log_verify()
    assert any(f"batch {logged[1].batch.pk}: holds 0 entries" in p for p in report.problems)


def test_verify_detects_a_truncated_tail(logged):
    raw("DELETE FROM settlement_transitionlog WHERE id = %s", logged[2].pk)
    report = transition_log_verify()
    assert any("chain head says 3 rows" in p for p in report.problems)


def test_chain_continues_across_transitions(logged, alice, bob, btc_usd):
    leg = TransitionLog.objects.last()
    from settlement.models import SettlementInstruction

    instruction = SettlementInstruction.objects.get(pk=leg.entity_id)
    # a retry appends to the same chain
    instruction_retry(instruction=instruction, actor=ACTOR, reason="x")
    report = transition_log_verify()
    assert report.ok and report.checked == 4


def reforge_unkeyed(reason: str) -> None:
    """What someone with the database but not the HMAC key can do: edit a row and rebuild the whole
    log as a per-row chain of the oldest kind (no batches), with the only hash they can compute,
    plain SHA-256, and its head to match."""
    prev = "0" * 64
    for row in TransitionLog.objects.order_by("id"):
        row.reason, row.key_id, row.prev_hash, row.batch_id, row.leaf_index = reason, "", prev, None, None
        row.hash = row.compute_hash()
        raw(
            "UPDATE settlement_transitionlog SET reason = %s, key_id = '', prev_hash = %s, hash = %s, "
            "batch_uid = NULL, leaf_index = NULL WHERE id = %s",
            row.reason,
            row.prev_hash,
            row.hash,
            row.pk,
        )
        prev = row.hash
    raw("DELETE FROM settlement_auditbatch")
    raw("UPDATE settlement_transitionloghead SET last_hash = %s, batches = 0 WHERE id = 1", prev)


def test_transition_log_append_keys_every_row_with_the_audit_hmac(logged, settings, alice, bob, btc_usd):
    # given rows appended under the configured key
    old_key = settings.CLEARHOUSE_AUDIT_HMAC_KEY_ID
    assert {row.key_id for row in logged} == {old_key}
    # when the key is rotated (the old one kept for verification) and the chain goes on
    settings.CLEARHOUSE_AUDIT_HMAC_KEYS = {**settings.CLEARHOUSE_AUDIT_HMAC_KEYS, "k2": "a-new-key"}
    settings.CLEARHOUSE_AUDIT_HMAC_KEY_ID = "k2"
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id="T9")
    instruction_cancel(instruction=t.instructions.get(leg=Leg.DELIVERY), actor=ACTOR, reason="after rotation")
    # then old and new rows verify, each under its own key, and without the old key the old rows cannot
    assert TransitionLog.objects.last().key_id == "k2"
    assert transition_log_verify().ok
    settings.CLEARHOUSE_AUDIT_HMAC_KEYS = {"k2": "a-new-key"}
    report = transition_log_verify()
    assert any("is not configured" in p for p in report.problems)


def test_transition_log_verify_detects_a_chain_reforged_without_the_key(logged):
    # given someone rewrote a reason and rebuilt every hash and the head, without the HMAC key
    reforge_unkeyed("nothing to see")
    # when the chain is verified
    report = transition_log_verify()
    # then the forged rows are found
    assert not report.ok
    assert any("unkeyed" in p and "forged" in p for p in report.problems)


def test_transition_log_verify_accepts_the_rows_before_the_cut_over(logged, settings):
    # given a chain whose first rows predate the HMAC (plain SHA-256), as an upgraded deployment has
    reforge_unkeyed("cancel")
    # when the count of legacy rows is configured, then they verify; one fewer and the last is forged
    settings.CLEARHOUSE_AUDIT_LEGACY_ROWS = 3
    assert transition_log_verify().ok
    settings.CLEARHOUSE_AUDIT_LEGACY_ROWS = 2
    assert any(f"row {logged[2].pk}: unkeyed" in p for p in transition_log_verify().problems)


def test_transition_log_verify_detects_truncate_with_the_head_reset(logged, audit_anchor_file):
    # given the hourly check anchored the intact chain outside the database
    assert transition_log_verify_task() is True
    anchored = [json.loads(line) for line in audit_anchor_file.read_text().splitlines()]
    assert [a["length"] for a in anchored] == [3]
    # when a superuser empties the log and resets the head row to the genesis state
    raw("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses to run past pending FK checks
    raw("TRUNCATE settlement_transitionlog")
    raw("UPDATE settlement_transitionloghead SET last_hash = %s, length = 0 WHERE id = 1", "0" * 64)
    # then the verifier and its command report the missing rows
    report = transition_log_verify()
    assert any("anchor of" in p and "says 3 rows, the chain has 0" in p for p in report.problems)
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("verify_transition_log")


def test_transition_log_anchor_task_catches_a_cut_tail_before_the_hourly_check(logged, audit_anchor_file):
    # given beat copied the head outside the database (twice: the second finds nothing new)
    transition_log_anchor_task()
    transition_log_anchor_task()
    assert len(audit_anchor_file.read_text().splitlines()) == 1
    # when the last row is removed with its batch and the head row set back to the batch before it
    raw("DELETE FROM settlement_transitionlog WHERE id = %s", logged[2].pk)
    raw("DELETE FROM settlement_auditbatch WHERE uid = %s", logged[2].batch_id)
    before = AuditBatch.objects.get(uid=logged[1].batch_id)
    raw("UPDATE settlement_transitionloghead SET last_hash = %s, length = 2, batches = 2 WHERE id = 1", before.hash)
    # then the chain and the head agree, but not with the anchor
    report = transition_log_verify()
    assert report.problems == [
        f"anchor of {json.loads(audit_anchor_file.read_text())['at']} says 3 rows, the chain has 2 (rows removed)"
    ]


def test_transition_log_verify_task_alerts_when_the_chain_is_broken(logged, audit_anchor_file):
    # given an edited row
    raw("UPDATE settlement_transitionlog SET reason = 'x' WHERE id = %s", logged[0].pk)
    # when the hourly check runs (twice)
    with_alert = transition_log_verify_task(), transition_log_verify_task()
    # then it alerts the auditors once, critical, and anchors nothing
    assert with_alert == (False, False)
    alert = OpsAlert.objects.get()
    assert alert.level == "critical" and "auditor" in alert.roles and "BROKEN" in alert.title
    assert not audit_anchor_file.exists()


def test_transition_log_verify_detects_an_edited_anchor(logged, audit_anchor_file):
    # given an anchor, edited to match a shorter chain
    transition_log_verify_task()
    line = json.loads(audit_anchor_file.read_text())
    line["length"] = 2
    line["hash"] = hashlib.sha256(b"x").hexdigest()
    audit_anchor_file.write_text(json.dumps(line) + "\n")
    # when the chain is verified, then the unsigned anchor is reported
    assert any("not signed" in p for p in transition_log_verify().problems)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (None, "CLEARHOUSE_AUDIT_HMAC_KEY must be set"),
        ("prod-secret", "must not be SECRET_KEY"),
        ("a-separate-audit-key", None),
    ],
)
def test_settings_require_a_separate_audit_key_in_production(key, error):
    # given production settings (DEBUG off, a database URL), outside the test run
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "CLEARHOUSE_AUDIT_HMAC_KEY")}
    env |= {"DEBUG": "0", "DATABASE_URL": "postgres://app@db.invalid/clearhouse", "SECRET_KEY": "prod-secret"}
    if key is not None:
        env["CLEARHOUSE_AUDIT_HMAC_KEY"] = key
    # when the settings load
    done = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.CLEARHOUSE_AUDIT_HMAC_KEY_ID)"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # then they refuse a missing key or SECRET_KEY reused, and take a separate key under its id
    if error:
        assert done.returncode != 0 and error in done.stderr
    else:
        assert done.returncode == 0 and done.stdout.strip() == "k1"


def test_transition_log_verify_reports_an_unreadable_anchor_file(logged, audit_anchor_file):
    # given an anchor file that cannot be read (here: a directory in its place)
    audit_anchor_file.mkdir()
    # when the chain is verified, then that is a problem, not a crash
    assert any("cannot be read" in p for p in transition_log_verify().problems)
