"""Per-kind behaviour: what the real API server's registry strategies and scheme defaults do.

A real server defaults fields a client left out (a RoleBinding subject's `apiGroup`, a
NetworkPolicy's `policyTypes`, a container's `imagePullPolicy`...), canonicalizes quantities,
fills in fields on create (a Namespace's `spec.finalizers`, a Job's selector) and validates.
Pier reconciles by comparing what it wants with what it reads back, so the emulator must add
the same fields, or comparisons that pass here would flap against a cluster. Only the kinds
Pier manages are modelled, and only the rules that shape what a client reads back or gets
refused; each `Strategy` subclass mirrors one `pkg/registry/.../strategy.go` plus its
`SetDefaults_*` functions.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any

from . import validation as v
from .quantity import canonical_resource_list
from .selectors import SelectorError, from_structured

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"


class BadObject(ValueError):
    """A body that does not decode into the kind (a malformed quantity, bad base64): 400 BadRequest."""


class Strategy:
    """Hooks the store calls on every write; the base class is a kind with no special rules."""

    def default(self, obj: Obj) -> None:
        """Scheme defaulting, applied to every object a client sends (create, replace, patch result)."""

    def prepare_for_create(self, obj: Obj) -> None:
        """Server-owned fields of a new object (after uid and creationTimestamp are set)."""

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Fields an update may not change through the main resource (kept from `old`)."""

    def validate(self, obj: Obj) -> list[v.FieldError]:
        return []

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        return []

    def generation_changed(self, new: Obj, old: Obj) -> bool:
        """For kinds that track `metadata.generation`: does this update bump it?"""
        return new.get("spec") != old.get("spec")

    def grace_period_seconds(self, obj: Obj, options: Obj) -> int:
        """A graceful deletion's grace period (CheckGracefulDelete): 0 deletes at once."""
        return 0


def _dict(parent: Obj, key: str) -> Obj:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def _list(parent: Obj, key: str) -> list[Any]:
    value = parent.get(key)
    return value if isinstance(value, list) else []


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


# --- core/v1 ---------------------------------------------------------------------------------


class NamespaceStrategy(Strategy):
    FINALIZER = "kubernetes"
    NAME_LABEL = "kubernetes.io/metadata.name"

    def default(self, obj: Obj) -> None:
        # The server keeps this label equal to the name, whatever a client does to it.
        _dict(obj["metadata"], "labels")[self.NAME_LABEL] = obj["metadata"].get("name", "")

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Active"}
        finalizers = [f for f in _list(_dict(obj, "spec"), "finalizers") if f != self.FINALIZER]
        obj["spec"]["finalizers"] = [*finalizers, self.FINALIZER]

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        # Only the namespace controller (through /finalize) changes spec.finalizers.
        new["spec"] = dict(old.get("spec") or {})


_CONFIG_KEY = r"[-._a-zA-Z0-9]+"


