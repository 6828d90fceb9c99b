"""The effective configuration of a project: platform defaults → tenant → project overrides.

Keys are flat ("quota.requests.cpu"); each effective value says where it comes from, so pages and
the API can show why a project got what it got.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from portal.errors import InvalidInput


@dataclass(frozen=True)
class Key:
    kind: str  # "quantity" or "namespaces"
    help: str


KEYS: dict[str, Key] = {
    "quota.requests.cpu": Key("quantity", "CPU all pods may request together (ResourceQuota requests.cpu)"),
    "quota.requests.memory": Key("quantity", "memory all pods may request together (requests.memory)"),
    "quota.limits.cpu": Key("quantity", "CPU limit of all pods together (limits.cpu)"),
    "quota.limits.memory": Key("quantity", "memory limit of all pods together (limits.memory)"),
    "quota.pods": Key("quantity", "number of pods (pods)"),
    "limits.default.cpu": Key("quantity", "a container's CPU limit when it sets none (LimitRange default)"),
    "limits.default.memory": Key("quantity", "a container's memory limit when it sets none"),
    "limits.request.cpu": Key("quantity", "a container's CPU request when it sets none (defaultRequest)"),
    "limits.request.memory": Key("quantity", "a container's memory request when it sets none"),
    "network.allow_from": Key("namespaces", "namespaces whose pods may reach this project's pods"),
}
MAX_QUANTITY = Decimal(2**63 - 1)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _clean_value(key: str, value: Any, field: str) -> Any:
    kind = KEYS[key].kind
    name = f"{field}.{key}"
    if kind == "quantity":
        from kubernetes.utils import parse_quantity

        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidInput(f"{name}: give a quantity such as \"2\", \"500m\" or \"4Gi\".",
                               details={name: ["Not a quantity."]})
        try:
            amount = parse_quantity(value)
        except (ValueError, ArithmeticError):
            raise InvalidInput(f"{name}: '{value}' is not a Kubernetes quantity (e.g. 500m, 2, 4Gi).",
                               details={name: ["Not a quantity."]})
        if amount < 0:
            raise InvalidInput(f"{name}: must not be negative.", details={name: ["Must not be negative."]})
        # What the API server would store differently (and so never match): finer than 1n, or
        # beyond its 64-bit range; a pod count is a whole number.
        if amount > MAX_QUANTITY or amount != amount.quantize(Decimal("1e-9")):
            raise InvalidInput(f"{name}: '{value}' is finer than 1n or too large for Kubernetes.",
                               details={name: ["Out of range."]})
        if key == "quota.pods" and amount != amount.to_integral_value():
            raise InvalidInput(f"{name}: a number of pods is a whole number.", details={name: ["Not a whole number."]})
        return str(value)
    if not isinstance(value, list) or not all(isinstance(v, str) and _DNS_LABEL.match(v) and len(v) <= 63 for v in value):
        raise InvalidInput(f"{name}: give a list of namespace names.", details={name: ["A list of namespace names."]})
    return sorted(set(value))


def clean_overrides(overrides: Any, *, field: str = "config") -> dict[str, Any]:
    """Validate overrides (tenant or project level); a null value removes an override."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise InvalidInput(f"{field}: give an object of settings.", details={field: ["Must be an object."]})
    cleaned = {}
    for key, value in overrides.items():
        if key not in KEYS:
            raise InvalidInput(
                f"{field}.{key}: unknown setting; known: {', '.join(KEYS)}.",
                details={f"{field}.{key}": ["Unknown setting."]},
            )
        if value is not None:
            cleaned[key] = _clean_value(key, value, field)
    return cleaned


def effective(*, tenant_defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {"value": …, "source": "platform" | "tenant" | "project"}} for every key."""
    result = {}
    for key in KEYS:
        if key in overrides:
            result[key] = {"value": overrides[key], "source": "project"}
        elif key in tenant_defaults:
            result[key] = {"value": tenant_defaults[key], "source": "tenant"}
        else:
            result[key] = {"value": settings.PIER_PROJECT_DEFAULTS[key], "source": "platform"}
    return result


def values(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {key: entry["value"] for key, entry in config.items()}
