"""Who made a change: a user (staff, participant API user) or a named system process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied


@dataclass(frozen=True)
class SystemActor:
    name: str

    def __str__(self) -> str:
        return f"system:{self.name}"


# AUTH_USER_MODEL is not set: the project's users are django.contrib.auth's User.
Actor = User | SystemActor


def request_actor(user: User | AnonymousUser) -> User:
    """The signed-in user of an admin or API request, as the actor of what it changes. The admin
    site and the API's IsAuthenticated refuse anonymous requests before any view runs, so the
    refusal here is never reached: it only states the fact for the type checker."""
    if isinstance(user, AnonymousUser):
        raise PermissionDenied("not signed in")
    return user


def actor_user(actor: Actor | AnonymousUser | None) -> Any:
    if isinstance(actor, AbstractBaseUser) and actor.pk is not None:
        return actor
    return None


def actor_label(actor: Actor | AnonymousUser | None) -> str:
    if isinstance(actor, SystemActor):
        return str(actor)
    if isinstance(actor, AbstractBaseUser) and actor.pk is not None:
        return actor.get_username()
    return "system:unknown"


def history_reason(*, actor: Actor, reason: str) -> str:
    """The change reason simple-history records: 100 characters of the reason (the transition log
    keeps all of it), or who made the change when no reason is given."""
    return (reason or actor_label(actor))[:100]


def stamp_history(instance: Any, *, actor: Actor, reason: str) -> None:
    """Make simple-history record who changed ``instance`` and why (rows written by SQL record the
    same: ``actor_user`` and ``history_reason``)."""
    instance._history_user = actor_user(actor)
    instance._change_reason = history_reason(actor=actor, reason=reason)