def _validate_config_keys(obj: Obj, field: str) -> list[v.FieldError]:
    errors = []
    for key in obj.get(field) or {}:
        if len(key) > 253:
            errors.append(v.invalid(f"{field}[{key}]", key, "must be no more than 253 characters"))
        if not re.fullmatch(_CONFIG_KEY, key):
            errors.append(
                v.invalid(
                    f"{field}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                    f"(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')",
                )
            )
    return errors


def _validate_immutable_data(new: Obj, old: Obj, fields: tuple[str, ...]) -> list[v.FieldError]:
    if not old.get("immutable"):
        return []
    errors = [
        v.forbidden(field, "field is immutable when `immutable` is set")
        for field in fields
        if new.get(field) != old.get(field)
    ]
    if not new.get("immutable"):
        errors.append(v.forbidden("immutable", "field is immutable when `immutable` is set"))
    return errors


class ConfigMapStrategy(Strategy):
    def validate(self, obj: Obj) -> list[v.FieldError]:
        return _validate_config_keys(obj, "data") + _validate_config_keys(obj, "binaryData")

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        return _validate_immutable_data(new, old, ("data", "binaryData"))


class SecretStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        obj.setdefault("type", "Opaque")
        data = obj.get("data") or {}
        for key, value in data.items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise BadObject(
                    f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[{key}]'
                ) from None
        # stringData is write-only: it is folded into data, as the v1 → internal conversion does.
        string_data = obj.pop("stringData", None) or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data:
            obj["data"] = data

    def validate(self, obj: Obj) -> list[v.FieldError]:
        errors = _validate_config_keys(obj, "data")
        if obj.get("type") == "kubernetes.io/service-account-token":
            # The rest (uid, token) the token controller adds (serviceaccounts.py).
            if not (obj["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name"):
                errors.append(v.required("metadata.annotations[kubernetes.io/service-account.name]"))
        return errors

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        errors = []
        if new.get("type") != old.get("type"):
            errors.append(v.immutable("type", new.get("type")))
        return errors + _validate_immutable_data(new, old, ("data",))


class ResourceQuotaStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        if "hard" in spec:
            try:
                spec["hard"] = canonical_resource_list(spec["hard"], "spec.hard")
            except ValueError as error:
                raise BadObject(str(error)) from None

    def validate(self, obj: Obj) -> list[v.FieldError]:
        hard = (obj.get("spec") or {}).get("hard") or {}
        return [
            v.invalid(f"spec.hard[{name}]", value, "must be greater than or equal to 0")
            for name, value in hard.items()
            if value.startswith("-")
        ]


_LIMIT_FIELDS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


class LimitRangeStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        for index, item in enumerate(_list(obj.get("spec") or {}, "limits")):
            if not isinstance(item, dict):
                raise BadObject(f"spec.limits[{index}]: expected an object")
            for name in _LIMIT_FIELDS:
                if name in item:
                    try:
                        item[name] = canonical_resource_list(item[name], f"spec.limits[{index}].{name}")
                    except ValueError as error:
                        raise BadObject(str(error)) from None
                    if not item[name]:
                        del item[name]
            if item.get("type") == "Container":
                # SetDefaults_LimitRangeItem: a missing default limit is the max, a missing default
                # request is the default limit, else the min. Empty maps are omitted on the wire.
                default = dict(item.get("max") or {}) | dict(item.get("default") or {})
                request = dict(item.get("min") or {}) | default | dict(item.get("defaultRequest") or {})
                for name, value in (("default", default), ("defaultRequest", request)):
                    if value:
                        item[name] = value


# --- rbac.authorization.k8s.io/v1 ------------------------------------------------------------


class RoleStrategy(Strategy):
    def __init__(self, *, namespaced: bool):
        self.namespaced = namespaced

    def validate(self, obj: Obj) -> list[v.FieldError]:
        errors = []
        for index, rule in enumerate(_list(obj, "rules")):
            path = f"rules[{index}]"
            if not isinstance(rule, dict):
                errors.append(v.invalid(path, rule, "must be an object"))
                continue
            if not rule.get("verbs"):
                errors.append(v.required(f"{path}.verbs", "verbs must contain at least one value"))
            if rule.get("nonResourceURLs"):
                if self.namespaced:
                    errors.append(
                        v.invalid(
                            f"{path}.nonResourceURLs",
                            rule["nonResourceURLs"],
                            "namespaced rules cannot apply to non-resource URLs",
                        )
                    )
                if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                    errors.append(
                        v.invalid(
                            f"{path}.nonResourceURLs",
                            rule["nonResourceURLs"],
                            "rules cannot apply to both regular resources and non-resource URLs",
                        )
                    )
                continue
            if not rule.get("apiGroups"):
                errors.append(v.required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
            if not rule.get("resources"):
                errors.append(v.required(f"{path}.resources", "resource rules must supply at least one resource"))
        return errors


class RoleBindingStrategy(Strategy):
    SUBJECT_KINDS = ("ServiceAccount", "User", "Group")

    def __init__(self, *, namespaced: bool):
        self.namespaced = namespaced

    def default(self, obj: Obj) -> None:
        role_ref = _dict(obj, "roleRef")
        if not role_ref.get("apiGroup"):
            role_ref["apiGroup"] = RBAC_GROUP
        for subject in _list(obj, "subjects"):
            if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = RBAC_GROUP

    def validate(self, obj: Obj) -> list[v.FieldError]:
        errors = []
        role_ref = obj.get("roleRef") or {}
        if role_ref.get("apiGroup") != RBAC_GROUP:
            errors.append(v.not_supported("roleRef.apiGroup", role_ref.get("apiGroup", ""), [RBAC_GROUP]))
        kinds = ["Role", "ClusterRole"] if self.namespaced else ["ClusterRole"]
        if role_ref.get("kind") not in kinds:
            errors.append(v.not_supported("roleRef.kind", role_ref.get("kind", ""), kinds))
        if not role_ref.get("name"):
            errors.append(v.required("roleRef.name"))
        else:
            errors += [v.invalid("roleRef.name", role_ref["name"], m) for m in v.path_segment_name(role_ref["name"])]
        for index, subject in enumerate(_list(obj, "subjects")):
            errors += self._validate_subject(subject if isinstance(subject, dict) else {}, f"subjects[{index}]")
        return errors

    def _validate_subject(self, subject: Obj, path: str) -> list[v.FieldError]:
        errors = []
        kind, name = subject.get("kind", ""), subject.get("name", "")
        if not name:
            errors.append(v.required(f"{path}.name"))
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                errors.append(v.not_supported(f"{path}.apiGroup", subject["apiGroup"], [""]))
            if name:
                errors += [v.invalid(f"{path}.name", name, m) for m in v.dns1123_subdomain(name)]
            if not self.namespaced and not subject.get("namespace"):
                errors.append(v.required(f"{path}.namespace"))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != RBAC_GROUP:
                errors.append(v.not_supported(f"{path}.apiGroup", subject.get("apiGroup", ""), [RBAC_GROUP]))
        else:
            errors.append(v.not_supported(f"{path}.kind", kind, self.SUBJECT_KINDS))
        return errors

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        if new.get("roleRef") != old.get("roleRef"):
            return [v.invalid("roleRef", new.get("roleRef"), "cannot change roleRef")]
        return []


# --- networking.k8s.io/v1 --------------------------------------------------------------------


class NetworkPolicyStrategy(Strategy):
    POLICY_TYPES = ("Ingress", "Egress")

    def default(self, obj: Obj) -> None:
        spec = _dict(obj, "spec")
        spec.setdefault("podSelector", {})
        for direction in ("ingress", "egress"):
            for rule in _list(spec, direction):
                for port in _list(rule, "ports") if isinstance(rule, dict) else []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]

    def prepare_for_create(self, obj: Obj) -> None:
        obj.pop("status", None)

    def validate(self, obj: Obj) -> list[v.FieldError]:
        return [
            v.not_supported(f"spec.policyTypes[{index}]", policy_type, self.POLICY_TYPES)
            for index, policy_type in enumerate(_list(obj["spec"], "policyTypes"))
            if policy_type not in self.POLICY_TYPES
        ]


# --- pods and pod templates (core/v1, apps/v1, batch/v1) -------------------------------------


def _default_container(container: Obj, path: str) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in container:
        image = container.get("image") or ""
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
        container["imagePullPolicy"] = "Always" if tag in ("", "latest") else "IfNotPresent"
    resources = _dict(container, "resources")
    for name in ("limits", "requests"):
        if name in resources:
            try:
                resources[name] = canonical_resource_list(resources[name], f"{path}.resources.{name}")
            except ValueError as error:
                raise BadObject(str(error)) from None
    for port in _list(container, "ports"):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Obj, path: str) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(spec, field)):
            if isinstance(container, dict):
                _default_container(container, f"{path}.{field}[{index}]")


