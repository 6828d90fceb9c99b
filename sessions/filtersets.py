import django_filters

from sessions.models import AgenticSession


class SessionFilterSet(django_filters.FilterSet):
    """Shared by the sessions page and the sessions API."""

    phase = django_filters.ChoiceFilter(choices=AgenticSession.Phase.choices, empty_label="any phase")
    created_by = django_filters.CharFilter(field_name="created_by_name", label="Started by (username or key name)")
    started_by = django_filters.ChoiceFilter(field_name="created_by_kind", choices=[("user", "a person"), ("key", "a key")],
                                             empty_label="anyone", label="Started by a person or a key")
    key = django_filters.NumberFilter(field_name="created_by_key_id", label="Started by this access key (its id)")

    class Meta:
        model = AgenticSession
        fields = ["phase", "created_by", "started_by", "key"]
