"""Contract tests of the Kubernetes API emulator (tests/kube_emulator).

Each test pins one behaviour of the real API server that Pier relies on, observed the way Pier
observes it: through the official `kubernetes` client's typed APIs, configured from a
kubeconfig the emulator wrote. If the emulator drifts from these, Pier's tests stop meaning
anything about a real cluster. No database is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import urllib3
from kube_emulator import KubeEmulator
from kubecontract import *
from kubecontract import (
    MERGE,
    NAMESPACE_DELETION_DELAY,
    failure,
    raw,
    status_of,
    wait_until,
)
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

ROOT = Path(__file__).resolve().parent.parent
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# --- connecting --------------------------------------------------------------------------------


def test_kubeconfig_points_the_official_client_at_the_emulator(emulator, kubeconfig, api_client):
    contexts, current = config.list_kube_config_contexts(config_file=str(kubeconfig))
    assert current["name"] == "pier-emulator"
    assert [c["name"] for c in contexts] == ["pier-emulator"]
    assert api_client.configuration.host == emulator.url
    assert emulator.url.startswith("http://127.0.0.1:")
    # The convenience client reaches the same server.
    names = [n.metadata.name for n in client.CoreV1Api(emulator.api_client()).list_namespace().items]
    assert "default" in names


def test_discovery_serves_versions_groups_and_resources(api_client, tmp_path):
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(api_client).get_api_versions().groups}
    assert groups == {
        "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1",
        "networking.k8s.io": "networking.k8s.io/v1",
        "apps": "apps/v1",
        "batch": "batch/v1",
        "authentication.k8s.io": "authentication.k8s.io/v1",
        "apiextensions.k8s.io": "apiextensions.k8s.io/v1",
        "authorization.k8s.io": "authorization.k8s.io/v1",
    }
    core_resources = {r.name: r for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"namespaces", "serviceaccounts", "secrets", "configmaps", "resourcequotas", "limitranges", "pods"} <= set(
        core_resources
    )
    assert core_resources["namespaces"].namespaced is False and core_resources["secrets"].namespaced is True
    rbac_kinds = {r.kind for r in client.RbacAuthorizationV1Api(api_client).get_api_resources().resources}
    assert rbac_kinds == {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert client.VersionApi(api_client).get_code().major == "1"

    # The dynamic client needs discovery to find a kind; it works end to end.
    dynamic = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    config_maps = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    config_maps.create(body={"metadata": {"name": "via-dynamic"}, "data": {"k": "v"}}, namespace="default")
    assert config_maps.get(name="via-dynamic", namespace="default").data.k == "v"


# --- metadata ----------------------------------------------------------------------------------


def test_namespace_create_fills_in_what_the_server_owns(core):
    body = raw(core.create_namespace, {"metadata": {"name": "team-a", "labels": {"pier.dev/tenant": "acme"}}})
    metadata = body["metadata"]
    assert (body["kind"], body["apiVersion"]) == ("Namespace", "v1")
    assert UUID4.match(metadata["uid"])
    assert RFC3339.match(metadata["creationTimestamp"])
    assert metadata["resourceVersion"].isdigit()
    assert "generation" not in metadata  # namespaces do not track generation
    assert metadata["labels"] == {"pier.dev/tenant": "acme", "kubernetes.io/metadata.name": "team-a"}
    assert body["spec"] == {"finalizers": ["kubernetes"]}
    assert body["status"] == {"phase": "Active"}
    # The ServiceAccount controller gives every namespace its "default" account.
    assert [sa.metadata.name for sa in core.list_namespaced_service_account("team-a").items] == ["default"]


def test_namespace_name_label_cannot_be_removed(core):
    core.create_namespace({"metadata": {"name": "team-a", "labels": {"x": "1"}}})
    patched = core.patch_namespace("team-a", {"metadata": {"labels": None}})
    assert patched.metadata.labels == {"kubernetes.io/metadata.name": "team-a"}


def test_resource_version_is_one_counter_bumped_by_every_write(core, ns):
    first = core.create_namespaced_config_map(ns, config_map("a"))
    second = core.create_namespaced_secret(ns, {"metadata": {"name": "b"}})
    third = core.patch_namespaced_config_map("a", ns, {"data": {"k": "v"}})
    versions = [int(o.metadata.resource_version) for o in (first, second, third)]
    assert versions == sorted(versions) and len(set(versions)) == 3
    core.delete_namespaced_secret("b", ns)
    listed = core.list_namespaced_config_map(ns)
    assert int(listed.metadata.resource_version) > versions[-1]  # the delete was a write too


def test_generation_counts_spec_changes_only(net, core, ns):
    policy = {"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    created = net.create_namespaced_network_policy(ns, policy)
    assert created.metadata.generation == 1
    assert created.metadata.namespace == ns
    relabelled = net.patch_namespaced_network_policy("deny", ns, {"metadata": {"labels": {"a": "b"}}})
    assert relabelled.metadata.generation == 1
    assert int(relabelled.metadata.resource_version) > int(created.metadata.resource_version)
    changed = net.patch_namespaced_network_policy("deny", ns, {"spec": {"podSelector": {"matchLabels": {"x": "y"}}}})
    assert changed.metadata.generation == 2
    # Kinds without a spec-driven controller have no generation at all.
    assert core.create_namespaced_config_map(ns, config_map("c")).metadata.generation is None


def test_empty_metadata_collections_read_back_as_absent(core, ns):
    body = {"metadata": {"name": "a", "labels": {}, "annotations": {}, "finalizers": []}}
    metadata = raw(core.create_namespaced_config_map, ns, body)["metadata"]
    assert not {"labels", "annotations", "finalizers"} & set(metadata)


def test_a_write_that_changes_nothing_keeps_the_resource_version(core, ns):
    created = core.create_namespaced_config_map(ns, config_map("a", {"app": "x"}, data={"k": "v"}))
    patched = core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"app": "x"}}, "data": {"k": "v"}})
    assert patched.metadata.resource_version == created.metadata.resource_version
    replaced = core.replace_namespaced_config_map("a", ns, created)
    assert replaced.metadata.resource_version == created.metadata.resource_version


# --- errors ------------------------------------------------------------------------------------


def test_missing_object_is_404_not_found(core, rbac):
    code, body = failure(core.read_namespace, "nope")
    assert code == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'namespaces "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "namespaces"}
    code, body = failure(rbac.read_namespaced_role_binding, "nope", "default")
    assert body["message"] == 'rolebindings.rbac.authorization.k8s.io "nope" not found'
    assert body["details"]["group"] == "rbac.authorization.k8s.io"


def test_creating_an_existing_name_is_409_already_exists(core, rbac, ns):
    core.create_namespace({"metadata": {"name": "dup"}})
    code, body = failure(core.create_namespace, {"metadata": {"name": "dup"}})
    assert (code, body["reason"], body["message"]) == (409, "AlreadyExists", 'namespaces "dup" already exists')
    rbac.create_namespaced_role_binding(ns, role_binding("rb"))
    code, body = failure(rbac.create_namespaced_role_binding, ns, role_binding("rb"))
    assert body["message"] == 'rolebindings.rbac.authorization.k8s.io "rb" already exists'


def test_stale_resource_version_is_409_conflict(core, ns):
    stale = core.create_namespaced_config_map(ns, config_map("a"))
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "1"}})
    stale.data = {"k": "2"}
    code, body = failure(core.replace_namespaced_config_map, "a", ns, stale)
    assert (code, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    stale_patch = {"metadata": {"resourceVersion": stale.metadata.resource_version}, "data": {"k": "3"}}
    assert failure(core.patch_namespaced_config_map, "a", ns, stale_patch)[0] == 409
    # Without a resourceVersion an update is unconditional.
    stale.metadata.resource_version = None
    assert core.replace_namespaced_config_map("a", ns, stale).data == {"k": "2"}


@pytest.mark.parametrize(
    "name",
    ["Upper", "under_score", "-leading", "a" * 64, "dots.are.not.labels"],
)
def test_namespace_names_must_be_dns_labels(core, name):
    code, body = failure(core.create_namespace, {"metadata": {"name": name}})
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith(f'Namespace "{name}" is invalid: ')
    assert f'metadata.name: Invalid value: "{name}": ' in body["message"]
    assert body["details"]["kind"] == "Namespace"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_object_names_follow_their_kinds_rules(core, rbac, ns):
    assert core.create_namespaced_config_map(ns, config_map("dots.are.fine")).metadata.name == "dots.are.fine"
    code, body = failure(core.create_namespaced_config_map, ns, config_map("No_Caps"))
    assert code == 422 and "RFC 1123 subdomain" in body["message"]
    code, body = failure(core.create_namespaced_service_account, ns, {"metadata": {"name": "x" * 254}})
    assert code == 422 and "must be no more than 253 characters" in body["message"]
    # RBAC names are path segments: ':' and capitals are fine, '%' and '..' are not.
    role = {
        "metadata": {"name": "system:Pier-Reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    assert rbac.create_cluster_role(role).metadata.name == "system:Pier-Reader"
    assert rbac.read_cluster_role("system:Pier-Reader").metadata.name == "system:Pier-Reader"
    for bad, message in (("a%b", "may not contain '%'"), ("..", "may not be '..'")):
        code, body = failure(rbac.create_cluster_role, {"metadata": {"name": bad}, "rules": []})
        assert code == 422 and message in body["message"]


def test_labels_must_be_valid_label_values(core, ns):
    code, body = failure(core.create_namespaced_config_map, ns, config_map("a", {"group": "Platform Team"}))
    assert code == 422
    assert 'metadata.labels: Invalid value: "Platform Team": a valid label must be an empty string' in body["message"]
    # Free-form text belongs in annotations.
    annotated = {"metadata": {"name": "a", "annotations": {"pier.dev/group": "Platform Team"}}}
    assert core.create_namespaced_config_map(ns, annotated).metadata.annotations == {"pier.dev/group": "Platform Team"}


def test_creating_in_a_missing_namespace_is_404_for_the_namespace(core, rbac):
    code, body = failure(core.create_namespaced_service_account, "ghost", {"metadata": {"name": "sa"}})
    assert (code, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "ghost" not found')
    assert failure(rbac.create_namespaced_role_binding, "ghost", role_binding("rb"))[0] == 404


def test_resource_version_on_create_is_refused(core, ns):
    code, body = failure(core.create_namespaced_config_map, ns, {"metadata": {"name": "a", "resourceVersion": "7"}})
    assert code == 500
    assert body["message"] == "resourceVersion should not be set on objects to be created"


def test_rolebinding_role_ref_is_required_and_immutable(rbac, ns):
    no_role = {"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "", "name": ""}}
    code, body = failure(rbac.create_namespaced_role_binding, ns, no_role)
    assert (code, body["reason"]) == (422, "Invalid")
    assert {c["field"] for c in body["details"]["causes"]} == {"roleRef.kind", "roleRef.name"}

    created = rbac.create_namespaced_role_binding(ns, role_binding("rb", role="view"))
    created.role_ref.name = "admin"
    code, body = failure(rbac.replace_namespaced_role_binding, "rb", ns, created)
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('RoleBinding.rbac.authorization.k8s.io "rb" is invalid: roleRef: Invalid value')
    assert body["message"].endswith("cannot change roleRef")
    code, body = failure(rbac.patch_namespaced_role_binding, "rb", ns, {"roleRef": {"name": "admin"}})
    assert code == 422 and "cannot change roleRef" in body["message"]
    code, body = failure(rbac.patch_cluster_role_binding, "missing", {"roleRef": {"name": "admin"}})
    assert code == 404


def test_rbac_objects_get_their_api_groups_defaulted(rbac, ns):
    subjects = [{"kind": "Group", "name": "team-a"}, {"kind": "ServiceAccount", "name": "bot", "namespace": ns}]
    binding = {
        "metadata": {"name": "rb"},
        "roleRef": {"kind": "ClusterRole", "name": "edit"},
        "subjects": subjects,
    }
    created = rbac.create_namespaced_role_binding(ns, binding)
    assert created.role_ref.api_group == "rbac.authorization.k8s.io"
    assert [s.api_group for s in created.subjects] == ["rbac.authorization.k8s.io", None]
    code, body = failure(
        rbac.create_cluster_role_binding, {**binding, "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}
    )
    assert code == 422 and "subjects[0].namespace: Required value" in body["message"]


def test_builtin_cluster_roles_exist(rbac):
    names = {r.metadata.name for r in rbac.list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view"} <= names


def test_put_creates_only_where_the_real_server_does(core, rbac, ns):
    role = {"metadata": {"name": "r"}, "rules": []}
    _, status, _ = rbac.replace_namespaced_role_with_http_info("r", ns, role)
    assert status == 201  # RBAC (and LimitRange) allow create-on-update
    assert failure(core.replace_namespaced_config_map, "a", ns, config_map("a"))[0] == 404
    code, body = failure(core.replace_namespaced_config_map, "a", ns, config_map("b"))
    assert code == 400 and "does not match the name on the URL" in body["message"]


# --- defaults that reconcilers read back ------------------------------------------------------


def test_quantities_and_defaults_come_back_canonical(core, net, ns):
    quota = {
        "metadata": {"name": "q"},
        "spec": {"hard": {"requests.cpu": "1000m", "requests.memory": "2048Mi", "pods": "10"}},
    }
    created = core.create_namespaced_resource_quota(ns, quota)
    assert created.spec.hard == {"requests.cpu": "1", "requests.memory": "2Gi", "pods": "10"}
    assert created.status.hard is None  # no quota controller runs

    limits = {
        "metadata": {"name": "l"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "default": {"memory": "0.5Gi"}}]},
    }
    item = core.create_namespaced_limit_range(ns, limits).spec.limits[0]
    assert (item.max, item.default, item.default_request) == (
        {"cpu": "2"},
        {"cpu": "2", "memory": "512Mi"},
        {"cpu": "2", "memory": "512Mi"},
    )

    policy = {"metadata": {"name": "p"}, "spec": {"egress": [{"ports": [{"port": 53}]}]}}
    spec = net.create_namespaced_network_policy(ns, policy).spec
    assert spec.policy_types == ["Ingress", "Egress"]
    assert spec.pod_selector is not None  # always present, {} selecting every pod
    assert spec.egress[0].ports[0].protocol == "TCP"

    code, body = failure(
        core.create_namespaced_resource_quota, ns, {"metadata": {"name": "bad"}, "spec": {"hard": {"cpu": "lots"}}}
    )
    assert (code, body["reason"]) == (400, "BadRequest")


def test_secret_string_data_is_folded_into_data(core, ns):
    created = core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"token": "abc"}})
    assert created.data == {"token": "YWJj"}
    assert created.string_data is None
    assert created.type == "Opaque"


def test_workloads_get_defaults_and_jobs_a_generated_selector(apps, batch, core, ns):
    template = {
        "metadata": {"labels": {"app": "runner"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    }
    deployment = apps.create_namespaced_deployment(
        ns, {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "runner"}}, "template": template}}
    )
    assert (deployment.spec.replicas, deployment.spec.strategy.type, deployment.metadata.generation) == (
        1,
        "RollingUpdate",
        1,
    )
    container = deployment.spec.template.spec.containers[0]
    assert (container.image_pull_policy, container.termination_message_path) == ("IfNotPresent", "/dev/termination-log")

    job_template = {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}
    job = batch.create_namespaced_job(ns, {"metadata": {"name": "run-1"}, "spec": {"template": job_template}})
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "run-1"
    assert (job.spec.backoff_limit, job.spec.completions, job.metadata.labels) == (6, 1, {"app": "runner"})
    code, body = failure(
        batch.patch_namespaced_job,
        "run-1",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "other"}]}}}},
    )
    assert code == 422 and "spec.template: Invalid value" in body["message"] and "field is immutable" in body["message"]

    code, body = failure(
        batch.create_namespaced_job, ns, {"metadata": {"name": "run-2"}, "spec": {"template": template}}
    )
    assert code == 422 and 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in body["message"]
    assert core.list_namespaced_pod(ns, label_selector="job-name=run-2").items == []  # refused: no pods


# --- lists -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("tier in (web,db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("tier=web,env=prod", ["a"]),
        ("tier in (web),!env", []),
    ],
)
def test_label_selectors(core, ns, selector, expected):
    core.create_namespaced_config_map(ns, config_map("a", {"tier": "web", "env": "prod"}))
    core.create_namespaced_config_map(ns, config_map("b", {"tier": "web", "env": "dev"}))
    core.create_namespaced_config_map(ns, config_map("c", {"tier": "db"}))
    core.create_namespaced_config_map(ns, config_map("d"))
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(ns, label_selector=selector).items]
    assert names == expected


def test_bad_label_selector_is_400(core, ns):
    code, body = failure(core.list_namespaced_config_map, ns, label_selector="tier in web")
    assert (code, body["reason"]) == (400, "BadRequest")


def test_field_selectors_and_lists_across_namespaces(core):
    for namespace in ("ns-a", "ns-b"):
        core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_config_map(namespace, config_map("shared"))
        core.create_namespaced_config_map(namespace, config_map(f"only-{namespace}"))
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.name=shared")
    assert [(cm.metadata.namespace, cm.metadata.name) for cm in everywhere.items] == [
        ("ns-a", "shared"),
        ("ns-b", "shared"),
    ]
    assert everywhere.kind == "ConfigMapList"
    not_b = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace!=ns-b,metadata.name!=shared")
    assert [cm.metadata.name for cm in not_b.items] == ["only-ns-a"]
    terminating = core.list_namespace(field_selector="status.phase=Terminating")
    assert terminating.items == []
    code, body = failure(core.list_namespaced_config_map, "ns-a", field_selector="data.k=v")
    assert (code, body["message"]) == (400, "field label not supported: data.k")


def test_limit_and_continue_page_in_namespace_then_name_order(core):
    for namespace in ("p-b", "p-a"):
        core.create_namespace({"metadata": {"name": namespace}})
        for name in ("y", "x", "z"):
            core.create_namespaced_config_map(namespace, config_map(name, {"paged": "yes"}))
    seen, token, pages = [], None, 0
    while True:
        page = core.list_config_map_for_all_namespaces(limit=4, _continue=token, label_selector="paged")
        pages += 1
        seen += [(cm.metadata.namespace, cm.metadata.name) for cm in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count is None  # unknown when filtering
    assert pages == 2
    assert seen == [("p-a", "x"), ("p-a", "y"), ("p-a", "z"), ("p-b", "x"), ("p-b", "y"), ("p-b", "z")]
    first = core.list_namespaced_config_map("p-a", limit=1)
    assert first.metadata.remaining_item_count == 2 and first.metadata._continue
    assert failure(core.list_namespaced_config_map, "p-a", limit=1, _continue="not-a-token")[0] == 400


# --- patches -----------------------------------------------------------------------------------


def test_client_sends_a_dict_patch_as_strategic_merge(core, ns):
    # ServiceAccount `secrets` merge by name under a strategic merge patch and are replaced by a
    # JSON merge patch: the client's default for a dict body is the strategic one.
    core.create_namespaced_service_account(ns, {"metadata": {"name": "sa"}, "secrets": [{"name": "s1"}]})
    merged = core.patch_namespaced_service_account("sa", ns, {"secrets": [{"name": "s2"}]})
    assert [s.name for s in merged.secrets] == ["s1", "s2"]
    replaced = core.patch_namespaced_service_account("sa", ns, {"secrets": [{"name": "s3"}]}, _content_type=MERGE)
    assert [s.name for s in replaced.secrets] == ["s3"]
    relabelled = core.patch_namespaced_service_account("sa", ns, {"metadata": {"labels": {"a": "1"}}})
    assert [s.name for s in relabelled.secrets] == ["s3"]  # untouched fields stay


def test_strategic_merge_merges_keyed_lists_and_replaces_the_rest(apps, core, rbac, net, ns):
    template = {
        "metadata": {"labels": {"app": "w"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "app:1",
                    "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 80}],
                },
                {"name": "sidecar", "image": "proxy:1"},
            ]
        },
    }
    apps.create_namespaced_deployment(
        ns, {"metadata": {"name": "w"}, "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template}}
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "app:2",
                            "env": [{"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080}],
                        },
                        {"name": "sidecar", "$patch": "delete"},
                    ]
                }
            }
        }
    }
    containers = apps.patch_namespaced_deployment("w", ns, patch).spec.template.spec.containers
    assert [c.name for c in containers] == ["main"]
    assert containers[0].image == "app:2"
    assert [e.name for e in containers[0].env] == ["A", "B"]
    assert [p.container_port for p in containers[0].ports] == [80, 8080]

    # Finalizers merge as a set, ownerReferences by uid.
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": str(uuid.uuid4())}
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "f", "finalizers": ["a/x"], "ownerReferences": [owner]}}
    )
    other = {**owner, "name": "p", "uid": str(uuid.uuid4())}
    patched = core.patch_namespaced_config_map(
        "f", ns, {"metadata": {"finalizers": ["b/y", "a/x"], "ownerReferences": [{**owner, "name": "renamed"}, other]}}
    )
    assert patched.metadata.finalizers == ["a/x", "b/y"]
    assert [o.name for o in patched.metadata.owner_references] == ["renamed", "p"]
    core.patch_namespaced_config_map("f", ns, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x", "b/y"]}})

    # Untagged lists are replaced: RoleBinding subjects, Role rules, NetworkPolicy ingress,
    # ServiceAccount imagePullSecrets (but its secrets merge by name).
    rbac.create_namespaced_role_binding(ns, role_binding("rb", subjects=[{"kind": "Group", "name": "a"}]))
    subjects = rbac.patch_namespaced_role_binding("rb", ns, {"subjects": [{"kind": "Group", "name": "b"}]}).subjects
    assert [s.name for s in subjects] == ["b"]
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    rbac.create_namespaced_role(ns, {"metadata": {"name": "r"}, "rules": [rule]})
    rules = rbac.patch_namespaced_role("r", ns, {"rules": [{**rule, "verbs": ["list"]}]}).rules
    assert [r.verbs for r in rules] == [["list"]]
    net.create_namespaced_network_policy(
        ns, {"metadata": {"name": "np"}, "spec": {"ingress": [{"from": [{"podSelector": {}}]}]}}
    )
    ingress = net.patch_namespaced_network_policy(
        "np", ns, {"spec": {"ingress": [{"ports": [{"port": 80}]}]}}
    ).spec.ingress
    assert len(ingress) == 1 and ingress[0]._from is None
    core.create_namespaced_service_account(
        ns, {"metadata": {"name": "sa"}, "secrets": [{"name": "s1"}], "imagePullSecrets": [{"name": "p1"}]}
    )
    sa = core.patch_namespaced_service_account(
        "sa", ns, {"secrets": [{"name": "s2"}], "imagePullSecrets": [{"name": "p2"}]}
    )
    assert [s.name for s in sa.secrets] == ["s1", "s2"]
    assert [s.name for s in sa.image_pull_secrets] == ["p2"]


def test_json_merge_patch_replaces_lists(apps, ns):
    template = {
        "metadata": {"labels": {"app": "w"}},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
    }
    apps.create_namespaced_deployment(
        ns, {"metadata": {"name": "w"}, "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template}}
    )
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "z"}]}}},
        "metadata": {"labels": {"n": "1"}},
    }
    patched = apps.patch_namespaced_deployment("w", ns, patch, _content_type=MERGE)
    assert [c.name for c in patched.spec.template.spec.containers] == ["c"]
    assert patched.metadata.labels == {"n": "1"}


def test_json_patch_operations(core, ns):
    core.create_namespaced_config_map(ns, config_map("a", {"x": "1"}, data={"k": "v", "old": "o"}))
    operations = [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/data/new", "value": "n"},
        {"op": "replace", "path": "/data/k", "value": "v2"},
        {"op": "remove", "path": "/metadata/labels/x"},
        {"op": "move", "from": "/data/old", "path": "/data/moved"},
        {"op": "copy", "from": "/data/new", "path": "/data/copied"},
    ]
    patched = core.patch_namespaced_config_map("a", ns, operations)  # a list body is sent as a JSON patch
    assert patched.data == {"k": "v2", "new": "n", "moved": "o", "copied": "n"}
    assert not patched.metadata.labels
    code, body = failure(core.patch_namespaced_config_map, "a", ns, [{"op": "test", "path": "/data/k", "value": "v"}])
    assert (code, body["reason"]) == (422, "Invalid")
    assert failure(core.patch_namespaced_config_map, "a", ns, [{"op": "remove", "path": "/data/nope"}])[0] == 422


# --- deletion ----------------------------------------------------------------------------------


def test_deleting_a_namespaced_object(core, rbac, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    status = raw(core.delete_namespaced_config_map, "a", ns)
    assert (status["kind"], status["status"], status["details"]["name"]) == ("Status", "Success", "a")
    assert failure(core.read_namespaced_config_map, "a", ns)[0] == 404
    code, body = failure(core.delete_namespaced_config_map, "a", ns)
    assert (code, body["reason"]) == (404, "NotFound")
    rbac.create_namespaced_role_binding(ns, role_binding("rb"))
    assert raw(rbac.delete_namespaced_role_binding, "rb", ns)["details"]["group"] == "rbac.authorization.k8s.io"
    # ServiceAccounts (like Pods and ResourceQuotas) answer with the deleted object.
    core.create_namespaced_service_account(ns, {"metadata": {"name": "bot"}})
    assert raw(core.delete_namespaced_service_account, "bot", ns)["metadata"]["name"] == "bot"


def test_finalizers_hold_an_object_until_removed(core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["pier.dev/cleanup"]}})
    marked = raw(core.delete_namespaced_config_map, "held", ns)
    assert marked["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_config_map("held", ns).metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", ns, [{"op": "remove", "path": "/metadata/finalizers"}])
    assert failure(core.read_namespaced_config_map, "held", ns)[0] == 404


def test_namespace_termination(core, rbac):
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", config_map("cm"))
    rbac.create_namespaced_role_binding("doomed", role_binding("rb"))

    answer = raw(core.delete_namespace, "doomed")  # 200 with the namespace, now terminating
    assert answer["status"] == {"phase": "Terminating"}
    assert RFC3339.match(answer["metadata"]["deletionTimestamp"])
    terminating = core.read_namespace("doomed")
    assert terminating.status.phase == "Terminating"
    code, body = failure(core.create_namespaced_config_map, "doomed", config_map("late"))
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'configmaps "late" is forbidden: '
        "unable to create new content in namespace doomed because it is being terminated"
    )
    code, body = failure(core.delete_namespace, "doomed")  # already going: the real server says Conflict
    assert (code, body["reason"]) == (409, "Conflict")

    wait_until(lambda: status_of(core.read_namespace, "doomed") == 404, timeout=NAMESPACE_DELETION_DELAY + 2)
    assert core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=doomed").items == []
    assert rbac.list_role_binding_for_all_namespaces(field_selector="metadata.namespace=doomed").items == []
    assert core.create_namespace({"metadata": {"name": "doomed"}}).status.phase == "Active"  # the name is free


def test_builtin_namespaces_cannot_be_deleted(core):
    code, body = failure(core.delete_namespace, "kube-system")
    assert (code, body["reason"], body["message"]) == (
        403,
        "Forbidden",
        'namespaces "kube-system" is forbidden: this namespace may not be deleted',
    )


def test_reset_keeps_only_builtins(core, emulator):
    core.create_namespace({"metadata": {"name": "temp"}})
    emulator.reset()
    assert {n.metadata.name for n in core.list_namespace().items} == {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
    }


# --- faults and counters -----------------------------------------------------------------------


def test_fault_500_fails_n_times_then_clears(core, emulator):
    emulator.inject_fault(verb="create", resource="namespaces", status=500, times=2)
    for _ in range(2):
        code, body = failure(core.create_namespace, {"metadata": {"name": "flaky"}})
        assert (code, body["reason"]) == (500, "InternalError")
    assert core.create_namespace({"metadata": {"name": "flaky"}}).metadata.name == "flaky"
    assert emulator.request_count(verb="create", resource="namespaces") == 3
    assert emulator.request_count(verb="get", resource="namespaces") == 0


def test_fault_503_until_cleared_and_filtered_by_namespace(core, emulator, ns):
    core.create_namespace({"metadata": {"name": "other"}})
    emulator.inject_fault(verb="list", resource="configmaps", namespace=ns, status=503)
    for _ in range(3):
        code, body = failure(core.list_namespaced_config_map, ns)
        assert (code, body["reason"]) == (503, "ServiceUnavailable")
    assert core.list_namespaced_config_map("other").items == []  # other namespaces unaffected
    emulator.clear_faults()
    assert core.list_namespaced_config_map(ns).items == []


def test_fault_latency_delays_the_answer(core, emulator):
    core.read_namespace("default")
    emulator.inject_fault(verb="get", resource="namespaces", latency=0.3, times=1)
    started = time.perf_counter()
    core.read_namespace("default")
    assert time.perf_counter() - started >= 0.3
    core.read_namespace("default", _request_timeout=0.25)  # the fault was for one call: not delayed again


def test_fault_drop_closes_the_connection_without_an_answer(core, emulator):
    core.read_namespace("default")
    emulator.inject_fault(verb="create", resource="namespaces", drop=True, times=1)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.create_namespace({"metadata": {"name": "dropped"}})
    # urllib3 retries idempotent requests on a dropped connection (3 times by default), so a
    # GET survives one drop and fails for good only if the connection keeps dropping.
    emulator.inject_fault(verb="get", resource="namespaces", drop=True, times=1)
    assert core.read_namespace("default").metadata.name == "default"
    emulator.inject_fault(verb="get", resource="namespaces", drop=True)
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        core.read_namespace("default")
    assert isinstance(raised.value.reason, urllib3.exceptions.ProtocolError)
    emulator.clear_faults()
    assert core.create_namespace({"metadata": {"name": "dropped"}}).metadata.name == "dropped"


def test_http_control_endpoints(core, emulator):
    assert (
        control(emulator, "POST", "/_emulator/faults", {"verb": "create", "resource": "namespaces", "status": 500})[0]
        == 201
    )
    assert failure(core.create_namespace, {"metadata": {"name": "x"}})[0] == 500
    code, listed = control(emulator, "GET", "/_emulator/faults")
    assert code == 200 and listed["faults"][0]["status"] == 500
    assert control(emulator, "DELETE", "/_emulator/faults")[0] == 200
    core.create_namespace({"metadata": {"name": "x"}})
    code, stats = control(emulator, "GET", "/_emulator/stats")
    assert code == 200
    assert {"verb": "create", "resource": "namespaces", "count": 2} in stats["requests"]
    assert stats["total"] == emulator.request_count()
    code, error = control(emulator, "POST", "/_emulator/faults", {"verb": "put", "status": 500})
    assert code == 400 and "verb must be one of" in error["error"]
    assert control(emulator, "POST", "/_emulator/reset")[0] == 200
    assert failure(core.read_namespace, "x")[0] == 404
    assert emulator.request_count() == 1


# --- refusals of what is not emulated ----------------------------------------------------------


def test_unsupported_features_are_refused_not_ignored(core, ns):
    code, body = failure(core.create_namespaced_config_map, ns, config_map("a"), dry_run="All")
    assert code == 400 and "dryRun is not supported" in body["message"]
    assert failure(core.read_namespaced_config_map, "a", ns)[0] == 404


# --- concurrency, lifecycle, subprocess --------------------------------------------------------


def test_concurrent_writes_are_serialized(api_client, ns):
    core = client.CoreV1Api(api_client)
    versions: list[str] = []
    failures: list[BaseException] = []

    def create(index: int) -> None:
        try:
            versions.append(core.create_namespaced_config_map(ns, config_map(f"c{index}")).metadata.resource_version)
        except BaseException as error:  # collected for the main thread's assertion
            failures.append(error)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(set(versions)) == 16
    assert len(core.list_namespaced_config_map(ns).items) == 16


def test_stop_joins_every_server_thread():
    before = set(threading.enumerate())
    emu = KubeEmulator().start()
    core = client.CoreV1Api(emu.api_client())
    core.list_namespace()  # leaves an idle keep-alive connection, and its handler thread, behind
    core.read_namespace("default")
    emu.stop()
    assert set(threading.enumerate()) - before == set()


def test_subprocess_mode_serves_until_sigterm(tmp_path):
    kubeconfig, ready = tmp_path / "config", tmp_path / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kube_emulator",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--ready-file",
            str(ready),
        ],
        cwd=ROOT / "tests",  # the emulator lives beside the tests, outside Pier's packages
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        wait_until(ready.exists, timeout=10)
        assert ready.read_text().strip() == url
        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "from-outside"}})
        assert core.read_namespace("from-outside").status.phase == "Active"
        api.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# --- service-account tokens: TokenRequest and TokenReview --------------------------------------

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:{ns}", "system:authenticated"]


@pytest.fixture
def auth(api_client):
    return client.AuthenticationV1Api(api_client)


@pytest.fixture
def account(core, ns):
    """A ServiceAccount `deployer` in `ns`."""
    return core.create_namespaced_service_account(ns, {"metadata": {"name": "deployer"}})


def token_request(audiences: list | None = None, expiration_seconds: int | None = None):
    spec = client.V1TokenRequestSpec(audiences=audiences, expiration_seconds=expiration_seconds)
    return client.AuthenticationV1TokenRequest(spec=spec)


def issue(core, ns: str, name: str = "deployer", **spec):
    return core.create_namespaced_service_account_token(name, ns, token_request(**spec))


def review(auth, token: str, audiences: list | None = None):
    spec = client.V1TokenReviewSpec(token=token, audiences=audiences)
    return auth.create_token_review(client.V1TokenReview(spec=spec))


def jwt_parts(token: str) -> tuple[dict, dict]:
    """The header and the claims of a compact JWT (unverified)."""

    def decode(part: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    header, payload, _ = token.split(".")
    return decode(header), decode(payload)


def lifetime(granted) -> float:
    return (granted.status.expiration_timestamp - granted.metadata.creation_timestamp).total_seconds()


def test_token_request_defaults_to_one_hour_and_answers_a_service_account_jwt(core, ns, account):
    response = core.create_namespaced_service_account_token("deployer", ns, token_request(), _preload_content=False)
    assert response.status == 201
    granted = issue(core, ns, audiences=["pier"])
    assert (granted.kind, granted.api_version) == ("TokenRequest", "authentication.k8s.io/v1")
    assert (granted.metadata.name, granted.metadata.namespace) == ("deployer", ns)
    assert granted.spec.expiration_seconds == 3600 and lifetime(granted) == 3600
    assert granted.spec.audiences == ["pier"]

    token = granted.status.token
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    header, claims = jwt_parts(token)
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == API_AUDIENCE
    assert claims["sub"] == f"system:serviceaccount:{ns}:deployer"
    assert claims["aud"] == ["pier"]
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert claims["exp"] == granted.status.expiration_timestamp.timestamp()
    assert claims["kubernetes.io"] == {
        "namespace": ns,
        "serviceaccount": {"name": "deployer", "uid": account.metadata.uid},
    }
    assert UUID4.match(claims["jti"])

    # Every token is a new one; without audiences, a token is for the API server itself.
    again = issue(core, ns)
    assert again.status.token != token and jwt_parts(again.status.token)[1]["jti"] != claims["jti"]
    assert again.spec.audiences == [API_AUDIENCE]
    # The ServiceAccount controller's `default` account can have tokens too.
    assert issue(core, ns, name="default").spec.expiration_seconds == 3600


def test_token_request_honours_the_expiration_asked_for(core, ns, account):
    year = 365 * 24 * 3600
    granted = issue(core, ns, expiration_seconds=year)
    assert granted.spec.expiration_seconds == year and lifetime(granted) == year
    claims = jwt_parts(granted.status.token)[1]
    assert claims["exp"] - claims["iat"] == year
    assert issue(core, ns, expiration_seconds=600).spec.expiration_seconds == 600


def test_token_request_outside_ten_minutes_to_2_32_seconds_is_422_invalid(core, ns, account):
    code, body = failure(issue, core, ns, expiration_seconds=599)
    assert (code, body["reason"], body["message"]) == (
        422,
        "Invalid",
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 599: '
        "may not specify a duration less than 10 minutes",
    )
    assert body["details"]["kind"] == "TokenRequest" and body["details"]["group"] == "authentication.k8s.io"
    assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.expirationSeconds"]
    code, body = failure(issue, core, ns, expiration_seconds=(1 << 32) + 1)
    assert code == 422 and "may not specify a duration larger than 2^32 seconds" in body["message"]
    # The body may name the ServiceAccount, but only the one on the URL.
    mismatched = client.AuthenticationV1TokenRequest(metadata={"name": "other"}, spec=client.V1TokenRequestSpec())
    code, body = failure(core.create_namespaced_service_account_token, "deployer", ns, mismatched)
    assert code == 422 and "metadata.name: Invalid value" in body["message"]


def test_token_request_shortened_by_the_server_reports_the_expiry_granted():
    with KubeEmulator(max_token_expiration_seconds=7200) as capped:
        core = client.CoreV1Api(capped.api_client())
        granted = issue(core, "default", name="default", expiration_seconds=365 * 24 * 3600)
        assert granted.spec.expiration_seconds == 7200 and lifetime(granted) == 7200
        claims = jwt_parts(granted.status.token)[1]
        assert claims["exp"] - claims["iat"] == 7200
        assert issue(core, "default", name="default").spec.expiration_seconds == 3600  # within the cap: as asked
    with pytest.raises(ValueError, match="between 1 hour and 2"):
        KubeEmulator(max_token_expiration_seconds=600)


def test_token_request_needs_the_service_account_and_a_live_namespace(core, ns, account, emulator):
    code, body = failure(issue, core, ns, name="ghost")
    assert (code, body["reason"], body["message"]) == (404, "NotFound", 'serviceaccounts "ghost" not found')
    assert body["details"] == {"name": "ghost", "kind": "serviceaccounts"}
    code, body = failure(issue, core, "nowhere")
    assert (code, body["message"]) == (404, 'namespaces "nowhere" not found')
    # The existence check comes before validation: a bad request for a missing account is a 404.
    assert failure(issue, core, ns, name="ghost", expiration_seconds=60)[0] == 404
    # A finalizer holds the account, and so the namespace stays Terminating: no new tokens in it.
    core.patch_namespaced_service_account("deployer", ns, {"metadata": {"finalizers": ["pier.dev/hold"]}})
    core.delete_namespace(ns)
    emulator.advance_clock(NAMESPACE_DELETION_DELAY)  # the namespace controller's pass is due
    code, body = failure(issue, core, ns)
    assert (code, body["reason"]) == (403, "Forbidden")
    assert "because it is being terminated" in body["message"]


def test_token_review_authenticates_a_fresh_token(core, auth, ns, account):
    granted = issue(core, ns, audiences=["pier"])
    result = review(auth, granted.status.token, ["pier"])
    assert result.status.authenticated is True and result.status.error is None
    user = result.status.user
    assert user.username == f"system:serviceaccount:{ns}:deployer"
    assert user.uid == account.metadata.uid
    assert user.groups == [group.format(ns=ns) for group in SA_GROUPS]
    jti = jwt_parts(granted.status.token)[1]["jti"]
    assert user.extra == {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"]}
    assert result.status.audiences == ["pier"]
    assert (result.kind, result.api_version) == ("TokenReview", "authentication.k8s.io/v1")
    assert result.spec.token == granted.status.token  # the review echoes what it was asked

    # A review without audiences asks for the API server's; a token for it passes, one for "pier" does not.
    assert review(auth, issue(core, ns).status.token).status.audiences == [API_AUDIENCE]
    refused = review(auth, granted.status.token).status
    assert not refused.authenticated
    assert refused.error == (
        f'[invalid bearer token, token audiences ["pier"] is invalid for the target audiences ["{API_AUDIENCE}"]]'
    )


def test_token_review_rejects_an_expired_token(core, auth, ns, account, emulator):
    token = issue(core, ns, expiration_seconds=600).status.token
    emulator.advance_clock(600)
    assert review(auth, token).status.authenticated  # at exp, and for the minute of leeway after
    emulator.advance_clock(61)
    body = raw(auth.create_token_review, client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    # Go omits `authenticated: false` (the client reads None) and keeps an empty `user`.
    assert body["status"] == {"user": {}, "error": "[invalid bearer token, service account token has expired]"}
    # Tokens issued now live from now on.
    assert review(auth, issue(core, ns, expiration_seconds=600).status.token).status.authenticated


def test_token_review_rejects_tampered_forged_and_foreign_tokens(core, auth, ns, account):
    token = issue(core, ns).status.token
    header, payload, signature = token.split(".")
    _, claims = jwt_parts(token)

    def encode(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    longer = encode({**claims, "exp": claims["exp"] + 10 * 365 * 24 * 3600})
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    forged = hmac.new(b"not the emulator's key", f"{header}.{longer}".encode(), hashlib.sha256).digest()
    forged_signature = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    tampered, flipped_bit = f"{header}.{longer}.{signature}", f"{header}.{payload}.{flipped}"
    for bad in (tampered, flipped_bit, f"{header}.{longer}.{forged_signature}"):
        status = review(auth, bad).status
        assert not status.authenticated and status.user.username is None
        assert status.error == "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"

    for garbage in ("not-a-jwt", "a.b.c", token.replace(".", "", 1)):
        assert review(auth, garbage).status.error == "invalid bearer token"

    # A token another cluster issued (another signing key) is not this one's.
    with KubeEmulator() as other:
        foreign = issue(client.CoreV1Api(other.api_client()), "default", name="default").status.token
    status = review(auth, foreign).status
    assert not status.authenticated and "invalid signature" in status.error


def test_a_token_dies_with_its_service_account(core, auth, ns, account, emulator):
    token = issue(core, ns).status.token
    assert review(auth, token).status.authenticated
    core.delete_namespaced_service_account("deployer", ns)
    status = review(auth, token).status
    assert not status.authenticated
    assert status.error == "[invalid bearer token, service account token has been invalidated]"

    # An account held by a finalizer is deleted once its deletionTimestamp is a minute old.
    core.create_namespaced_service_account(ns, {"metadata": {"name": "held", "finalizers": ["pier.dev/hold"]}})
    token = issue(core, ns, name="held").status.token
    core.delete_namespaced_service_account("held", ns)
    assert review(auth, token).status.authenticated
    emulator.advance_clock(61)
    assert review(auth, token).status.error == f"[invalid bearer token, service account {ns}/held has been deleted]"


def test_a_token_dies_with_its_service_account_even_if_one_of_the_same_name_replaces_it(core, auth, ns, account):
    token = issue(core, ns).status.token
    core.delete_namespaced_service_account("deployer", ns)
    replacement = core.create_namespaced_service_account(ns, {"metadata": {"name": "deployer"}})
    status = review(auth, token).status
    assert not status.authenticated
    assert status.error == (
        f"[invalid bearer token, service account UID ({replacement.metadata.uid}) "
        f"does not match claim ({account.metadata.uid})]"
    )
    fresh = review(auth, issue(core, ns).status.token).status
    assert fresh.authenticated and fresh.user.uid == replacement.metadata.uid


def test_token_review_needs_a_token(auth):
    code, body = failure(auth.create_token_review, client.V1TokenReview(spec=client.V1TokenReviewSpec(token="")))
    assert (code, body["reason"], body["message"]) == (
        400,
        "BadRequest",
        "token is required for TokenReview in authentication",
    )


def test_faults_and_counts_name_subresources_as_rbac_does(core, auth, ns, account, emulator):
    emulator.inject_fault(verb="create", resource="serviceaccounts/token", status=503, times=1)
    emulator.inject_fault(verb="create", resource="serviceaccounts", status=500)  # not the token subresource
    code, body = failure(issue, core, ns)
    assert (code, body["reason"]) == (503, "ServiceUnavailable")
    token = issue(core, ns).status.token
    emulator.clear_faults()
    assert emulator.request_count(verb="create", resource="serviceaccounts/token") == 2
    emulator.inject_fault(verb="create", resource="tokenreviews", status=500, times=1)
    assert failure(review, auth, token)[0] == 500
    assert review(auth, token).status.authenticated
    assert emulator.request_count(verb="create", resource="tokenreviews") == 2
    # Over HTTP too, for processes that only know the URL.
    fault = {"verb": "create", "resource": "serviceaccounts/token", "drop": True, "times": 1}
    assert control(emulator, "POST", "/_emulator/faults", fault)[0] == 201
    with pytest.raises(urllib3.exceptions.ProtocolError):
        issue(core, ns)


def test_token_endpoints_in_discovery_and_the_clock_over_http(api_client, auth, core, ns, account, emulator):
    core_resources = {r.name: r for r in client.CoreV1Api(api_client).get_api_resources().resources}
    token = core_resources["serviceaccounts/token"]
    assert (token.kind, token.group, token.version) == ("TokenRequest", "authentication.k8s.io", "v1")
    assert (token.namespaced, token.verbs) == (True, ["create"])
    reviews = {r.name: r for r in auth.get_api_resources().resources}["tokenreviews"]
    assert (reviews.kind, reviews.namespaced, reviews.verbs) == ("TokenReview", False, ["create"])

    granted = issue(core, ns)
    assert control(emulator, "POST", "/_emulator/clock", {"advance_seconds": 3600 + 61})[0] == 200
    assert "has expired" in review(auth, granted.status.token).status.error
    code, error = control(emulator, "POST", "/_emulator/clock", {"advance_seconds": -1})
    assert code == 400 and "only moves forward" in error["error"]
    assert control(emulator, "POST", "/_emulator/reset")[0] == 200  # back to real time
    later = core.create_namespaced_service_account("default", {"metadata": {"name": "after-reset"}})
    assert abs(later.metadata.creation_timestamp.timestamp() - time.time()) < 5


# --- Secret-based (legacy) service-account tokens: the token controller ------------------------


def token_secret(name: str, account_name: str | None, **annotations: str) -> dict:
    if account_name is not None:
        annotations = {"kubernetes.io/service-account.name": account_name, **annotations}
    return {"metadata": {"name": name, "annotations": annotations}, "type": "kubernetes.io/service-account-token"}


def filled(core, ns: str, name: str):
    wait_until(lambda: (core.read_namespaced_secret(name, ns).data or {}).get("token"))
    return core.read_namespaced_secret(name, ns)


def gone(core, ns: str, name: str) -> bool:
    return status_of(core.read_namespaced_secret, name, ns) == 404


def test_a_token_secret_is_filled_for_an_account_of_its_own_namespace_and_authenticates_as_it(
        core, auth, ns, account, emulator):
    core.create_namespaced_secret(ns, token_secret("deployer-token", "deployer"))
    secret = filled(core, ns, "deployer-token")
    assert secret.metadata.annotations == {"kubernetes.io/service-account.name": "deployer",
                                           "kubernetes.io/service-account.uid": account.metadata.uid}
    assert base64.b64decode(secret.data["namespace"]).decode() == ns
    assert "ca.crt" not in secret.data  # plain HTTP: no root CA to hand out
    token = base64.b64decode(secret.data["token"]).decode()
    claims = jwt_parts(token)[1]
    assert claims["iss"] == "kubernetes/serviceaccount" and "exp" not in claims
    assert claims["sub"] == f"system:serviceaccount:{ns}:deployer"
    assert claims["kubernetes.io/serviceaccount/secret.name"] == "deployer-token"
    user = review(auth, token).status.user
    assert user.username == f"system:serviceaccount:{ns}:deployer" and user.uid == account.metadata.uid
    # As a bearer token too: with authorization on, what it may do is up to RBAC (nothing here).
    as_it = client.CoreV1Api(emulator.api_client(token))
    assert status_of(as_it.list_namespaced_config_map, ns) == (403 if emulator.authorization else 200)

    # The token lives as long as its Secret holds it.
    core.delete_namespaced_secret("deployer-token", ns)
    assert review(auth, token).status.error == "[invalid bearer token, token has been invalidated]"
    assert status_of(as_it.list_namespaced_config_map, ns) == (401 if emulator.authorization else 200)


def test_a_token_secret_for_an_account_that_is_not_in_its_namespace_gets_no_token_and_goes(core, ns, account):
    other = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": other}})
    core.create_namespaced_secret(other, token_secret("borrowed", "deployer"))  # deployer is in `ns`, not here
    core.create_namespaced_secret(ns, token_secret("ghost-token", "ghost"))
    core.create_namespaced_secret(ns, token_secret("stale", "deployer", **{"kubernetes.io/service-account.uid": "x"}))
    wait_until(lambda: gone(core, other, "borrowed") and gone(core, ns, "ghost-token") and gone(core, ns, "stale"))

    # An account's token Secrets go with the account.
    core.create_namespaced_secret(ns, token_secret("deployer-token", "deployer"))
    filled(core, ns, "deployer-token")
    core.delete_namespaced_service_account("deployer", ns)
    wait_until(lambda: gone(core, ns, "deployer-token"))


def test_a_token_secret_must_name_its_account(core, ns):
    code, body = failure(core.create_namespaced_secret, ns, token_secret("nameless", None))
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"] == ('Secret "nameless" is invalid: metadata.annotations[kubernetes.io/service-account.name]: '
                               "Required value")
    # Other types need no such annotation.
    assert core.create_namespaced_secret(ns, {"metadata": {"name": "plain"}}).type == "Opaque"
