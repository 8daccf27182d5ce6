"""The admin site: staff need a verified second factor (django-otp) when
``CLEARHOUSE_ADMIN_OTP_REQUIRED`` is on (the default in production). The login form then asks for
the one-time token, and a session that was not verified by one cannot use any admin page (the ops
dashboard and the import/export views go through ``admin_view`` too). Failed logins are throttled
and locked out by django-axes (``AXES_*`` settings)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest
from django_otp.admin import OTPAdminAuthenticationForm


def admin_otp_required() -> bool:
    return bool(settings.CLEARHOUSE_ADMIN_OTP_REQUIRED)


class ClearhouseAdminSite(admin.AdminSite):
    @property
    def login_form(self) -> type[AuthenticationForm] | None:  # type: ignore[override]  # read per request: tests switch the setting
        return OTPAdminAuthenticationForm if admin_otp_required() else None

    @property
    def login_template(self) -> str | None:  # type: ignore[override]  # read per request, like login_form
        return "otp/admin111/login.html" if admin_otp_required() else None

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        user: Any = request.user  # django-otp's middleware gives it is_verified()
        return not admin_otp_required() or user.is_verified()
