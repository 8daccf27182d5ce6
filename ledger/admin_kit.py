"""The transition-log table that every app's admin shows on a change page (the log is the ledger's)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join

from ledger.selectors import transitions_of


def transitions_table(entity_type: str, entity_id: int) -> str:
    rows = transitions_of(entity_type, entity_id)
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        (
            (r.at.strftime("%Y-%m-%d %H:%M:%S"), r.from_status, r.to_status, r.actor_label, r.reason, r.hash[:12])
            for r in rows
        ),
    )
    return format_html(
        "<table><thead><tr><th>at</th><th>transition</th><th>actor</th><th>reason</th><th>hash</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        body or format_html("<tr><td colspan=5>no transitions yet</td></tr>"),
    )
