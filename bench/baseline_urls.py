"""The URLconf the routing benchmark runs both of its paths under: Pier's own routes, plus one
baseline route that lists a tenant's members without tenancy.

`GET /bench/members/<slug>` does what `GET /api/v1/tenants/<slug>/members` does, minus the tenancy:
the same authentication (DRF's default classes), the same membership query
(`portal.access.member_role`), the same queryset (`tenants.selectors.members_of`), serializer,
filter backend and pagination. TenantPathMiddleware only routes /t/… and /api/v1/tenants/…, so this
path stays in the public schema: no tenant resolution, no `set_tenant`, no status checks.

What is fair: the routed path takes its Tenant from tenancy's in-process cache (no query), so the
baseline takes it from an in-process dict too (`TENANTS`, filled by the benchmark). Both paths run
under this URLconf (override_settings(ROOT_URLCONF=…)), so URL resolution costs the same; the
baseline route comes last, after Pier's, as the routed one comes after the routes before it.
"""

from __future__ import annotations

from django.urls import path
from rest_framework import exceptions, generics

from portal import urls as portal_urls
from portal.access import member_role
from tenants import selectors
from tenants.api import serializers as s
from tenants.api.views import MemberListView

# slug -> Tenant, filled by bench.routing before the requests.
TENANTS: dict[str, object] = {}


class BaselineMemberListView(generics.ListAPIView):
    serializer_class = s.MemberSerializer
    filterset_fields = MemberListView.filterset_fields

    def initial(self, request, *args, **kwargs):
        # As TenantScopedMixin.initial: authenticate (DRF), then one membership query.
        super().initial(request, *args, **kwargs)
        tenant = TENANTS.get(kwargs["tenant_slug"])
        if tenant is None or member_role(tenant, request.user) is None:
            raise exceptions.NotFound("No such organization.")
        self.tenant = tenant

    def get_queryset(self):
        return selectors.members_of(self.tenant)


urlpatterns = [
    *portal_urls.urlpatterns,
    path("bench/members/<slug:tenant_slug>", BaselineMemberListView.as_view(), name="bench-members"),
]

handler404 = portal_urls.handler404
handler403 = portal_urls.handler403
handler500 = portal_urls.handler500
