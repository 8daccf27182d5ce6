"""Issue, rotate, revoke and check API tokens (see ``settlement.models.tokens``)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from common.actors import Actor, actor_user
from common.exceptions import IllegalTransition, ValidationFailed
from settlement.locking import lock_token
from settlement.models.tokens import ApiToken, AuthFailure, Scope

logger = logging.getLogger("clearhouse.security")
KEY_PREFIX = "chk"


@dataclass(frozen=True)
class Issued:
    token: ApiToken
    key: str  # shown once; only its hash is stored


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_issue(
    *, user: User, name: str, scopes: list[str], actor: Actor, expires_at: datetime | None = None
) -> Issued:
    unknown = sorted(set(scopes) - set(Scope.values))
    if not scopes or unknown:
        raise ValidationFailed(f"scopes must be some of {', '.join(Scope.values)}", detail={"scopes": unknown})
    if not name.strip():
        raise ValidationFailed("a token needs a name")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name.strip(),
        prefix=prefix,
        key_hash=_hash(key),
        scopes=sorted(set(scopes)),
        created_by=actor_user(actor),
        expires_at=expires_at,
    )
    return Issued(token, key)


def token_revoke(*, token: ApiToken, actor: Actor, reason: str) -> ApiToken:
    if not reason.strip():
        raise ValidationFailed("revoking a token needs a reason")
    with transaction.atomic():
        token = lock_token(token.pk).get()
        if token.revoked_at is not None:
            raise IllegalTransition(f"token {token.prefix} is already revoked")
        token.revoked_at, token.revoked_by, token.revoke_reason = timezone.now(), actor_user(actor), reason.strip()
        token.save(update_fields=("revoked_at", "revoked_by", "revoke_reason"))
        return token


def token_rotate(*, token: ApiToken, actor: Actor, reason: str, overlap: timedelta = timedelta(0)) -> Issued:
    """A new key with the same user and scopes; the old one stops working now, or after
    ``overlap`` (so a client can switch without downtime)."""
    with transaction.atomic():
        token = lock_token(token.pk).get()
        if token.revoked_at is not None or token.replaced_by_id is not None:
            raise IllegalTransition(f"token {token.prefix} is revoked or already rotated")
        issued = token_issue(user=token.user, name=token.name, scopes=token.scopes, actor=actor)
        token.replaced_by = issued.token
        token.expires_at = timezone.now() + overlap
        token.revoke_reason = f"rotated: {reason.strip()}"
        token.save(update_fields=("replaced_by", "expires_at", "revoke_reason"))
        return issued


def token_check(key: str) -> tuple[ApiToken | None, str]:
    """The live token for ``key``, or None and why not."""
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key)).first()
    now = timezone.now()
    if token is None:
        return None, "unknown key"
    if token.revoked_at is not None:
        return None, "revoked key"
    if token.expires_at is not None and token.expires_at <= now:
        return None, "expired key"
    if not token.user.is_active:
        return None, "inactive user"
    if token.last_used_at is None or token.last_used_at < now - timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)  # at most once a minute
    return token, ""


def auth_failure_record(*, channel: str, who: str, reason: str, ip: str | None, path: str = "") -> None:
    logger.warning("authentication failed (%s) for %r from %s: %s", channel, who, ip, reason)
    AuthFailure.objects.create(channel=channel, who=who[:150], reason=reason[:200], ip=ip, path=path[:300])
