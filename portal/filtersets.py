import datetime

import django_filters
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from portal.models import AuditEvent


class DateOrDateTimeField(forms.CharField):
    """A date (the page's date picker) or an ISO 8601 date-time (the API)."""

    def __init__(self, *args, end_of_day: bool = False, **kwargs):
        self.end_of_day = end_of_day
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date"}))
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        value = super().to_python(value).strip()
        if not value:
            return None
        try:
            day = parse_date(value)  # first: Python reads a bare date as a date-time at midnight
            if day is None:
                moment = parse_datetime(value)
                if moment is not None:
                    # In UTC: PostgreSQL refuses offsets Python takes (e.g. +20:23).
                    aware = moment if timezone.is_aware(moment) else timezone.make_aware(moment, datetime.timezone.utc)
                    return aware.astimezone(datetime.timezone.utc)
        except (ValueError, OverflowError):
            day = None
        if day is None:
            raise forms.ValidationError("Give a date (YYYY-MM-DD) or an ISO 8601 date and time.")
        if self.end_of_day:
            day += datetime.timedelta(days=1)
        return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.timezone.utc)


class DateOrDateTimeFilter(django_filters.Filter):
    field_class = DateOrDateTimeField


class AuditEventFilterSet(django_filters.FilterSet):
    """Shared by the audit pages and the audit API."""

    action = django_filters.CharFilter(lookup_expr="startswith", label="Action starts with")
    actor = django_filters.CharFilter(label="Who")
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices, empty_label="any outcome")
    target = django_filters.CharFilter(lookup_expr="icontains", label="Target contains")
    request_id = django_filters.CharFilter(label="Request id")
    since = DateOrDateTimeFilter(field_name="at", lookup_expr="gte", label="From (UTC)")
    # A date means "up to the end of that day"; a date and time, up to that moment.
    until = DateOrDateTimeFilter(field_name="at", lookup_expr="lt", label="Until (UTC)", end_of_day=True)

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "outcome", "target", "request_id", "since", "until"]
