"""The effective configuration of a project: platform defaults → organization defaults → project
overrides, within ceilings, a budget and locks.

Keys are flat ("quota.requests.cpu"). Who sets what:

- **platform** (environment, `PIER_*`): the defaults, a ceiling for every quantity key, and the
  namespaces any project may admit traffic from (`PIER_NETWORK_ALLOWED_NAMESPACES`);
- **platform staff, per organization** (Tenant.config_ceilings / config_budget / config_locks):
  ceilings that replace the platform's for that organization, a budget for the sum of its
  projects' effective quotas, and keys nobody in the organization may change;
- **organization admins** (TenantSettings): defaults within the ceilings, and keys projects may
  not override (`locked_keys`);
- **project admins**: overrides within all of the above.

Each effective value says where it comes from, its ceiling and lock, and whether it was clamped,
so pages and the API can show why a project got what it got. Only the keys being changed are
validated: lowering a ceiling never blocks an unrelated edit; values above a lowered ceiling are
clamped when computed (the stored override is kept for the record).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from django.conf import settings

from portal.errors import InvalidInput, QuotaExceeded, Refusals
from portal.input_guard import describe


@dataclass(frozen=True)
class Key:
    kind: str  # "quantity", "namespaces" or "destinations"
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
    "sessions.running": Key("quantity", "agentic sessions running at once (more wait, oldest first)"),
    "sessions.max_timeout": Key("quantity", "the longest timeout a session may ask for (seconds)"),
    "sessions.runner.requests.cpu": Key("quantity", "the CPU a session runner's container requests"),
    "sessions.runner.requests.memory": Key("quantity", "the memory a session runner's container requests"),
    "sessions.runner.limits.cpu": Key("quantity", "the CPU limit of a session runner's container"),
    "sessions.runner.limits.memory": Key("quantity", "the memory limit of a session runner's container"),
    "sessions.egress": Key("destinations", "where session runners may connect: CIDR or CIDR:port (DNS is always "
                                           "allowed), within the platform's PIER_RUNNER_EGRESS_ALLOWED"),
}
QUANTITY_KEYS = tuple(k for k, spec in KEYS.items() if spec.kind == "quantity")
# Counts: whole numbers.
WHOLE_KEYS = ("quota.pods", "sessions.running", "sessions.max_timeout")
# Pier's own counts (not Kubernetes quantities): plain digits, at least this (no project may be
# left where no session can run, or none can be given a timeout; sessions.services.MIN_TIMEOUT).
MINIMUMS = {"sessions.running": 1, "sessions.max_timeout": 60}
# The keys whose sum over an organization's projects a budget caps.
BUDGET_KEYS = tuple(k for k in QUANTITY_KEYS if k.startswith("quota."))
# (request, limit): a request above its limit is refused (ResourceQuota and LimitRange alike).
REQUEST_LIMIT_PAIRS = (
    ("quota.requests.cpu", "quota.limits.cpu"),
    ("quota.requests.memory", "quota.limits.memory"),
    ("limits.request.cpu", "limits.default.cpu"),
    ("limits.request.memory", "limits.default.memory"),
    ("sessions.runner.requests.cpu", "sessions.runner.limits.cpu"),
    ("sessions.runner.requests.memory", "sessions.runner.limits.memory"),
)
MAX_QUANTITY = Decimal(2**63 - 1)
# apimachinery's quantity grammar (resource.ParseQuantity), ASCII digits only: no spaces,
# underscores or other digits that Python's Decimal would take. Signs are refused separately.
QUANTITY = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

PLATFORM = "platform"
ORGANIZATION = "organization"


def _refuse(name: str, message: str) -> InvalidInput:
    """The API's message names the field; the detail (shown at the field on pages) is the sentence."""
    return InvalidInput(f"{name}: {message}", details={name: [message[:1].upper() + message[1:]]})


