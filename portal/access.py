"""Who may use a tenant: enforced once, here, for the HTML views and the API alike.

Order matters: a caller who is not a member (and not platform staff) gets 404 whatever the
tenant's state, so a tenant's existence and status never leak; members then learn that it is
suspended, still being set up, or being upgraded.
"""

from __future__ import annotations

from portal.errors import Forbidden, NotFound, PierError, Unavailable
from portal.tenancy import code_schema_version

ROLE_RANK = {"member": 1, "admin": 2, "owner": 3}


class NotSignedIn(PierError):
    status = 401
    code = "not_authenticated"


def member_role(tenant, user) -> str | None:
    """The person's role in the tenant (the tenant model answers: tenants.models.Tenant.role_of)."""
    return tenant.role_of(user)


def check_tenant_access(request, *, min_role: str = "member") -> str:
    """Raise unless request.user may act in request.tenant with at least `min_role`.
    Returns the caller's role, or "staff" for platform staff (who may do everything)."""
    tenant = getattr(request, "tenant", None)
    user = request.user
    # Authentication first, so that anonymous callers cannot tell which organizations exist.
    if not user.is_authenticated:
        raise NotSignedIn("Sign in to continue.")
    if tenant is None:
        raise NotFound("No such organization.")
    if getattr(user, "is_access_key", False):
        # Authenticated in this tenant's schema, so it belongs here; its project and role are
        # checked where projects are resolved. It never has a tenant role of its own.
        role = "key"
    else:
        role = member_role(tenant, user)
    if role is None and not user.is_staff:
        raise NotFound("No such organization.")
    if tenant.status == "deleting":
        raise NotFound("This organization is being deleted.")
    if tenant.status == "suspended" and not user.is_staff:
        raise Forbidden(
            f"The organization '{tenant.slug}' is suspended. Its data is kept; "
            "contact your platform team to have it resumed.",
            code="tenant_suspended",
        )
    if tenant.status == "provisioning":
        raise Unavailable("This organization is still being set up. Try again in a moment.", code="tenant_not_ready")
    if tenant.status == "failed":
        detail = f": {tenant.status_message}" if user.is_staff else ""  # errors may name internals
        raise Unavailable(
            f"Setting up this organization failed{detail}. The platform team has been told.",
            code="tenant_failed",
        )
    if tenant.schema_version != code_schema_version():
        raise Unavailable(
            "This organization's data is being upgraded to a new version of Pier. Try again in a few minutes.",
            code="tenant_migrating",
        )
    effective = "staff" if user.is_staff else role
    if role == "key":
        request.tenant_role = "key"
        return "key"
    # Set before a refusal too: the 403 page keeps the organization's menu for its member.
    request.tenant_role = effective
    if not user.is_staff and ROLE_RANK[role] < ROLE_RANK[min_role]:
        raise Forbidden(f"This needs the {min_role} role in '{tenant.slug}'; you are {_article(role)} {role}.")
    return effective


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
