import re

from django.core.exceptions import ValidationError

SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,40}$"
_SLUG_RE = re.compile(SLUG_PATTERN)
# Words that are, or may become, path segments, schema names or Kubernetes prefixes.
RESERVED_SLUGS = frozenset(
    {
        "admin", "api", "public", "static", "www", "t", "oidc", "healthz", "readyz", "login",
        "logout", "media", "system", "default", "kube", "openshift", "pier", "template", "root",
        "new", "information-schema", "pg", "postgres", "tenants", "docs", "schema", "auth",
    }
)


def validate_tenant_slug(value: str) -> None:
    if not isinstance(value, str) or not _SLUG_RE.match(value):
        raise ValidationError(
            "Use 2 to 41 characters: lowercase letters, digits and hyphens, starting with a letter.",
            code="invalid_slug",
        )
    if value.startswith("pg-"):
        raise ValidationError("Slugs may not start with 'pg-'.", code="reserved_slug")
    if value.endswith("-") or "--" in value:
        raise ValidationError("Hyphens may not end a slug or follow each other.", code="invalid_slug")
    if value in RESERVED_SLUGS:
        raise ValidationError(f"'{value}' is reserved.", code="reserved_slug")


def schema_name_for(slug: str) -> str:
    """The PostgreSQL schema of a tenant, derived from its (validated) slug, never from input.
    Slugs have no underscores, so replacing hyphens keeps names distinct."""
    return "t_" + slug.replace("-", "_")
