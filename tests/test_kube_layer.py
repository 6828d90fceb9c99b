"""portal.kube against the Kubernetes API emulator the test command started: one layer for any
kind (built-in and custom), server-side apply that compares only what Pier sets, delete with a
propagation policy, lists with their resourceVersion, pod logs as text, one error translation."""

from __future__ import annotations

import secrets

import pytest
from kubernetes import client

import kubehelp
from conftest import wait_for
from portal import kube

WRITES = ("create", "update", "patch", "delete")
# A custom resource of the test's own (Pier's AgenticSession CRD is installed for the whole run).
SESSION = ("layer.test.pier.dev/v1alpha1", "Probe")


@pytest.fixture(autouse=True)
def _no_faults_left():
    yield
    kubehelp.clear_faults()


@pytest.fixture
def ns():
    name = f"layer-{secrets.token_hex(4)}"
    assert kube.reconcile({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "labels": kube.labels(tenant="layer")}}) == "created"
    yield name
    kube.delete("Namespace", name)


def writes_during(action) -> dict[str, int]:
    before = kubehelp.requests_by_verb()
    action()
    after = kubehelp.requests_by_verb()
    return {verb: after.get(verb, 0) - before.get(verb, 0) for verb in WRITES}


def meta(name: str, ns: str, **extra) -> dict:
    return {"name": name, "namespace": ns, "labels": kube.labels(tenant="layer"), **extra}


def quota(ns: str, **hard) -> dict:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("quota", ns),
            "spec": {"hard": hard or {"pods": "10", "requests.memory": "1Gi"}}}


def policy(ns: str, *allowed: str, labels: dict | None = None) -> dict:
    sources = [{"podSelector": {}}] + [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}} for name in allowed]
    m = meta("isolation", ns)
    if labels is not None:
        m["labels"] = labels
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": m,
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": sources}]}}


def binding(ns: str, *users: str, role: str = "view") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("access", ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in users]}


def job(ns: str, name: str = "runner", *lines: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(name, ns),
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "runner", "image": "runner:1",
                "args": [f"--pier-emulator-log={line}" for line in lines]}]}}}}


def job_pods(ns: str, name: str) -> list[dict]:
    return kube.list_objects("Pod", ns, label_selector=f"job-name={name}")


def test_a_pass_with_nothing_to_change_makes_no_write_request(ns):
    objects = [quota(ns), policy(ns, "openshift-ingress"), binding(ns, "ann"), job(ns, "once", "hello"),
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("bot", ns)}]
    assert [kube.reconcile(o) for o in objects] == ["created"] * 5
    outcomes = []
    assert writes_during(lambda: outcomes.extend(kube.reconcile(o) for o in objects)) == dict.fromkeys(WRITES, 0)
    assert outcomes == ["unchanged"] * 5


def test_fields_the_server_defaults_are_not_drift(ns):
    kube.reconcile(job(ns, "defaults", "hi"))
    live = kube.get("Job", "defaults", ns)
    # The server filled in what Pier did not set: none of it is Pier's to compare.
    assert live["spec"]["backoffLimit"] == 6 and live["spec"]["completions"] == 1
    assert live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert live["spec"]["selector"]["matchLabels"]
    kube.reconcile(policy(ns))
    assert kube.get("NetworkPolicy", "isolation", ns)["spec"]["policyTypes"] == ["Ingress"]
    assert writes_during(lambda: [kube.reconcile(job(ns, "defaults", "hi")), kube.reconcile(policy(ns))]) \
        == dict.fromkeys(WRITES, 0)