def parse_quantity(value: Any) -> Decimal:
    """The amount of a quantity exactly when the API server would accept it; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("not a quantity")
    text = str(value)
    if not QUANTITY.match(text):
        raise ValueError("not a quantity")
    from kubernetes.utils import parse_quantity as parse

    return parse(text)


def clean_setting(key: str, value: Any, name: str) -> str:
    """A quantity key's value: a count of Pier's own (MINIMUMS) as plain digits and at least its
    minimum, any other as a Kubernetes quantity."""
    minimum = MINIMUMS.get(key)
    if minimum is None:
        return clean_quantity(value, name, whole=key in WHOLE_KEYS)
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 12) or int(text) < minimum:
        raise _refuse(name, f"give a whole number, at least {minimum}.")
    return str(int(text))


def clean_quantity(value: Any, name: str, *, whole: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _refuse(name, 'give a quantity such as "2", "500m" or "4Gi".')
    text = str(value)
    if text.startswith("-"):
        raise _refuse(name, "must not be negative.")
    try:
        amount = parse_quantity(text)
    except (ValueError, ArithmeticError):
        raise _refuse(name, f"{describe(text)} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi).")
    # What the API server would store differently (and so never match): finer than 1n, or
    # beyond its 64-bit range; a pod count is a whole number.
    if amount > MAX_QUANTITY or amount != amount.quantize(Decimal("1e-9")):
        raise _refuse(name, f"{describe(text)} is finer than 1n or too large for Kubernetes.")
    if whole and amount != amount.to_integral_value():
        raise _refuse(name, "give a whole number.")
    return text


def parse_destination(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """"10.0.0.0/8", "0.0.0.0/0:443", "2001:db8::/32:443" → (network, port or None)."""
    port = None
    if "/" in text and text.rfind(":") > text.rfind("/"):
        text, _, port_text = text.rpartition(":")
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise ValueError("port")
        port = int(port_text)
    return ipaddress.ip_network(text, strict=True), port


def format_destination(network, port: int | None) -> str:
    return f"{network}:{port}" if port else str(network)


def egress_allowed(value: str) -> bool:
    """Inside one of the platform's allowed networks (PIER_RUNNER_EGRESS_ALLOWED)."""
    network, _port = parse_destination(value)
    for allowed in settings.PIER_RUNNER_EGRESS_ALLOWED:
        outer = ipaddress.ip_network(allowed, strict=False)
        if outer.version == network.version and network.subnet_of(outer):
            return True
    return False


def _clean_value(key: str, value: Any, field: str) -> Any:
    name = f"{field}.{key}"
    if KEYS[key].kind == "quantity":
        return clean_setting(key, value, name)
    if KEYS[key].kind == "destinations":
        if not isinstance(value, list) or len(value) > 50 or not all(isinstance(v, str) and len(v) <= 60 for v in value):
            raise _refuse(name, "give a list of destinations (CIDR or CIDR:port).")
        cleaned = set()
        for item in value:
            try:
                cleaned.add(format_destination(*parse_destination(item.strip())))
            except ValueError:
                raise _refuse(name, f"{describe(item)} is not a CIDR (e.g. 10.0.0.0/8) or CIDR:port "
                                    "(e.g. 0.0.0.0/0:443).") from None
        return sorted(cleaned)
    if (not isinstance(value, list) or len(value) > 100
            or not all(isinstance(v, str) and len(v) <= 63 and _DNS_LABEL.match(v) for v in value)):
        raise _refuse(name, "give a list of namespace names.")
    return sorted(set(value))


