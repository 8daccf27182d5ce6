"""API tokens for upstream systems and participants: scoped, revocable, rotatable.

Only a SHA-256 of the key is stored; the key is shown once, when issued. The token acts as its
``user``: a participant's API user (linked by ``ParticipantUser``) sees only that participant's
data; a staff service user (the matching engine) submits for everyone. Staff API users and
participants stay distinct people in the user table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Scope(models.TextChoices):
    READ = "read", "Read trades, instructions and balances"
    TRADES_WRITE = "trades:write", "Submit trades"


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it (e.g. 'matching engine, prod').")
    prefix = models.CharField(max_length=12, unique=True, help_text="Public part of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    replaced_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaces", help_text="Set by rotation."
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuthFailure(models.Model):
    """A failed authentication (API key or admin login), kept for security review."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    channel = models.CharField(max_length=16, help_text="api / admin")
    ip = models.GenericIPAddressField(null=True, blank=True)
    who = models.CharField(max_length=150, blank=True, help_text="Key prefix or username tried.")
    reason = models.CharField(max_length=200)
    path = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.channel} {self.who}: {self.reason}"
