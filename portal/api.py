"""Base classes for the API: pagination, the tenant-scoped view with its access check."""

from __future__ import annotations

from rest_framework import exceptions, permissions, serializers
from rest_framework.pagination import PageNumberPagination

from portal.access import NotSignedIn, check_tenant_access


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them, instead of silently ignoring them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
        return super().to_internal_value(data)

    @classmethod
    def known_fields(cls, data) -> dict:
        """For a view whose service validates the values itself (naming each field): the request
        body as an object, with fields this serializer does not declare refused."""
        from portal.errors import InvalidInput

        if not isinstance(data, dict):
            raise InvalidInput("input: give a JSON object.", details={"input": ["A JSON object."]})
        unknown = sorted(set(data) - set(cls().fields))
        if unknown:
            shown = ", ".join(name[:60] for name in unknown[:5])
            raise InvalidInput(f"{unknown[0][:60]}: unknown field(s): {shown}.",
                               details={name[:60]: ["Unknown or read-only field."] for name in unknown[:20]})
        return data


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class IsStaff(permissions.BasePermission):
    message = "Platform staff only."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class TenantScopedMixin:
    """Every view under /api/v1/tenants/<slug>/ inherits this: the caller's tenant role is
    checked once, before the handler runs. `min_role` (per view) or `min_role_for_write`
    (for POST/PUT/PATCH/DELETE) set the role required."""

    min_role = "member"
    min_role_for_write = "admin"
    # Access keys act in their project only: views about one project (or the project list) say so.
    allows_keys = False

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        needed = self.min_role if request.method in permissions.SAFE_METHODS else self.min_role_for_write
        try:
            role = check_tenant_access(request, min_role=needed)
        except NotSignedIn:
            raise exceptions.NotAuthenticated()
        if role == "key" and not self.allows_keys:
            raise exceptions.PermissionDenied("An access key acts only on its own project.")


class ConditionSerializer(serializers.Serializer):
    """One condition a controller recorded (portal/controller.py), as Kubernetes writes them."""

    type = serializers.CharField(help_text="e.g. Ready, Provisioned; Removed once a deletion (a revocation) is asked for.")
    status = serializers.CharField(help_text="True or False.")
    reason = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    observedGeneration = serializers.IntegerField(help_text="The generation this condition is about.")
    lastTransitionTime = serializers.CharField(help_text="When its status last changed (ISO 8601).")