def clean_overrides(overrides: Any, *, field: str = "config") -> dict[str, Any]:
    """Validate the shape of overrides (organization or project level). A null value stands for
    "remove this key" (JSON merge patch); it is dropped here."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise InvalidInput(f"{field}: give an object of settings.", details={field: ["Must be an object."]})
    cleaned, refusals = {}, Refusals()

    def clean(key: str, value: Any) -> None:
        if key not in KEYS:
            shown = key if len(key) <= 60 else key[:60] + "…"
            raise InvalidInput(f"{field}.{shown}: unknown setting; known: {', '.join(KEYS)}.",
                               details={f"{field}.{shown}": [f"Unknown setting; known: {', '.join(KEYS)}."]})
        if value is not None:
            cleaned[key] = _clean_value(key, value, field)

    for key, value in overrides.items():  # every bad value is reported at once
        refusals.check(clean, key, value)
    refusals.raise_any()
    return cleaned


def merge_patch(current: dict[str, Any], patch: Any, *, field: str, clean=None) -> dict[str, Any]:
    """RFC 7396 on a flat map: a key with null is removed, a missing key stays. `clean` validates
    (and drops nulls): the overrides' by default, or clean_ceilings for staff's maps."""
    clean = clean or clean_overrides
    if not isinstance(patch, dict):
        raise InvalidInput(f"{field}: give an object of settings.", details={field: ["Must be an object."]})
    clean(patch, field=field)  # shape and names first, nulls allowed
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return clean(merged, field=field)


def clean_locks(locks: Any, *, field: str) -> list[str]:
    if not isinstance(locks, list) or not all(isinstance(k, str) for k in locks):
        raise InvalidInput(f"{field}: give a list of setting names.", details={field: ["A list of setting names."]})
    unknown = [k for k in locks if k not in KEYS]
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 60 else unknown[0][:60] + "…"
        raise InvalidInput(f"{field}: unknown setting {shown!r}; known: {', '.join(KEYS)}.",
                           details={field: ["Unknown setting."]})
    return sorted(set(locks))


def clean_ceilings(ceilings: Any, *, field: str, keys: Iterable[str] = QUANTITY_KEYS) -> dict[str, str]:
    """Staff's per-organization ceilings (or budget): quantities for quantity keys."""
    if not isinstance(ceilings, dict):
        raise InvalidInput(f"{field}: give an object of quantities.", details={field: ["Must be an object."]})
    allowed = tuple(keys)
    cleaned = {}
    for key, value in ceilings.items():
        if key not in allowed:
            shown = key if len(key) <= 60 else key[:60] + "…"
            raise InvalidInput(f"{field}.{shown}: not one of {', '.join(allowed)}.",
                               details={f"{field}.{shown}": ["Unknown setting."]})
        if value is not None:
            cleaned[key] = clean_setting(key, value, f"{field}.{key}")
    return cleaned


# --- Policy: what constrains a tenant's values ----------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    value: str
    amount: Decimal
    scope: str  # "platform" (every organization) or "organization" (staff set it for this one)

    def describe(self) -> str:
        where = " for this organization" if self.scope == ORGANIZATION else ""
        return f"the ceiling of {self.value} that the platform set{where}"

    def as_dict(self) -> dict[str, str]:
        return {"value": self.value, "level": PLATFORM, "scope": self.scope}


@dataclass
class Policy:
    defaults: dict[str, Any] = field(default_factory=dict)  # the organization's defaults
    ceilings: dict[str, Ceiling] = field(default_factory=dict)
    locks: dict[str, str] = field(default_factory=dict)  # key → "platform" | "organization"
    budget: dict[str, Ceiling] = field(default_factory=dict)
    own_namespaces: frozenset[str] | None = None  # the organization's project namespaces

    @property
    def allowed_namespaces(self) -> frozenset[str]:
        platform = frozenset(settings.PIER_NETWORK_ALLOWED_NAMESPACES)
        return platform | (self.own_namespaces or frozenset())


def platform_ceilings() -> dict[str, Ceiling]:
    return {key: Ceiling(value, parse_quantity(value), PLATFORM) for key, value in settings.PIER_PROJECT_CEILINGS.items()}


def policy(*, tenant, defaults: dict[str, Any] | None = None, org_locks: Iterable[str] = (),
           own_namespaces: Iterable[str] | None = None) -> Policy:
    """The constraints in force for `tenant` (a Tenant row; its staff-set fields are read from it)."""
    ceilings = platform_ceilings()
    for key, value in (getattr(tenant, "config_ceilings", None) or {}).items():
        if key in QUANTITY_KEYS:
            ceilings[key] = Ceiling(value, parse_quantity(value), ORGANIZATION)
    budget = {key: Ceiling(value, parse_quantity(value), ORGANIZATION)
              for key, value in (getattr(tenant, "config_budget", None) or {}).items() if key in BUDGET_KEYS}
    locks = {key: ORGANIZATION for key in org_locks if key in KEYS}
    locks.update({key: PLATFORM for key in (getattr(tenant, "config_locks", None) or []) if key in KEYS})
    return Policy(defaults=dict(defaults or {}), ceilings=ceilings, locks=locks, budget=budget,
                  own_namespaces=None if own_namespaces is None else frozenset(own_namespaces))


