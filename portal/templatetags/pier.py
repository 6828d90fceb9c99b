"""Template filters every page may use (loaded as a builtin, see TEMPLATES in settings).

`when` shows a moment the one way Pier's pages show time: the exact minute with its zone, the
second on hover, and a machine-readable `<time datetime>` for assistive technology and scripts.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def when(value: datetime | None, empty: str = "") -> str:
    """`{{ project.created_at|when }}` → 2026-12-02 17:36 UTC; `{{ k.last_used_at|when:"never" }}`."""
    if not isinstance(value, datetime):
        return empty
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    zone = local.tzname() or "UTC"
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(timespec="seconds"),
                       f"{local:%Y-%m-%d %H:%M:%S} {zone}", f"{local:%Y-%m-%d %H:%M} {zone}")