def validate_pod_spec(spec: Obj, path: str, restart_policies: list[str]) -> list[v.FieldError]:
    errors = []
    containers = _list(spec, "containers")
    if not containers:
        errors.append(v.required(f"{path}.containers"))
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(spec, field)):
            container_path = f"{path}.{field}[{index}]"
            container = container if isinstance(container, dict) else {}
            name = container.get("name", "")
            if not name:
                errors.append(v.required(f"{container_path}.name"))
            else:
                errors += [v.invalid(f"{container_path}.name", name, m) for m in v.dns1123_label(name)]
                if name in names:
                    errors.append(v.FieldError("FieldValueDuplicate", f"{container_path}.name", "", name))
                names.add(name)
            if not container.get("image"):
                errors.append(v.required(f"{container_path}.image"))
    deadline = spec.get("activeDeadlineSeconds")
    valid = isinstance(deadline, int) and not isinstance(deadline, bool) and 1 <= deadline <= 2**32 - 1
    if deadline is not None and not valid:
        errors.append(
            v.invalid(f"{path}.activeDeadlineSeconds", deadline, "must be between 1 and 4294967295, inclusive")
        )
    if spec.get("restartPolicy") not in restart_policies:
        errors.append(v.not_supported(f"{path}.restartPolicy", spec.get("restartPolicy"), restart_policies))
    return errors


def _default_template(obj: Obj) -> None:
    template = _dict(_dict(obj, "spec"), "template")
    default_pod_spec(_dict(template, "spec"), "spec.template.spec")