def display(value: Any) -> str:
    """A value as pages and messages show it: lists comma-separated, nothing as ""."""
    if value is None:
        return ""
    return ", ".join(value) if isinstance(value, list) else str(value)


def effective(*, policy: Policy, overrides: dict[str, Any], clamp_requests: bool = True) -> dict[str, dict[str, Any]]:
    """{key: {"value", "source", "ceiling", "locked", "clamped_from"}} for every key.

    `source` is where the value comes from (platform, tenant, project); an override of a locked
    key is ignored (and kept); a value above its ceiling is clamped to it (`clamped_from` says
    what was asked); a request above its limit is brought down to the limit."""
    result: dict[str, dict[str, Any]] = {}
    for key in KEYS:
        lock = policy.locks.get(key)
        if key in overrides and lock is None and _usable(key, overrides[key]):
            value, source = overrides[key], "project"
        elif key in policy.defaults and lock != PLATFORM and _usable(key, policy.defaults[key]):
            value, source = policy.defaults[key], "tenant"
        else:
            value, source = settings.PIER_PROJECT_DEFAULTS[key], "platform"
        ceiling = policy.ceilings.get(key)
        entry = {"value": value, "source": source, "ceiling": ceiling.as_dict() if ceiling else None,
                 "locked": {"level": lock} if lock else None, "clamped_from": None}
        if ceiling is not None and parse_quantity(value) > ceiling.amount:
            entry["value"], entry["clamped_from"] = ceiling.value, value
        if key == "network.allow_from" and policy.own_namespaces is not None:
            allowed = policy.allowed_namespaces
            kept = [ns for ns in value if ns in allowed]
            if kept != list(value):
                entry["value"], entry["clamped_from"] = kept, value
        if key == "sessions.egress":  # the platform may have narrowed what it allows since
            kept = [d for d in value if egress_allowed(d)]
            if kept != list(value):
                entry["value"], entry["clamped_from"] = kept, value
        result[key] = entry
    for request_key, limit_key in REQUEST_LIMIT_PAIRS:
        request, limit = result[request_key], result[limit_key]
        if clamp_requests and parse_quantity(request["value"]) > parse_quantity(limit["value"]):
            request["clamped_from"] = request["clamped_from"] or request["value"]
            request["value"] = limit["value"]
    return result


def _usable(key: str, value: Any) -> bool:
    """A stored value from before the current rules (e.g. " 1", which Decimal took) is skipped
    rather than sent to a cluster that would refuse it."""
    if KEYS[key].kind != "quantity":
        return isinstance(value, list)
    try:
        parse_quantity(value)
    except (ValueError, ArithmeticError):
        return False
    return True


