"""Template filters every page may use (loaded as a builtin, see TEMPLATES in settings).

`when` shows a moment the one way Pier's pages show time: the exact minute with its zone, the
second on hover, and a machine-readable `<time datetime>` for assistive technology and scripts.
"""

from __future__ import annotations

import re
from datetime import datetime

from django import template
from django.core.exceptions import NON_FIELD_ERRORS
from django.forms import BaseForm
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def when(value: datetime | None, empty: str = "") -> str:
    """`{{ project.created_at|when }}` → 2026-12-02 17:36 UTC; `{{ k.last_used_at|when:"never" }}`.
    An ISO 8601 string (a condition's lastTransitionTime) is read as a time too."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return empty
    if not isinstance(value, datetime):
        return empty
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    zone = local.tzname() or "UTC"
    # The day and the time each stay whole: a narrow column may put them on two lines, never
    # break "2026-12-02" at its hyphens.
    return format_html('<time datetime="{}" title="{}"><span>{}</span> <span>{}</span></time>',
                       local.isoformat(timespec="seconds"), f"{local:%Y-%m-%d %H:%M:%S} {zone}",
                       f"{local:%Y-%m-%d}", f"{local:%H:%M} {zone}")


# "config_overrides.quota.pods: " or "name: ": how the API names a field, at the start of a
# message or of one of several joined with "; ". People read the words after it.
_FIELD_PREFIX = re.compile(r"(^|;\s+)[a-z_][a-z0-9_.:\-]*:\s+")


@register.filter
def plain(message: str) -> str:
    """A service's message without the API's field names: `name: the group 'x' already has
    access` → `The group 'x' already has access`."""
    text = _FIELD_PREFIX.sub(lambda m: m.group(1), str(message or "")).strip()
    return text[:1].upper() + text[1:]


@register.simple_tag(takes_context=True)
def fields_with_errors(context) -> int:
    """How many fields of the page's forms show an error: when a refusal was put at several
    fields, the banner only says where to look (one message, in plain words, it shows whole)."""
    seen, count = set(), 0
    for value in context.flatten().values():
        if isinstance(value, BaseForm) and id(value) not in seen and value.is_bound:
            seen.add(id(value))
            count += sum(1 for name in value.errors if name != NON_FIELD_ERRORS)
    return count
