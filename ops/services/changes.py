"""Record changes under four-eyes: a participant's bank, custody and wallet accounts and its
net debit caps (raising one lets payments past the old limit), beat's periodic tasks, and an
asset's kind, chain, cycle or precision while it has instructions in flight. A change is
proposed as an ``ApprovalRequest`` whose payload holds the record and the fields' values before
and after (the record of what changed, also for beat's tasks, which keep no history of their
own); it is applied only when a second person approves it, and only if the record still holds
the values it was proposed against (a stale proposal fails, nothing is written over)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models

from common.actors import Actor, stamp_history
from common.exceptions import IllegalTransition, ValidationFailed
from ops.locking import lock_change_target
from ops.models import ApprovalKind, ApprovalRequest


@dataclass(frozen=True)
class ChangeKind:
    model: str  # app_label.model_name
    fields: tuple[str, ...]  # the fields a proposal may set (never e.g. a wallet's nonce or chain state)
    parent: str = ""  # target the parent (a participant) rather than the record: adds have no pk yet
    adds: bool = False

    @property
    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)


BEAT_TASK_FIELDS = (
    "name", "task", "enabled", "description", "interval", "crontab", "solar", "clocked", "start_time", "one_off",
    "args", "kwargs", "expires", "expire_seconds", "queue", "exchange", "routing_key", "priority", "headers",
)  # fmt: skip
ASSET_FIELDS = (
    "code", "name", "kind", "precision", "settlement_cycle", "calendar", "chain", "required_confirmations", "isin",
    "is_active",
)  # fmt: skip

CHANGE_KINDS: dict[str, ChangeKind] = {
    ApprovalKind.BANK_ACCOUNT: ChangeKind(
        "reference.bankaccount",
        ("participant", "currency", "holder_name", "iban", "bic", "aba_routing", "account_number"),
        parent="participant",
        adds=True,
    ),
    ApprovalKind.WALLET: ChangeKind(
        "reference.walletaddress", ("participant", "chain", "address", "label"), parent="participant", adds=True
    ),
    ApprovalKind.CUSTODY_ACCOUNT: ChangeKind(
        "reference.custodyaccount", ("participant", "custodian_bic", "account_id"), parent="participant", adds=True
    ),
    ApprovalKind.NET_DEBIT_CAP: ChangeKind(
        "netting.netdebitcap", ("participant", "asset", "cap"), parent="participant", adds=True
    ),
    ApprovalKind.BEAT_TASK: ChangeKind("django_celery_beat.periodictask", BEAT_TASK_FIELDS),
    ApprovalKind.ASSET: ChangeKind("reference.asset", ASSET_FIELDS),
}

# Proposals stored before the reference data left the settlement app name the models by their old
# labels; they stay valid.
LEGACY_MODEL_LABELS = {
    f"settlement.{name}": f"reference.{name}" for name in ("asset", "bankaccount", "custodyaccount", "walletaddress")
}

# An asset's fields that change how its open instructions settle.
ASSET_SENSITIVE = ("kind", "chain", "settlement_cycle", "precision")


def _concrete_field(model: type[models.Model] | models.Model, name: str) -> models.Field[Any, Any]:
    """A proposable field: a column of the model (never a reverse relation, which has no value)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{name} is not a concrete field of {model._meta.label}")
    return field


def _related_model(model: type[models.Model], name: str) -> type[models.Model]:
    """The model a (resolved) foreign key ``name`` of ``model`` points to."""
    related = model._meta.get_field(name).related_model
    if not isinstance(related, type) or not issubclass(related, models.Model):
        raise TypeError(f"{name} of {model._meta.label} is not a foreign key")
    return related


def field_dump(obj: models.Model, name: str) -> Any:
    """One field's value as JSON (foreign keys by pk; ``None`` stays ``None``)."""
    field = _concrete_field(obj, name)
    value = getattr(obj, field.attname)
    if value is None or isinstance(field, models.JSONField):
        return value
    return field.value_to_string(obj)


def _field_load(model: type[models.Model], name: str, value: Any) -> Any:
    field = _concrete_field(model, name)
    return value if value is None or isinstance(field, models.JSONField) else field.to_python(value)


def changed_fields(obj: models.Model, kind: str) -> list[str]:
    """The proposable fields of ``obj`` (edited, unsaved) that differ from the stored record."""
    spec = CHANGE_KINDS[kind]
    if obj.pk is None:
        return list(spec.fields)
    stored = type(obj)._default_manager.get(pk=obj.pk)
    return [name for name in spec.fields if field_dump(obj, name) != field_dump(stored, name)]


def asset_in_flight(asset: models.Model) -> bool:
    """Whether instructions or netted payments in ``asset`` are still on their way."""
    from netting.models import NettedInstruction
    from settlement.models import SettlementInstruction

    done = ("settled", "reversed", "cancelled")
    return (
        SettlementInstruction.objects.filter(asset=asset).exclude(status__in=done).exists()
        or NettedInstruction.objects.filter(asset=asset).exclude(status="settled").exists()
    )


