import re

from django.conf import settings
from django.core.exceptions import ValidationError

from portal.tenancy import SLUG_PATTERN

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
    if value.startswith(("openshift", "kube-")):
        # Its projects' namespaces would start the same way, which the cluster reserves.
        raise ValidationError("Slugs may not start with 'openshift' or 'kube-'.", code="reserved_slug")


PROJECT_SLUG_PATTERN = r"^[a-z]([a-z0-9-]*[a-z0-9])?$"
_PROJECT_SLUG_RE = re.compile(PROJECT_SLUG_PATTERN)
NAMESPACE_MAX = 63


def validate_project_slug(value: str) -> None:
    if not isinstance(value, str) or not _PROJECT_SLUG_RE.match(value) or "--" in value:
        raise ValidationError(
            "Use lowercase letters, digits and single hyphens, starting with a letter and not ending "
            "with a hyphen.",
            code="invalid_slug",
        )


def namespace_name_for(tenant_slug: str, project_slug: str) -> str:
    """`<tenant>-<project>`; validated by validate_namespace_name before use."""
    return f"{tenant_slug}-{project_slug}"


def validate_namespace_name(name: str) -> None:
    if len(name) > NAMESPACE_MAX:
        raise ValidationError(
            f"The namespace '{name}' would be {len(name)} characters; Kubernetes allows {NAMESPACE_MAX}. "
            "Choose a shorter project slug.",
            code="namespace_too_long",
        )
    if name == "default" or name.startswith(("kube-", "openshift")):
        raise ValidationError(f"The namespace '{name}' is reserved by the cluster.", code="reserved_namespace")
    if name == settings.PIER_KEYS_NAMESPACE:
        # Access keys' ServiceAccounts live there: a project in it would hand its members every key.
        raise ValidationError(f"The namespace '{name}' is reserved for Pier's access keys.", code="reserved_namespace")


def schema_name_for(slug: str) -> str:
    """The PostgreSQL schema of a tenant, derived from its (validated) slug, never from input.
    Slugs have no underscores, so replacing hyphens keeps names distinct."""
    return "t_" + slug.replace("-", "_")


# A person is named by username (auth_user.username holds 150) or email (254, as EmailField).
USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254


def validate_person_identifier(value: str) -> None:
    """A username or an email address that Pier can store: the same limits for the members page,
    the API and the services (a pending invitation keeps the value as given)."""
    if "\x00" in value:
        raise ValidationError("Must not contain a NUL character.", code="null_characters_not_allowed")
    if "@" in value:
        if len(value) > EMAIL_MAX_LENGTH:
            raise ValidationError(f"An email address has at most {EMAIL_MAX_LENGTH} characters.", code="max_length")
    elif len(value) > USERNAME_MAX_LENGTH:
        raise ValidationError(f"A username has at most {USERNAME_MAX_LENGTH} characters.", code="max_length")


_IMAGE = re.compile(r"^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def validate_image_reference(value: str) -> None:
    """A container image reference (registry/repository[:tag][@sha256:digest])."""
    if value and (len(value) > 500 or not _IMAGE.match(value)):
        raise ValidationError("Give an image reference such as registry.example.com/team/runner:1.2.")
