"""A participant's statements in the admin: a link on the participant's page and the download
view under it (``admin:settlement_participant_statement``). Statements are settlement's, so
settlement extends reference's participant admin here and registers it in its place."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from common.exceptions import DomainError
from reference.admin import ParticipantAdmin
from reference.models import Participant


class ParticipantStatementsAdmin(ParticipantAdmin):
    """reference's participant admin with the participant's statements."""

    readonly_fields = ["statements"]

    def get_urls(self) -> list[Any]:
        from django.urls import path

        view = self.admin_site.admin_view(self.statement_view)
        return [path("<int:pk>/statement/", view, name="settlement_participant_statement"), *super().get_urls()]

    def statement_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """?from=YYYY-MM-DD&to=YYYY-MM-DD&output=csv|pdf|json"""
        from settlement.api.statements import statement_response

        if not request.user.has_perm("reference.view_participant"):
            raise PermissionDenied
        participant = Participant.objects.get(pk=pk)
        try:
            return statement_response(
                participant=participant,
                start=request.GET.get("from"),
                end=request.GET.get("to"),
                fmt=request.GET.get("output", "pdf"),
            )
        except DomainError as exc:
            self.message_user(request, f"Statement: {exc.message} {exc.detail}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:reference_participant_change", args=[pk]))

    @admin.display(description="statements")
    def statements(self, obj: Participant) -> str:
        if obj.pk is None:
            return "-"
        from django.utils import timezone

        today = timezone.now().date()
        first = today.replace(day=1)
        url = reverse("admin:settlement_participant_statement", args=[obj.pk])
        query = f"from={first.isoformat()}&to={today.isoformat()}"
        return format_html(
            'This month: <a href="{}?{}&output=pdf">PDF</a> · <a href="{}?{}&output=csv">CSV</a> '
            "(other periods: change from/to in the address)",
            url, query, url, query,
        )  # fmt: skip


admin.site.unregister(Participant)
admin.site.register(Participant, ParticipantStatementsAdmin)