def test_what_pier_stops_setting_is_removed_from_the_cluster(ns):
    kube.reconcile(policy(ns, "openshift-ingress", "monitoring",
                          labels={**kube.labels(tenant="layer"), "pier.dev/extra": "yes"}))
    kube.reconcile(quota(ns, pods="10", secrets="5"))

    assert kube.reconcile(policy(ns, "openshift-ingress")) == "patched"  # a list item and a label less
    assert kube.reconcile(quota(ns, pods="10")) == "patched"  # a map key less

    live = kube.get("NetworkPolicy", "isolation", ns)
    assert live["spec"]["ingress"][0]["from"] == [
        {"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-ingress"}}}]
    assert "pier.dev/extra" not in live["metadata"]["labels"]
    assert kube.get("ResourceQuota", "quota", ns)["spec"]["hard"] == {"pods": "10"}
    assert kube.reconcile(policy(ns, "openshift-ingress")) == "unchanged"


def test_a_hand_edit_of_a_field_pier_sets_is_taken_back(ns):
    core = client.CoreV1Api(kube.api_client())
    kube.reconcile(quota(ns))
    core.patch_namespaced_resource_quota("quota", ns, {"spec": {"hard": {"pods": "50"}}}, field_manager="kubectl-edit")
    assert kube.get("ResourceQuota", "quota", ns)["spec"]["hard"]["pods"] == "50"

    assert kube.reconcile(quota(ns)) == "patched"
    assert kube.get("ResourceQuota", "quota", ns)["spec"]["hard"]["pods"] == "10"
    # An atomic list: a subject added by hand to Pier's binding is drift too, and goes.
    rbac = client.RbacAuthorizationV1Api(kube.api_client())
    kube.reconcile(binding(ns, "ann"))
    extra = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}
    live = kube.get("RoleBinding", "access", ns)
    rbac.patch_namespaced_role_binding("access", ns, {"subjects": live["subjects"] + [extra]}, field_manager="kubectl-edit")
    assert kube.reconcile(binding(ns, "ann")) == "patched"
    assert [s["name"] for s in kube.get("RoleBinding", "access", ns)["subjects"]] == ["ann"]


def test_fields_another_manager_added_are_left_alone(ns):
    core = client.CoreV1Api(kube.api_client())
    kube.reconcile(quota(ns))
    core.patch_namespaced_resource_quota(
        "quota", ns, {"metadata": {"labels": {"team": "ops"}, "annotations": {"ops/ticket": "42"}},
                      "spec": {"hard": {"services": "3"}}}, field_manager="ops")
    outcomes = []
    assert writes_during(lambda: outcomes.append(kube.reconcile(quota(ns)))) == dict.fromkeys(WRITES, 0)
    assert outcomes == ["unchanged"]
    # And when Pier does change something, what the other manager set stays.
    assert kube.reconcile(quota(ns, pods="20", **{"requests.memory": "1Gi"})) == "patched"
    live = kube.get("ResourceQuota", "quota", ns)
    assert live["spec"]["hard"] == {"pods": "20", "requests.memory": "1Gi", "services": "3"}
    assert live["metadata"]["labels"]["team"] == "ops" and live["metadata"]["annotations"] == {"ops/ticket": "42"}


def test_an_object_pier_did_not_create_is_never_touched(ns):
    core = client.CoreV1Api(kube.api_client())
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "quota"}, "spec": {"hard": {"pods": "1"}}})
    assert writes_during(lambda: pytest.raises(kube.NotManaged, kube.reconcile, quota(ns))) == dict.fromkeys(WRITES, 0)
    assert kube.get("ResourceQuota", "quota", ns)["spec"]["hard"] == {"pods": "1"}


def test_a_changed_roleref_or_job_spec_is_recreated(ns):
    kube.reconcile(binding(ns, "ann", role="view"))
    assert kube.reconcile(binding(ns, "ann", role="edit")) == "recreated"
    assert kube.get("RoleBinding", "access", ns)["roleRef"]["name"] == "edit"

    kube.reconcile(job(ns, "runner", "first"))
    first = kube.get("Job", "runner", ns)["metadata"]["uid"]
    wait_for(lambda: job_pods(ns, "runner"), timeout=30, message="the first run's pod")
    assert kube.reconcile(job(ns, "runner", "second")) == "recreated"
    assert kube.get("Job", "runner", ns)["metadata"]["uid"] != first
    wait_for(lambda: all(p["metadata"]["ownerReferences"][0]["uid"] != first for p in job_pods(ns, "runner")),
             timeout=30, message="the first run's pods to go")


