"""Inclusion proofs: one transition-log entry, its batch's Merkle path and the keyed batch hash.

A proof is plain JSON (it can be handed to an auditor): the entry's content, its leaf hash, the
sibling path up to the batch's root and the batch row. ``transition_log_proof_check`` needs no
database, only the audit keys: the leaf must be the HMAC of the entry's content at its place, the
path must lead from it to the root, and the batch's HMAC must cover that root. That the batch is
in the chain is the verifier's part (``transition_log_verify``), as is the legacy per-row chain,
whose entries have no proof.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from common.exceptions import DomainError
from ledger.merkle import merkle_path, merkle_path_root, merkle_path_sides
from ledger.models import AuditBatch, TransitionLog
from ledger.models.audit import UnknownAuditKey, batch_hash, leaf_hash


class ProofUnavailable(DomainError):
    code = "proof_unavailable"


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def transition_log_proof(*, entry_id: int) -> dict[str, Any]:
    """The inclusion proof of one batched entry (``ProofUnavailable`` for a missing entry, one of
    the legacy chain or one whose batch is missing)."""
    entry = TransitionLog.objects.filter(pk=entry_id).first()
    if entry is None:
        raise ProofUnavailable(f"no transition-log entry {entry_id}", detail={"entry": entry_id})
    if entry.batch_id is None or entry.leaf_index is None:
        raise ProofUnavailable(
            f"entry {entry_id} predates batching: the legacy chain proves it (transition_log_verify)",
            detail={"entry": entry_id},
        )
    batch = AuditBatch.objects.filter(uid=entry.batch_id).first()
    if batch is None:
        raise ProofUnavailable(f"the batch of entry {entry_id} is missing", detail={"entry": entry_id})
    leaves = list(TransitionLog.objects.filter(batch=batch).order_by("leaf_index").values_list("hash", flat=True))
    return {
        "entry": {
            "id": entry.pk,
            "entity_type": entry.entity_type,
            "entity_id": entry.entity_id,
            "from_status": entry.from_status,
            "to_status": entry.to_status,
            "at": _stamp(entry.at),
            "actor_id": entry.actor_id,
            "actor_label": entry.actor_label,
            "reason": entry.reason,
            "metadata": entry.metadata,
            "key_id": entry.key_id,
            "batch": str(entry.batch_id),
            "leaf_index": entry.leaf_index,
        },
        "leaf": entry.hash,
        "path": merkle_path(leaves, entry.leaf_index) if entry.leaf_index < len(leaves) else [],
        "root": batch.root,
        "batch": {
            "id": batch.pk,
            "uid": str(batch.uid),
            "seq": batch.seq,
            "length": batch.length,
            "entries": batch.entries,
            "root": batch.root,
            "prev_hash": batch.prev_hash,
            "at": _stamp(batch.at),
            "key_id": batch.key_id,
            "hash": batch.hash,
        },
    }


def _same(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)


def transition_log_proof_check(proof: Mapping[str, Any]) -> bool:
    """True when ``proof`` shows its entry, as written, is leaf ``leaf_index`` of a batch whose
    keyed hash covers the root; False for anything altered, malformed or under an unknown key."""
    try:
        entry, batch = proof["entry"], proof["batch"]
        leaf = leaf_hash(
            batch=str(entry["batch"]),
            leaf_index=int(entry["leaf_index"]),
            entity_type=entry["entity_type"],
            entity_id=int(entry["entity_id"]),
            from_status=entry["from_status"],
            to_status=entry["to_status"],
            at=datetime.fromisoformat(entry["at"]),
            actor_id=entry["actor_id"],
            actor_label=entry["actor_label"],
            reason=entry["reason"],
            metadata=entry["metadata"],
            key_id=entry["key_id"],
        )
        sealed = batch_hash(
            batch=str(batch["uid"]),
            seq=int(batch["seq"]),
            length=int(batch["length"]),
            entries=int(batch["entries"]),
            root=batch["root"],
            prev_hash=batch["prev_hash"],
            at=datetime.fromisoformat(batch["at"]),
            key_id=batch["key_id"],
        )
        path = list(proof["path"])
        shape = merkle_path_sides(int(entry["leaf_index"]), int(batch["entries"]))
        return (
            _same(leaf, proof["leaf"])
            and _same(entry["batch"], batch["uid"])
            and [step["side"] for step in path] == shape
            and _same(merkle_path_root(proof["leaf"], path), batch["root"])
            and _same(proof["root"], batch["root"])
            and _same(sealed, batch["hash"])
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, UnknownAuditKey):
        return False
