import django_filters

from portal.models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    """Shared by the audit pages and the audit API."""

    action = django_filters.CharFilter(lookup_expr="startswith")
    actor = django_filters.CharFilter()
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    target = django_filters.CharFilter(lookup_expr="icontains")
    request_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "outcome", "target", "request_id", "since", "until"]