def values(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {key: entry["value"] for key, entry in config.items()}


def clamped(config: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """{key: (asked, applied)} for the values the ceilings or limits brought down."""
    return {key: (entry["clamped_from"], entry["value"]) for key, entry in config.items()
            if entry["clamped_from"] is not None}


# --- Validation of a change -------------------------------------------------------------------


def check_change(*, policy: Policy, level: str, field: str, before: dict[str, Any], after: dict[str, Any],
                 effective_before: dict[str, dict[str, Any]], effective_after: dict[str, dict[str, Any]]) -> None:
    """Refuse a change of `before` → `after` at `level` ("project" overrides or "tenant" defaults)
    naming the key, the limit and who set it. Only keys whose stored value changes are checked
    (and, for a request/limit pair, the pair of a changed key). The effective maps are computed
    with `clamp_requests=False`, so a request above its limit shows."""
    changed = {k for k in KEYS if before.get(k) != after.get(k)}
    errors: dict[str, list[str]] = {}
    messages: list[str] = []

    def fail(key: str, message: str, short: str) -> None:
        name = f"{field}.{key}"
        errors.setdefault(name, []).append(short)
        messages.append(f"{name}: {message}")

    for key in sorted(changed):
        lock = policy.locks.get(key)
        if key in after and lock is not None and (level == "project" or lock == PLATFORM):
            who = "the platform" if lock == PLATFORM else "the organization's admins"
            fail(key, f"this setting is locked by {who} ({lock}); it cannot be overridden here.",
                 f"Locked by the {lock}.")
            continue
        if key not in after:
            continue
        ceiling = policy.ceilings.get(key)
        if ceiling is not None and parse_quantity(after[key]) > ceiling.amount:
            fail(key, f"{display(after[key])} is above {ceiling.describe()}.",
                 f"At most {ceiling.value} (ceiling set by the platform).")
        if key == "network.allow_from" and policy.own_namespaces is not None:
            outside = [ns for ns in after[key] if ns not in policy.allowed_namespaces]
            if outside:
                allowed = sorted(settings.PIER_NETWORK_ALLOWED_NAMESPACES)
                fail(key, f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} neither a project "
                          f"namespace of this organization nor on the platform's allow-list ({', '.join(allowed)}).",
                     "Only this organization's project namespaces and the platform's allow-list.")
        if key == "sessions.egress":
            outside = [d for d in after[key] if not egress_allowed(d)]
            if outside:
                fail(key, f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} outside what the platform "
                          f"allows ({', '.join(settings.PIER_RUNNER_EGRESS_ALLOWED)}).",
                     "Only within the platform's PIER_RUNNER_EGRESS_ALLOWED.")
    if errors:
        raise InvalidInput("; ".join(messages), details=errors)
    for request_key, limit_key in REQUEST_LIMIT_PAIRS:
        if not ({request_key, limit_key} & changed):
            continue
        request = effective_after[request_key]["value"]
        limit = effective_after[limit_key]["value"]
        if parse_quantity(request) > parse_quantity(limit):
            key = request_key if request_key in changed else limit_key
            source = effective_after[limit_key]["source"] if key == request_key else effective_after[request_key]["source"]
            fail(key, f"{request_key} ({request}) would be above {limit_key} ({limit}, from the {_level(source)}); "
                      "a request cannot exceed its limit.", "A request cannot exceed its limit.")
    if errors:
        raise InvalidInput("; ".join(messages), details=errors)


def _level(source: str) -> str:
    return {"platform": "platform default", "tenant": "organization default", "project": "project"}[source]


def budget_totals(current: dict[str, Decimal], *, remove: dict[str, dict[str, Any]] | None = None,
                  add: dict[str, dict[str, Any]] | None = None) -> dict[str, Decimal]:
    """The organization's totals of the budgeted keys with one project's effective values taken
    out (`remove`) and/or put in (`add`)."""
    def amount(config: dict[str, dict[str, Any]] | None, key: str) -> Decimal:
        return parse_quantity(config[key]["value"]) if config else Decimal(0)

    return {key: current.get(key, Decimal(0)) - amount(remove, key) + amount(add, key) for key in BUDGET_KEYS}


def check_budget(*, policy: Policy, field: str, keys: Iterable[str], total_before: dict[str, Decimal],
                 total_after: dict[str, Decimal]) -> None:
    """Refuse (409 budget_exceeded) a change that raises the organization's total of a budgeted
    key above its budget. Lowering is always allowed, even while above a budget lowered later."""
    errors: dict[str, list[str]] = {}
    messages = []
    for key in keys:
        budget = policy.budget.get(key)
        total = total_after[key]
        if budget is None or total <= total_before[key] or total <= budget.amount:
            continue
        name = f"{field}.{key}"
        errors[name] = [f"The organization's budget of {budget.value} would be crossed."]
        messages.append(f"{name}: the organization's projects would use {format_amount(total)} in total, "
                        f"above the budget of {budget.value} that the platform set for this organization.")
    if errors:
        raise QuotaExceeded("; ".join(messages), code="budget_exceeded", details=errors)


def format_amount(amount: Decimal) -> str:
    normalized = amount.normalize()
    return format(normalized, "f") if normalized == normalized.to_integral_value() else str(normalized)