def _validate_selector_matches_template(obj: Obj) -> list[v.FieldError]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [v.required("spec.selector")]
    try:
        parsed = from_structured(selector)
    except SelectorError as error:
        return [v.invalid("spec.selector", selector, str(error))]
    labels = _labels(spec.get("template") or {})
    if not parsed.matches(labels):
        return [v.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")]
    return []


class PodStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        default_pod_spec(_dict(obj, "spec"), "spec")

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}

    def validate(self, obj: Obj) -> list[v.FieldError]:
        return validate_pod_spec(obj["spec"], "spec", ["Always", "OnFailure", "Never"])

    # What a pod update may change in its spec (ValidatePodUpdate); the scheduler's binding and
    # the kubelet's status are not updates through the API.
    IMMUTABLE_SPEC = (
        "pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
        "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
        "(allow it to be set to 1 if it was previously negative)"
    )

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        errors = []
        deadline, was = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
        field = "spec.activeDeadlineSeconds"
        if deadline is None and was is not None:
            errors.append(v.invalid(field, None, "must not update from a positive integer to nil value"))
        elif deadline is not None and was is not None and isinstance(deadline, int) and deadline > was:
            errors.append(v.invalid(field, deadline, "must be less than or equal to previous value"))
        if errors:
            return errors
        old_tolerations = _list(old_spec, "tolerations")
        if any(t not in _list(new_spec, "tolerations") for t in old_tolerations):
            errors.append(
                v.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
            )

        def comparable(spec: Obj) -> Obj:
            spec = copy.deepcopy(spec)
            for field in ("activeDeadlineSeconds", "tolerations"):
                spec.pop(field, None)
            for containers in ("initContainers", "containers"):
                for container in _list(spec, containers):
                    if isinstance(container, dict):
                        container.pop("image", None)
            return spec

        if comparable(new_spec) != comparable(old_spec):
            errors.append(v.forbidden("spec", self.IMMUTABLE_SPEC))
        return errors

    def grace_period_seconds(self, obj: Obj, options: Obj) -> int:
        # A pod on a node is only marked: its kubelet stops the containers, then removes it.
        if not (obj.get("spec") or {}).get("nodeName") or (obj.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        ):
            return 0
        requested = options.get("gracePeriodSeconds")
        if isinstance(requested, int) and not isinstance(requested, bool):
            return max(requested, 0)
        return int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


class DeploymentStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = _dict(obj, "spec")
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = _dict(spec, "strategy")
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = _dict(strategy, "rollingUpdate")
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        _default_template(obj)

    def validate(self, obj: Obj) -> list[v.FieldError]:
        return _validate_selector_matches_template(obj) + validate_pod_spec(
            obj["spec"]["template"]["spec"], "spec.template.spec", ["Always"]
        )

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        if new["spec"].get("selector") != old["spec"].get("selector"):
            return [v.immutable("spec.selector", new["spec"].get("selector"))]
        return []

    def generation_changed(self, new: Obj, old: Obj) -> bool:
        # Annotations are copied to ReplicaSets, so changing them is a new generation too.
        return new.get("spec") != old.get("spec") or new["metadata"].get("annotations") != old["metadata"].get(
            "annotations"
        )


class JobStrategy(Strategy):
    CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
    JOB_NAME = "batch.kubernetes.io/job-name"

    def default(self, obj: Obj) -> None:
        spec = _dict(obj, "spec")
        if "completions" not in spec and "parallelism" not in spec:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
        template_labels = _labels(spec.get("template") or {})
        if template_labels and not obj["metadata"].get("labels"):
            obj["metadata"]["labels"] = dict(template_labels)
        _default_template(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        if obj["spec"].get("manualSelector"):
            return
        # The job controller finds its pods through labels the server generates from the uid.
        uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
        template_meta = _dict(obj["spec"]["template"], "metadata")
        labels = _dict(template_meta, "labels")
        labels.update({"controller-uid": uid, self.CONTROLLER_UID: uid, "job-name": name, self.JOB_NAME: name})
        obj["spec"]["selector"] = {"matchLabels": {self.CONTROLLER_UID: uid}}

    def validate(self, obj: Obj) -> list[v.FieldError]:
        errors = validate_pod_spec(obj["spec"]["template"]["spec"], "spec.template.spec", ["OnFailure", "Never"])
        if obj["spec"].get("manualSelector"):
            errors += _validate_selector_matches_template(obj)
        return errors

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        # The whole template is immutable once the job exists (the real server relaxes this for a
        # few scheduling fields of suspended jobs that never started, which Pier does not use).
        return [
            v.immutable(f"spec.{field}", new["spec"].get(field))
            for field in ("selector", "template", "completionMode")
            if new["spec"].get(field) != old["spec"].get(field)
        ]