def asset_change_needs_approval(asset: models.Model, fields: list[str]) -> bool:
    return asset.pk is not None and bool(set(fields) & set(ASSET_SENSITIVE)) and asset_in_flight(asset)


def change_payload(obj: models.Model, kind: str, fields: list[str]) -> tuple[int, dict[str, Any]]:
    """The target id and payload of a proposal to save ``obj`` (edited, unsaved) as it is now."""
    spec = CHANGE_KINDS[kind]
    if not isinstance(obj, spec.model_class):
        raise ValidationFailed(f"a {kind} change is about a {spec.model}")
    unknown = set(fields) - set(spec.fields)
    if unknown or not fields:
        raise ValidationFailed(f"nothing to propose, or fields not proposable: {sorted(unknown)}")
    if obj.pk is None and not spec.adds:
        raise ValidationFailed(f"a {kind} change is about an existing record")
    stored = type(obj)._default_manager.get(pk=obj.pk) if obj.pk is not None else None
    payload = {
        "model": spec.model,
        "pk": obj.pk,
        "before": {name: field_dump(stored, name) for name in fields} if stored is not None else {},
        "after": {name: field_dump(obj, name) for name in fields},
    }
    if spec.parent:
        if stored is not None and getattr(stored, f"{spec.parent}_id") != getattr(obj, f"{spec.parent}_id"):
            raise ValidationFailed(f"a {spec.model} does not move to another {spec.parent}")
        return getattr(obj, f"{spec.parent}_id"), payload
    return obj.pk, payload


def _guard(kind: str, record: models.Model, after: dict[str, Any]) -> None:
    """A wallet that has signed keeps its chain and address: its nonce and chain state (and any
    transfer still on its way) belong to that key, so pointing the row elsewhere would sign the
    next transfer with the wrong nonce or lose the rollback of a failed one."""
    if kind != ApprovalKind.WALLET or not {"chain", "address"} & set(after):
        return
    from reference.models import WalletAddress
    from settlement.models import ChainTransfer

    if not isinstance(record, WalletAddress):
        raise TypeError(f"a wallet change is about a wallet, not {record!r}")
    signing = ChainTransfer.objects.filter(chain=record.chain, from_address=record.address)
    if record.next_nonce or record.chain_state or signing.exists():
        raise IllegalTransition(f"wallet {record} has signed transfers: its chain and address stay (add a new wallet)")


def change_target(kind: str, target_id: int, payload: dict[str, Any]) -> str:
    """Check a proposed change makes sense; returns its label."""
    spec = CHANGE_KINDS[kind]
    model = spec.model_class
    after = payload.get("after")
    label = payload.get("model", "")
    if LEGACY_MODEL_LABELS.get(label, label) != spec.model or not isinstance(after, dict) or not after:
        raise ValidationFailed(f"a {kind} proposal needs the {spec.model} and the values after")
    if set(after) - set(spec.fields):
        raise ValidationFailed(f"not proposable: {sorted(set(after) - set(spec.fields))}")
    pk = payload.get("pk")
    if pk is None:
        if not spec.adds:
            raise ValidationFailed(f"a {kind} change is about an existing record")
        parent = _related_model(model, spec.parent)._default_manager.filter(pk=target_id).first()
        if parent is None or str(target_id) != str(after.get(spec.parent)):
            raise ValidationFailed(f"no {spec.parent} {target_id}")
        return f"new {model._meta.verbose_name} of {parent}"
    record = model._default_manager.filter(pk=pk).first()
    if record is None:
        raise ValidationFailed(f"no {spec.model} {pk}")
    if (getattr(record, f"{spec.parent}_id") if spec.parent else record.pk) != target_id:
        raise ValidationFailed(f"{spec.model} {pk} does not belong to {target_id}")
    _guard(kind, record, after)
    shown = ", ".join(sorted(after))
    return f"{model._meta.verbose_name} {record} ({shown})"[:200]


def change_apply(request: ApprovalRequest, *, actor: Actor, reason: str) -> str:
    """Apply an approved change (the caller holds the request locked, in its transaction)."""
    spec = CHANGE_KINDS[request.kind]
    model = spec.model_class
    payload = request.payload
    change_target(request.kind, request.target_id, payload)
    if payload["pk"] is None:
        record = model()
    else:
        record = lock_change_target(model, payload["pk"]).get()
        stale = sorted(name for name, value in payload["before"].items() if field_dump(record, name) != value)
        if stale:
            raise IllegalTransition(f"{record} changed since the proposal ({', '.join(stale)}): propose again")
        _guard(request.kind, record, payload["after"])
    for name, value in payload["after"].items():
        setattr(record, _concrete_field(model, name).attname, _field_load(model, name, value))
    try:
        record.full_clean()
    except ValidationError as exc:
        raise ValidationFailed(f"the change is no longer valid: {exc.messages}") from exc
    if hasattr(record, "history"):
        stamp_history(record, actor=actor, reason=reason)
    record.save()
    return f"{'added' if payload['pk'] is None else 'changed'} {model._meta.verbose_name} {record.pk}"
