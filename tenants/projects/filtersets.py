import django_filters
from django.db.models import Q

from tenants.projects.models import Project


class ProjectFilterSet(django_filters.FilterSet):
    """Shared by the projects page and the projects API."""

    status = django_filters.ChoiceFilter(choices=Project.Status.choices, empty_label="any status")
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Project
        fields = ["status", "q"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(slug__icontains=value) | Q(display_name__icontains=value) | Q(description__icontains=value))
