import django_filters
from django.db.models import Q

from tenants.models import Tenant


class TenantFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Tenant.Status.choices)
    q = django_filters.CharFilter(method="search", label="Search slug or name")

    class Meta:
        model = Tenant
        fields = ["status", "q"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(slug__icontains=value) | Q(name__icontains=value))
