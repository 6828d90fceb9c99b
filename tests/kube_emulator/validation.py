"""Field errors and the name, label and annotation rules of apimachinery's validation package.

The messages are apimachinery's own (`k8s.io/apimachinery/pkg/util/validation`), because the
point of validating here is that a name or label Pier gets wrong fails in tests exactly as it
would on a cluster, with a message that says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

NameValidator = Callable[[str], list[str]]

_OMITTED = object()

_TYPE_TITLES = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueRequired": "Required value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueTooMany": "Too many",
}


def _go_value(value: Any) -> str:
    """Roughly Go's rendering of a bad value: strings quoted, numbers bare, structures as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One entry of a 422 Invalid: what is wrong with which field (apimachinery's field.Error)."""

    cause_reason: str
    field: str
    detail: str = ""
    value: Any = _OMITTED

    def body(self) -> str:
        text = _TYPE_TITLES[self.cause_reason]
        if self.value is not _OMITTED and self.cause_reason not in ("FieldValueRequired", "FieldValueForbidden"):
            text += f": {_go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, detail, value)


def immutable(field: str, value: Any) -> FieldError:
    return invalid(field, value, "field is immutable")


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, detail)


def not_supported(field: str, value: Any, supported: Sequence[str]) -> FieldError:
    return FieldError(
        "FieldValueNotSupported", field, "supported values: " + ", ".join(json.dumps(s) for s in supported), value
    )


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", field, f"must have at most {limit} bytes")


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    # apimachinery's RegexError, double spaces included.
    example_text = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {example_text}regex used for validation is '{pattern}')"


def _max_length_error(limit: int) -> str:
    return f"must be no more than {limit} characters"


_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"


def _shaped(value: str, *, limit: int, pattern: str, description: str, examples: tuple[str, ...]) -> list[str]:
    """apimachinery's two checks for a name: its length, then its shape."""
    errors = []
    if len(value) > limit:
        errors.append(_max_length_error(limit))
    if not re.fullmatch(pattern, value):
        errors.append(_regex_error(description, pattern, *examples))
    return errors


_QUALIFIED_NAME_SHAPE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_EXAMPLES = ("MyName", "my.name", "123-abc")


def dns1123_label(value: str) -> list[str]:
    """Namespace names (and other names that end up in DNS labels)."""
    return _shaped(
        value, limit=63, pattern=_DNS1123_LABEL, examples=("my-name", "123-abc"),
        description="a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character",
    )


def dns1035_label(value: str) -> list[str]:
    """CRD names (plural, singular, kind, versions): a DNS label that starts with a letter."""
    return _shaped(
        value, limit=63, pattern=r"[a-z]([-a-z0-9]*[a-z0-9])?", examples=("my-name", "abc-123"),
        description="a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
        "start with an alphabetic character, and end with an alphanumeric character",
    )


def dns1123_subdomain(value: str) -> list[str]:
    """Most object names: ServiceAccounts, Secrets, ConfigMaps, quotas, NetworkPolicies, workloads."""
    return _shaped(
        value, limit=253, pattern=_DNS1123_SUBDOMAIN, examples=("example.com",),
        description="a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character",
    )


def path_segment_name(value: str) -> list[str]:
    """RBAC names (`system:aggregate-to-edit` is valid): anything that is a safe URL path segment."""
    errors = [f"may not be '{bad}'" for bad in (".", "..") if value == bad]
    errors += [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]
    return errors


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and '/', then a name of ≤ 63 characters."""
    shape = _regex_error(_QUALIFIED_NAME_SHAPE, _QUALIFIED_NAME, *_QUALIFIED_NAME_EXAMPLES)
    parts = value.split("/")
    errors: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + message for message in dns1123_subdomain(prefix)]
    else:
        return ["a qualified name " + shape + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_length_error(63))
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append("name part " + shape)
    return errors


def label_value(value: str) -> list[str]:
    return _shaped(
        value, limit=63, pattern=_LABEL_VALUE, examples=("MyValue", "my_value", "12345"),
        description="a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character",
    )


_ANNOTATIONS_SIZE_LIMIT = 256 * 1024


def validate_labels(labels: dict[str, str], field: str) -> list[FieldError]:
    errors = []
    for key, value in labels.items():
        errors += [invalid(field, key, message) for message in qualified_name(key)]
        errors += [invalid(field, value, message) for message in label_value(value)]
    return errors


def validate_annotations(annotations: dict[str, str], field: str) -> list[FieldError]:
    errors = []
    for key in annotations:
        errors += [invalid(field, key, message) for message in qualified_name(key.lower())]
    if sum(len(key) + len(value) for key, value in annotations.items()) > _ANNOTATIONS_SIZE_LIMIT:
        errors.append(too_long(field, _ANNOTATIONS_SIZE_LIMIT))
    return errors