def test_deleting_a_job_takes_its_pods(ns):
    kube.reconcile(job(ns, "doomed", "working"))
    wait_for(lambda: job_pods(ns, "doomed"), timeout=30, message="the Job's pod")
    assert kube.delete("Job", "doomed", ns) is True
    assert kube.get("Job", "doomed", ns) is None
    wait_for(lambda: job_pods(ns, "doomed") == [], timeout=30, message="the pods to follow the Job")
    assert kube.delete("Job", "doomed", ns) is False  # already gone is success


def test_pod_log_is_text_with_tail_and_limit(ns):
    kube.reconcile(job(ns, "talker", "one", "two", "drei ✓ éà"))

    def started() -> str | None:
        pods = job_pods(ns, "talker")
        if pods and pods[0].get("status", {}).get("phase") in ("Running", "Succeeded"):
            return pods[0]["metadata"]["name"]
        return None

    pod = wait_for(started, timeout=30, message="the pod to start")
    assert kube.pod_log(ns, pod) == "one\ntwo\ndrei ✓ éà\n"
    assert kube.pod_log(ns, pod, container="runner", tail_lines=1) == "drei ✓ éà\n"
    assert kube.pod_log(ns, pod, limit_bytes=5) == "one\nt"
    assert kube.pod_log(ns, pod, since_seconds=3600).startswith("one\n")


def test_lists_carry_their_resource_version(ns):
    kube.reconcile({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("a", ns)})
    first = kube.list_objects("ServiceAccount", ns, label_selector="pier.dev/tenant=layer")
    assert [o["metadata"]["name"] for o in first] == ["a"]
    assert first.resource_version
    kube.reconcile({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("b", ns)})
    second = kube.list_objects(("v1", "ServiceAccount"), ns, label_selector="pier.dev/tenant=layer")
    assert len(second) == 2 and int(second.resource_version) > int(first.resource_version)


def session_crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "probes.layer.test.pier.dev", "labels": kube.labels(tenant="layer")},
        "spec": {"group": "layer.test.pier.dev", "scope": "Namespaced",
                 "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "required": ["prompt"], "properties": {
                                       "prompt": {"type": "string"},
                                       "model": {"type": "string", "enum": ["small", "large"], "default": "small"},
                                       "env": {"type": "array", "x-kubernetes-list-type": "map",
                                               "x-kubernetes-list-map-keys": ["name"],
                                               "items": {"type": "object", "required": ["name"], "properties": {
                                                   "name": {"type": "string"}, "value": {"type": "string"}}}}}},
                                   "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]},
    }


def session(ns: str, name: str, **env: str) -> dict:
    return {"apiVersion": "layer.test.pier.dev/v1alpha1", "kind": "Probe", "metadata": meta(name, ns),
            "spec": {"prompt": "fix the tests", "env": [{"name": k, "value": v} for k, v in env.items()]}}


