import django_filters

from sessions.models import AgenticSession


class SessionFilterSet(django_filters.FilterSet):
    """Shared by the sessions page and the sessions API."""

    phase = django_filters.ChoiceFilter(choices=AgenticSession.Phase.choices, empty_label="any phase")
    created_by = django_filters.CharFilter(field_name="created_by_name", label="Started by (username or key name)")

    class Meta:
        model = AgenticSession
        fields = ["phase", "created_by"]
