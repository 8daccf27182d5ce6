"""The transition log kept per batch: Merkle leaves per entry, one chained batch row per append,
after the legacy per-row chain; the verifier, the head statements and inclusion proofs."""

from __future__ import annotations

import copy
import hashlib
import json
import threading

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger.merkle import EMPTY_ROOT, MerkleBuilder, merkle_path, merkle_path_root, merkle_root
from ledger.models import AuditBatch, TransitionLog, TransitionLogHead
from ledger.models.audit import GENESIS_HASH
from ledger.selectors import transitions_of
from ledger.services.audit import (
    LogEntry,
    transition_log_anchor_head,
    transition_log_append,
    transition_log_deferred,
    transition_log_proof,
    transition_log_proof_check,
    transition_log_verify,
)
from ledger.services.audit_proof import ProofUnavailable
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db

SIZES = (5, 1, 7)  # three batches after three legacy rows; 7 leaves: an odd node carried up


def raw(sql: str, *params) -> None:
    """Tamper as a superuser with direct database access would: around the append-only triggers."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = DEFAULT")


def legacy_rows(count: int) -> list[TransitionLog]:
    """Rows of the per-row chain written before batching (batch NULL), with their head."""
    prev, rows = GENESIS_HASH, []
    for n in range(count):
        row = TransitionLog(
            entity_type="instruction",
            entity_id=900 + n,
            from_status="pending",
            to_status="failed",
            at=timezone.now(),
            actor_label="system:tests",
            reason=f"legacy {n}",
            prev_hash=prev,
            key_id=settings.CLEARHOUSE_AUDIT_HMAC_KEY_ID,
        )
        row.hash = row.compute_hash()
        row.save()
        prev = row.hash
        rows.append(row)
    TransitionLogHead.objects.update_or_create(pk=1, defaults={"last_hash": prev, "length": count, "batches": 0})
    return rows


def append(size: int, *, first_id: int) -> list[TransitionLog]:
    with transaction.atomic():
        return transition_log_append(
            entries=[
                LogEntry("instruction", first_id + n, "locked", "processing", f"r{n}", {"n": n}) for n in range(size)
            ],
            actor=ACTOR,
        )


@pytest.fixture
def chain():
    legacy = legacy_rows(3)
    batches = [append(size, first_id=100 * (k + 1)) for k, size in enumerate(SIZES)]
    return legacy, batches


def problems() -> list[str]:
    report = transition_log_verify()
    assert not report.ok
    return report.problems


def test_transition_log_verify_passes_on_legacy_rows_and_batches(chain):
    # given three legacy rows and batches of 5, 1 and 7 entries
    legacy, batches = chain
    rows = [batch[0].batch for batch in batches]
    # then the batches chain on from the legacy chain, entries are leaves and the head counts entries
    assert rows[0].prev_hash == legacy[-1].hash
    assert [b.seq for b in rows] == [1, 2, 3] and [b.length for b in rows] == [8, 9, 16]
    assert all(e.prev_hash == "" and e.batch_id == rows[k].uid for k, batch in enumerate(batches) for e in batch)
    assert [e.leaf_index for e in batches[2]] == list(range(7))
    assert rows[2].root == merkle_root([e.hash for e in batches[2]])
    head = TransitionLogHead.objects.get(pk=1)
    assert (head.length, head.batches, head.last_hash) == (16, 3, rows[2].hash)
    # when verified (also in tiny chunks, so every stream crosses chunk boundaries)
    for chunk_size in (5000, 2):
        report = transition_log_verify(chunk_size=chunk_size)
        assert report.ok, report.problems
        assert (report.checked, report.batches, report.last_hash) == (16, 3, rows[2].hash)


def test_transition_log_verify_detects_an_edited_entry(chain):
    _, batches = chain
    edited = batches[2][3]
    raw("UPDATE settlement_transitionlog SET metadata = '{\"n\": 99}' WHERE id = %s", edited.pk)
    assert problems() == [f"row {edited.pk}: content does not match its hash (edited)"]


def test_transition_log_verify_detects_a_removed_entry(chain):
    _, batches = chain
    removed = batches[0][2]
    raw("DELETE FROM settlement_transitionlog WHERE id = %s", removed.pk)
    found = problems()
    batch = removed.batch.pk
    assert (
        f"batch {batch}: row {batches[0][3].pk} is leaf 3, expected leaf 2 (entry removed, added or reordered)" in found
    )
    assert f"batch {batch}: holds 4 entries, its row says 5 (entries removed or added)" in found
    assert any(p.startswith(f"batch {batch}: its entries' Merkle root does not match") for p in found)
    assert any(p.startswith("chain head says 16 rows") for p in found)


def test_transition_log_verify_detects_an_added_entry(chain):
    # given an entry copied into a batch as an extra leaf (a valid leaf of another place)
    _, batches = chain
    source = batches[1][0]
    raw(
        "INSERT INTO settlement_transitionlog (entity_type, entity_id, from_status, to_status, at, actor_label, "
        "reason, metadata, prev_hash, hash, key_id, batch_uid, leaf_index) "
        "SELECT entity_type, entity_id, from_status, to_status, at, actor_label, reason, metadata, '', %s, key_id, "
        "batch_uid, 1 FROM settlement_transitionlog WHERE id = %s",
        hashlib.sha256(b"extra").hexdigest(),
        source.pk,
    )
    found = problems()
    assert any("content does not match its hash (edited)" in p for p in found)
    assert f"batch {source.batch.pk}: holds 2 entries, its row says 1 (entries removed or added)" in found


def test_transition_log_verify_detects_two_entries_swapped_in_their_batch(chain):
    # given two entries of a batch that traded places (leaf_index)
    _, batches = chain
    a, b = batches[2][1], batches[2][4]
    raw("UPDATE settlement_transitionlog SET leaf_index = 1000 WHERE id = %s", a.pk)
    raw("UPDATE settlement_transitionlog SET leaf_index = 1 WHERE id = %s", b.pk)
    raw("UPDATE settlement_transitionlog SET leaf_index = 4 WHERE id = %s", a.pk)
    # then both rows, and their batch's root, are reported
    found = problems()
    assert f"row {a.pk}: content does not match its hash (edited)" in found
    assert f"row {b.pk}: content does not match its hash (edited)" in found
    assert any(p.startswith(f"batch {a.batch.pk}: its entries' Merkle root does not match") for p in found)


def test_transition_log_verify_detects_two_entries_contents_swapped(chain):
    # given two entries whose whole content (hash included) was swapped, their places kept
    _, batches = chain
    a, b = batches[0][0], batches[0][1]
    for row, other in ((a, b), (b, a)):
        raw(
            "UPDATE settlement_transitionlog SET entity_id = %s, reason = %s, metadata = %s, hash = %s WHERE id = %s",
            other.entity_id,
            other.reason,
            json.dumps(other.metadata),
            "f" * 64 if row is a else other.hash,
            row.pk,
        )
    raw("UPDATE settlement_transitionlog SET hash = %s WHERE id = %s", b.hash, a.pk)
    found = problems()
    assert f"row {a.pk}: content does not match its hash (edited)" in found
    assert f"row {b.pk}: content does not match its hash (edited)" in found
    assert any(p.startswith(f"batch {a.batch.pk}: its entries' Merkle root does not match") for p in found)


def test_transition_log_verify_detects_an_entry_moved_to_another_batch(chain):
    _, batches = chain
    moved = batches[0][4]
    raw(
        "UPDATE settlement_transitionlog SET batch_uid = %s, leaf_index = 1 WHERE id = %s",
        batches[1][0].batch_id,
        moved.pk,
    )
    found = problems()
    assert f"row {moved.pk}: content does not match its hash (edited)" in found
    assert f"batch {moved.batch.pk}: holds 4 entries, its row says 5 (entries removed or added)" in found
    assert f"batch {batches[1][0].batch.pk}: holds 2 entries, its row says 1 (entries removed or added)" in found


def test_transition_log_verify_detects_a_removed_batch_row_without_its_entries(chain):
    _, batches = chain
    middle, after = batches[1][0].batch, batches[2][0].batch
    raw("DELETE FROM settlement_auditbatch WHERE id = %s", middle.pk)
    found = problems()
    assert f"batch {after.pk}: seq 3 follows seq 1 (batch removed or reordered)" in found
    assert f"batch {after.pk}: prev_hash does not match the batch before it (removed or reordered)" in found
    assert f"row {batches[1][0].pk}: its batch {middle.uid} is missing (batch removed)" in found
    assert "chain head says 3 batches, found 2 (batches removed or added)" in found


def test_transition_log_verify_detects_a_removed_batch_with_its_entries(chain):
    _, batches = chain
    first, after = batches[0][0].batch, batches[1][0].batch
    raw("DELETE FROM settlement_transitionlog WHERE batch_uid = %s", first.uid)
    raw("DELETE FROM settlement_auditbatch WHERE id = %s", first.pk)
    found = problems()
    assert f"batch {after.pk}: seq 2 follows seq 0 (batch removed or reordered)" in found
    assert f"batch {after.pk}: prev_hash does not match the batch before it (removed or reordered)" in found
    assert any(p.startswith(f"batch {after.pk}: says 9 entries through it, the chain before it has 3") for p in found)
    assert any(p.startswith("chain head says 16 rows") for p in found)


def test_transition_log_verify_detects_reordered_batches(chain):
    _, batches = chain
    a, b = batches[0][0].batch, batches[1][0].batch
    raw("UPDATE settlement_auditbatch SET seq = 100 WHERE id = %s", a.pk)
    raw("UPDATE settlement_auditbatch SET seq = 1 WHERE id = %s", b.pk)
    raw("UPDATE settlement_auditbatch SET seq = 2 WHERE id = %s", a.pk)
    found = problems()
    assert f"batch {b.pk}: content does not match its hash (edited)" in found
    assert f"batch {b.pk}: prev_hash does not match the batch before it (removed or reordered)" in found
    assert f"batch {a.pk}: prev_hash does not match the batch before it (removed or reordered)" in found


def test_transition_log_verify_detects_the_head_cut_back(chain, audit_anchor_file):
    # given the head anchored outside the database
    _, batches = chain
    transition_log_anchor_head()
    # when the last batch is removed with its entries and the head set back to the batch before it
    last, before = batches[2][0].batch, batches[1][0].batch
    raw("DELETE FROM settlement_transitionlog WHERE batch_uid = %s", last.uid)
    raw("DELETE FROM settlement_auditbatch WHERE id = %s", last.pk)
    raw("UPDATE settlement_transitionloghead SET last_hash = %s, length = 9, batches = 2 WHERE id = 1", before.hash)
    # then the chain agrees with the head, but not with the anchor
    found = problems()
    assert len(found) == 1 and "says 16 rows, the chain has 9 (rows removed)" in found[0]


def test_transition_log_verify_detects_the_head_moved_back_alone(chain):
    _, batches = chain
    before = batches[1][0].batch
    raw("UPDATE settlement_transitionloghead SET last_hash = %s, length = 9, batches = 2 WHERE id = 1", before.hash)
    found = problems()
    assert any(p.startswith("chain head says 9 rows") for p in found)
    assert "chain head says 2 batches, found 3 (batches removed or added)" in found


def test_transition_log_verify_detects_an_unkeyed_batched_entry(chain):
    _, batches = chain
    row = batches[0][0]
    raw("UPDATE settlement_transitionlog SET key_id = '' WHERE id = %s", row.pk)
    assert f"row {row.pk}: unkeyed entry in batch {row.batch.pk}: forged" in problems()


def test_audit_batches_refuse_update_delete_and_truncate(chain):
    for sql in (
        "UPDATE settlement_auditbatch SET entries = 0",
        "DELETE FROM settlement_auditbatch",
        "TRUNCATE settlement_auditbatch",
    ):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql)
    assert AuditBatch.objects.count() == 3


def test_transition_log_append_takes_the_head_last_for_two_statements():
    # given a log with one batch (the head row exists)
    append(1, first_id=1)
    # when a transaction appends 2,500 entries in a deferred block
    with CaptureQueriesContext(connection) as queries, transaction.atomic(), transition_log_deferred():
        transition_log_append(
            entries=[LogEntry("instruction", n, "a", "b") for n in range(2500)],
            actor=ACTOR,
        )
    # then: the entries in two inserts, and only then the head, for two statements
    sql = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(sql) == 4
    assert all(s.startswith('INSERT INTO "settlement_transitionlog"') for s in sql[:2])
    assert "FOR UPDATE" in sql[2] and "settlement_transitionloghead" in sql[2]
    assert "INSERT INTO settlement_auditbatch" in sql[3] and "UPDATE settlement_transitionloghead" in sql[3]
    assert transition_log_verify().ok
    assert TransitionLogHead.objects.get(pk=1).length == 2501


def test_transition_log_append_rolled_back_leaves_no_trace(chain):
    # given an append whose transaction fails after it
    with pytest.raises(RuntimeError), transaction.atomic():
        append(4, first_id=7000)
        raise RuntimeError("caller failed")
    # then nothing of it stays and the chain goes on intact (a batch id skipped is no gap: seq is)
    append(2, first_id=8000)
    report = transition_log_verify()
    assert report.ok and report.checked == 18 and report.batches == 4


def test_per_entity_history_is_kept(chain):
    append(1, first_id=302)  # instruction 302 again, in a later batch
    history = transitions_of("instruction", 302)
    assert [(e.batch.seq, e.leaf_index) for e in history] == [(3, 2), (4, 0)]


def test_transition_log_proof_round_trip(chain):
    # given every entry of the batches
    _, batches = chain
    for batch in batches:
        for entry in batch:
            # when its proof is made and passed around as JSON
            proof = json.loads(json.dumps(transition_log_proof(entry_id=entry.pk)))
            # then it checks, names the entry's leaf and its batch
            assert transition_log_proof_check(proof)
            assert proof["leaf"] == entry.hash and proof["batch"]["uid"] == str(entry.batch_id)


def forged(proof: dict, change) -> dict:
    other = copy.deepcopy(proof)
    change(other)
    return other


def test_transition_log_proof_check_refuses_a_forged_proof(chain, settings):
    _, batches = chain
    proof = transition_log_proof(entry_id=batches[2][4].pk)

    def forge_root(p):  # a root of another tree, the path and proof made to match it
        p["root"] = p["batch"]["root"] = merkle_path_root(
            p["leaf"], [*p["path"][:-1], p["path"][-1] | {"hash": "0" * 64}]
        )
        p["path"][-1]["hash"] = "0" * 64

    changes = [
        lambda p: p["entry"].update(reason="nothing to see"),
        lambda p: p["entry"].update(leaf_index=3),
        lambda p: p["entry"].update(batch=str(batches[0][0].batch_id)),
        lambda p: p.update(leaf=hashlib.sha256(b"x").hexdigest()),
        lambda p: p["path"][0].update(hash="0" * 64),
        lambda p: p["path"][0].update(side="right" if p["path"][0]["side"] == "left" else "left"),
        lambda p: p["path"].pop(),
        forge_root,
        lambda p: p["batch"].update(seq=99),
        lambda p: p["batch"].update(prev_hash="0" * 64),
        lambda p: p.pop("batch"),
        lambda p: p["entry"].update(at="not a time"),
    ]
    assert transition_log_proof_check(proof)
    for change in changes:
        assert not transition_log_proof_check(forged(proof, change))
    # and without the key the batch was sealed under, nothing checks
    settings.CLEARHOUSE_AUDIT_HMAC_KEYS = {"other": "key"}
    assert not transition_log_proof_check(proof)


def test_transition_log_proof_is_refused_for_a_legacy_entry(chain):
    legacy, _ = chain
    with pytest.raises(ProofUnavailable, match="predates batching"):
        transition_log_proof(entry_id=legacy[0].pk)
    with pytest.raises(ProofUnavailable, match="no transition-log entry"):
        transition_log_proof(entry_id=10**9)


def test_merkle_stream_and_paths_agree_with_the_tree():
    assert merkle_root([]) == EMPTY_ROOT == MerkleBuilder().root()
    for count in range(1, 40):
        leaves = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)]
        builder = MerkleBuilder()
        for leaf in leaves:
            builder.add(leaf)
        root = merkle_root(leaves)
        assert builder.root() == root
        assert all(merkle_path_root(leaf, merkle_path(leaves, n)) == root for n, leaf in enumerate(leaves))
    # a leaf list and the same list with its last leaf doubled never share a root
    leaves = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(3)]
    assert merkle_root(leaves) != merkle_root([*leaves, leaves[-1]])


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_chain_one_batch_after_another():
    # given four workers that each append five batches of 300 entries at once
    TransitionLogHead.objects.get_or_create(pk=1)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            barrier.wait()
            for round_ in range(5):
                append(300, first_id=number * 10_000 + round_ * 300)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every batch found its place in one chain, and the head counts them all
    assert errors == []
    report = transition_log_verify()
    assert report.ok, report.problems
    assert (report.checked, report.batches) == (6000, 20)
    assert list(AuditBatch.objects.values_list("seq", flat=True)) == list(range(1, 21))