def test_a_custom_resource_goes_through_the_same_functions(ns):
    with pytest.raises(kube.UnknownKind):
        kube.get(SESSION, "s1", ns)  # no CRD yet
    assert kube.reconcile(session_crd()) in ("created", "unchanged")
    try:
        established = wait_for(lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (kube.get("CustomResourceDefinition", "probes.layer.test.pier.dev").get("status") or {}).get("conditions", [])),
            timeout=10, message="the CRD to be established")
        assert established
        kube.refresh_discovery()  # what the installer does once its CRD is served

        assert kube.reconcile(session(ns, "s1", A="1", B="2")) == "created"
        live = kube.get(SESSION, "s1", ns)
        assert live["spec"]["model"] == "small"  # the schema's default: not Pier's, not drift
        assert kube.reconcile(session(ns, "s1", A="1", B="2")) == "unchanged"
        # A keyed list (x-kubernetes-list-type: map): an item Pier no longer sets goes.
        assert kube.reconcile(session(ns, "s1", A="1")) == "patched"
        assert kube.get(SESSION, "s1", ns)["spec"]["env"] == [{"name": "A", "value": "1"}]
        sessions = kube.list_objects(SESSION, ns)
        assert [s["metadata"]["name"] for s in sessions] == ["s1"] and sessions.resource_version
        assert kube.delete(SESSION, "s1", ns) is True
        assert kube.get(SESSION, "s1", ns) is None
        assert kube.delete(SESSION, "s1", ns) is False
    finally:
        kube.delete("CustomResourceDefinition", "probes.layer.test.pier.dev")
        kube.refresh_discovery()


def test_errors_translate(ns):
    assert kube.get("ResourceQuota", "absent", ns) is None
    assert kube.delete("ResourceQuota", "absent", ns) is False

    bad = job(ns, "bad")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"  # a Job's pods must not restart forever
    with pytest.raises(kube.KubeError) as refused:
        kube.reconcile(bad)
    assert refused.value.status == 422 and refused.value.reason == "Invalid"
    assert not isinstance(refused.value, kube.KubeUnavailable)

    kubehelp.inject_fault(verb="get", resource="resourcequotas", status=503, times=1)
    with pytest.raises(kube.KubeUnavailable) as unavailable:
        kube.get("ResourceQuota", "absent", ns)
    assert unavailable.value.status == 503

    kubehelp.inject_fault(verb="list", resource="serviceaccounts", drop=True, times=2)
    with pytest.raises(kube.KubeUnavailable):
        kube.list_objects("ServiceAccount", ns)

    kubehelp.inject_fault(verb="create", resource="serviceaccounts/token", status=503, times=1)
    kube.reconcile({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("bot", ns)})
    with pytest.raises(kube.KubeUnavailable):
        kube.request_token(ns, "bot", expiration_seconds=600)
    token, expires = kube.request_token(ns, "bot", expiration_seconds=600)
    assert token and expires
    with pytest.raises(kube.KubeError) as missing:
        kube.request_token(ns, "nobody", expiration_seconds=600)
    assert missing.value.status == 404


def test_a_kind_installed_by_another_process_is_found_without_a_refresh(ns):
    extensions = client.ApiextensionsV1Api(kube.api_client())

    def crd(kind: str) -> dict:
        plural = kind.lower() + "s"
        return {"metadata": {"name": f"{plural}.layer.pier.dev"},
                "spec": {"group": "layer.pier.dev", "scope": "Namespaced",
                         "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                             "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}

    def served(kind: str) -> bool:
        live = extensions.read_custom_resource_definition(f"{kind.lower()}s.layer.pier.dev")
        return any(c.type == "Established" and c.status == "True" for c in live.status.conditions or [])

    try:
        extensions.create_custom_resource_definition(crd("Widget"))
        wait_for(lambda: served("Widget"), timeout=10, message="Widget to be served")
        assert kube.list_objects(("layer.pier.dev/v1", "Widget"), ns) == []  # discovery of the group is cached now
        extensions.create_custom_resource_definition(crd("Gadget"))  # a new kind in a cached group/version
        wait_for(lambda: served("Gadget"), timeout=10, message="Gadget to be served")
        gadget = {"apiVersion": "layer.pier.dev/v1", "kind": "Gadget", "metadata": meta("g1", ns), "spec": {"size": 3}}
        assert kube.reconcile(gadget) == "created"
        assert kube.get(("layer.pier.dev/v1", "Gadget"), "g1", ns)["spec"] == {"size": 3}
    finally:
        for plural in ("widgets", "gadgets"):
            kube.delete("CustomResourceDefinition", f"{plural}.layer.pier.dev")
        kube.refresh_discovery()
