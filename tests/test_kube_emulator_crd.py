"""Contract tests of the emulator's CustomResourceDefinitions, custom resources and server-side apply.

Pier's agentic sessions are a custom resource (`agenticsessions.pier.dev/v1alpha1`, with a status
subresource) that Pier installs as a CRD and writes with server-side apply, like the built-in
objects it reconciles. Each test pins a behaviour of the real API server (apiextensions-apiserver,
the apiserver's fieldmanager, structured-merge-diff), through the official client as Pier uses
it: ApiextensionsV1Api, CustomObjectsApi and `kubernetes.dynamic.DynamicClient`.
"""

from __future__ import annotations

import copy
import json

import pytest
from kubecontract import *
from kubecontract import MERGE, SMP, failure, raw, wait_until
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

GROUP, VERSION, PLURAL, KIND = "pier.dev", "v1alpha1", "agenticsessions", "AgenticSession"
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

SESSION_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "maxLength": 50},
                "model": {"type": "string", "enum": ["small", "large"], "default": "small"},
                "timeoutSeconds": {"type": "integer", "minimum": 60, "maximum": 86400},
                "env": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {
            "type": "object",
            "properties": {"phase": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}


def session_crd(*, versions: list | None = None, scope: str = "Namespaced") -> dict:
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": copy.deepcopy(SESSION_SCHEMA)},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"plural": PLURAL, "singular": "agenticsession", "kind": KIND, "shortNames": ["as"], "categories": ["pier"]},
            "versions": versions if versions is not None else [version],
        },
    }


def session(name: str = "s1", **spec) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "labels": {"pier.dev/project": "p1"}},
        "spec": {"prompt": "fix the tests", **spec},
    }


@pytest.fixture
def ext(api_client):
    return client.ApiextensionsV1Api(api_client)


@pytest.fixture
def custom(api_client):
    return client.CustomObjectsApi(api_client)


def established(ext, name: str = f"{PLURAL}.{GROUP}") -> bool:
    conditions = ext.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


@pytest.fixture
def crd(ext):
    ext.create_custom_resource_definition(session_crd())
    wait_until(lambda: established(ext))
    return f"{PLURAL}.{GROUP}"


def create_session(custom, ns, body=None, **kwargs):
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body or session(), **kwargs)


def read_session(custom, ns, name="s1"):
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


# --- CustomResourceDefinitions -----------------------------------------------------------------


def test_crd_is_established_shortly_after_creation(ext):
    created = ext.create_custom_resource_definition(session_crd())
    assert created.metadata.uid and created.metadata.generation == 1
    # As on a real server, the controllers set the conditions after the create has answered.
    assert not created.status.conditions
    wait_until(lambda: established(ext))
    status = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions == {"NamesAccepted": ("True", "NoConflicts"), "Established": ("True", "InitialNamesAccepted")}
    assert status.accepted_names.kind == KIND and status.accepted_names.plural == PLURAL
    assert status.accepted_names.list_kind == "AgenticSessionList"
    assert status.stored_versions == [VERSION]


def test_crd_names_scope_and_versions_are_validated(ext):
    bad_name = session_crd()
    bad_name["metadata"]["name"] = "sessions.pier.dev"
    code, body = failure(ext.create_custom_resource_definition, bad_name)
    assert code == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert 'must be spec.names.plural+"."+spec.group' in body["message"]

    bad_scope = session_crd(scope="Tenant")
    code, body = failure(ext.create_custom_resource_definition, bad_scope)
    assert code == 422 and 'spec.scope: Unsupported value: "Tenant"' in body["message"]

    two_storage = session_crd()
    second = copy.deepcopy(two_storage["spec"]["versions"][0]) | {"name": "v1"}
    two_storage["spec"]["versions"].append(second)
    code, body = failure(ext.create_custom_resource_definition, two_storage)
    assert code == 422 and "must have exactly one version marked as storage version" in body["message"]

    no_group = session_crd()
    no_group["spec"]["group"] = "pier"
    no_group["metadata"]["name"] = f"{PLURAL}.pier"
    code, body = failure(ext.create_custom_resource_definition, no_group)
    assert code == 422 and "should be a domain with at least one dot" in body["message"]
    assert ext.list_custom_resource_definition().items == []


def test_crd_scope_is_immutable_and_crd_list_get_update_delete(ext, crd):
    assert [c.metadata.name for c in ext.list_custom_resource_definition().items] == [crd]
    current = ext.read_custom_resource_definition(crd)
    current.spec.scope = "Cluster"
    code, body = failure(ext.replace_custom_resource_definition, crd, current)
    assert code == 422 and "spec.scope: Invalid value" in body["message"] and "field is immutable" in body["message"]
    current = ext.read_custom_resource_definition(crd)
    current.spec.names.short_names = ["as", "sess"]
    replaced = ext.replace_custom_resource_definition(crd, current)
    assert replaced.metadata.generation == 2
    ext.delete_custom_resource_definition(crd)
    assert failure(ext.read_custom_resource_definition, crd)[0] == 404


def test_served_versions_are_routable_and_in_discovery(api_client, crd, ns, tmp_path):
    groups = {g.name: g for g in client.ApisApi(api_client).get_api_versions().groups}
    assert groups[GROUP].preferred_version.group_version == f"{GROUP}/{VERSION}"
    group = raw(client.ApisApi(api_client).api_client.call_api, f"/apis/{GROUP}", "GET", auth_settings=["BearerToken"])
    assert group["kind"] == "APIGroup" and group["name"] == GROUP
    resources = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION).resources
    entries = {r.name: r for r in resources}
    main = entries[PLURAL]
    assert (main.kind, main.namespaced, main.singular_name) == (KIND, True, "agenticsession")
    assert main.short_names == ["as"] and main.categories == ["pier"]
    assert set(main.verbs) == {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
    assert set(entries[f"{PLURAL}/status"].verbs) == {"get", "patch", "update"}

    dyn = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    sessions = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind=KIND)
    sessions.create(body=session(), namespace=ns)
    assert sessions.get(name="s1", namespace=ns).spec.prompt == "fix the tests"


def test_unserved_versions_404_and_deleting_the_crd_deletes_its_resources(ext, custom, ns, api_client, tmp_path):
    body = session_crd()
    old = copy.deepcopy(body["spec"]["versions"][0]) | {"name": "v1alpha0", "served": False, "storage": False}
    body["spec"]["versions"].append(old)
    ext.create_custom_resource_definition(body)
    wait_until(lambda: established(ext))
    create_session(custom, ns)
    code, _ = failure(custom.get_namespaced_custom_object, GROUP, "v1alpha0", ns, PLURAL, "s1")
    assert code == 404
    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert failure(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)[0] == 404
    dyn = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    with pytest.raises(ResourceNotFoundError):
        dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind=KIND)
    # Installed again, the CRD starts with no resources: the old ones went with it.
    ext.create_custom_resource_definition(session_crd())
    wait_until(lambda: established(ext))
    assert custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"] == []


def test_versions_share_storage_and_the_most_stable_is_preferred(api_client, ext, custom, ns):
    body = session_crd()
    newer = copy.deepcopy(body["spec"]["versions"][0]) | {"name": "v1beta1", "storage": False}
    body["spec"]["versions"].append(newer)
    ext.create_custom_resource_definition(body)
    wait_until(lambda: established(ext))
    groups = {g.name: g for g in client.ApisApi(api_client).get_api_versions().groups}
    assert groups[GROUP].preferred_version.version == "v1beta1"
    assert {v.version for v in groups[GROUP].versions} == {"v1alpha1", "v1beta1"}
    create_session(custom, ns)
    through_beta = custom.get_namespaced_custom_object(GROUP, "v1beta1", ns, PLURAL, "s1")
    assert through_beta["apiVersion"] == f"{GROUP}/v1beta1" and through_beta["spec"]["prompt"] == "fix the tests"


def test_pier_can_install_its_crd_with_server_side_apply(ext):
    applied = ext.patch_custom_resource_definition(
        f"{PLURAL}.{GROUP}", session_crd(), field_manager="pier", _content_type=APPLY
    )
    assert applied.spec.names.kind == KIND
    wait_until(lambda: established(ext))
    # Applying the same manifest again (every reconcile) changes nothing.
    again = ext.patch_custom_resource_definition(f"{PLURAL}.{GROUP}", session_crd(), field_manager="pier", _content_type=APPLY)
    assert again.metadata.resource_version == ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").metadata.resource_version
    assert again.metadata.generation == 1


# --- custom resources --------------------------------------------------------------------------


def test_custom_resources_get_metadata_like_other_objects(custom, crd, ns):
    created = create_session(custom, ns)
    metadata = created["metadata"]
    assert metadata["uid"] and metadata["resourceVersion"] and metadata["creationTimestamp"]
    assert metadata["generation"] == 1 and metadata["namespace"] == ns
    assert created["apiVersion"] == f"{GROUP}/{VERSION}" and created["kind"] == KIND
    assert read_session(custom, ns)["metadata"]["uid"] == metadata["uid"]
    code, body = failure(create_session, custom, ns)
    assert code == 409 and body["reason"] == "AlreadyExists"
    assert failure(read_session, custom, ns, "missing")[0] == 404


def test_custom_resources_list_by_label_and_across_namespaces(custom, crd, core):
    for namespace in ("a1", "a2"):
        core.create_namespace({"metadata": {"name": namespace}})
        create_session(custom, namespace)
        other = session("s2")
        other["metadata"]["labels"] = {"pier.dev/project": "p2"}
        create_session(custom, namespace, other)
    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="pier.dev/project=p1")
    assert listed["kind"] == "AgenticSessionList"
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]] == [("a1", "s1"), ("a2", "s1")]
    in_one = custom.list_namespaced_custom_object(GROUP, VERSION, "a2", PLURAL)
    assert [i["metadata"]["name"] for i in in_one["items"]] == ["s1", "s2"]


def test_deleting_a_namespace_deletes_its_custom_resources(custom, crd, core):
    core.create_namespace({"metadata": {"name": "doomed"}})
    create_session(custom, "doomed")
    core.delete_namespace("doomed")
    wait_until(lambda: "doomed" not in [n.metadata.name for n in core.list_namespace().items])
    assert custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"] == []


def test_replace_patch_and_delete_custom_resources(custom, crd, ns):
    created = create_session(custom, ns)
    created["spec"]["prompt"] = "write docs"
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s1", created)
    assert replaced["spec"]["prompt"] == "write docs" and replaced["metadata"]["generation"] == 2
    stale = copy.deepcopy(created)
    code, body = failure(custom.replace_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "s1", stale)
    assert code == 409 and body["reason"] == "Conflict"

    # The client sends a merge patch unless told otherwise (even for a list: a JSON patch needs
    # its content type named).
    merged = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s1", {"spec": {"timeoutSeconds": 600}})
    assert merged["spec"] == {"prompt": "write docs", "model": "small", "timeoutSeconds": 600}
    ops = [{"op": "replace", "path": "/spec/model", "value": "large"}]
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s1", ops, _content_type=JSON_PATCH)
    assert patched["spec"]["model"] == "large" and patched["metadata"]["generation"] == 4

    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s1")
    assert failure(read_session, custom, ns)[0] == 404


def test_faults_and_counts_name_custom_resources_and_their_status(custom, crd, ns, emulator):
    emulator.inject_fault(verb="create", resource=PLURAL, status=503, times=1)
    assert failure(create_session, custom, ns)[0] == 503
    create_session(custom, ns)
    emulator.inject_fault(verb="patch", resource=f"{PLURAL}/status", status=500, times=1)
    status_patch = {"status": {"phase": "Running"}}
    code, _ = failure(custom.patch_namespaced_custom_object_status, GROUP, VERSION, ns, PLURAL, "s1", status_patch)
    assert code == 500
    assert emulator.request_count("create", PLURAL) == 2
    assert emulator.request_count("patch", f"{PLURAL}/status") == 1


def test_strategic_merge_patch_is_415_for_custom_resources(custom, crd, ns):
    create_session(custom, ns)
    code, body = failure(
        custom.patch_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "s1", {"spec": {"model": "large"}},
        _content_type=SMP,
    )  # fmt: skip
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    assert body["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


def test_status_subresource_owns_status(custom, crd, ns):
    created = create_session(custom, ns, session() | {"status": {"phase": "Running"}})
    assert "status" not in created  # dropped on create

    with_status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "s1", {"status": {"phase": "Running"}, "spec": {"prompt": "ignored"}}
    )
    assert with_status["status"] == {"phase": "Running"} and with_status["spec"]["prompt"] == "fix the tests"
    assert with_status["metadata"]["generation"] == 1  # status does not move the generation

    # On the main resource, status changes are ignored.
    main = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s1", {"status": {"phase": "Failed"}})
    assert main["status"] == {"phase": "Running"}
    assert main["metadata"]["resourceVersion"] == with_status["metadata"]["resourceVersion"]  # no write at all

    current = custom.get_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "s1")
    current["status"]["phase"] = "Completed"
    current["metadata"]["labels"] = {"ignored": "yes"}
    replaced = custom.replace_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "s1", current)
    assert replaced["status"]["phase"] == "Completed"
    assert replaced["metadata"]["labels"] == {"pier.dev/project": "p1"}
    code, _ = failure(custom.replace_namespaced_custom_object_status, GROUP, VERSION, ns, PLURAL, "s1", current)
    assert code == 409  # the resourceVersion sent is stale now


def test_without_status_subresource_status_is_spec_like(ext, custom, ns):
    body = session_crd()
    del body["spec"]["versions"][0]["subresources"]
    ext.create_custom_resource_definition(body)
    wait_until(lambda: established(ext))
    created = create_session(custom, ns, session() | {"status": {"phase": "Pending"}})
    assert created["status"] == {"phase": "Pending"}
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s1", {"status": {"phase": "Running"}})
    assert patched["status"]["phase"] == "Running" and patched["metadata"]["generation"] == 2
    assert failure(custom.get_namespaced_custom_object_status, GROUP, VERSION, ns, PLURAL, "s1")[0] == 404


def test_unknown_fields_are_pruned_and_defaults_filled_in(custom, crd, ns):
    body = session(extra={"anything": {"goes": [1, 2]}})
    body["spec"]["unknown"] = "dropped"
    body["topLevel"] = "dropped too"
    created = create_session(custom, ns, body)
    assert created["spec"] == {"prompt": "fix the tests", "model": "small", "extra": {"anything": {"goes": [1, 2]}}}
    assert "topLevel" not in created


def test_strict_field_validation_refuses_unknown_fields(custom, crd, ns):
    body = session(extra={"free": "form"})
    body["spec"]["promt"] = "a typo"
    code, status = failure(custom.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body, field_validation="Strict")
    assert code == 400 and status["message"] == 'strict decoding error: unknown field "spec.promt"'
    code, status = failure(create_session, custom, ns, session(), field_validation="Loose")
    assert code == 422 and 'fieldValidation: Unsupported value: "Loose"' in status["message"]
    assert custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, field_validation="Warn")


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"prompt": 5}, "spec.prompt", 'spec.prompt: Invalid value: spec.prompt in body must be of type string: "integer"'),
        ({"prompt": "x" * 51}, "spec.prompt", "spec.prompt: Too long: must have at most 50 bytes"),
        ({"prompt": "x", "model": "huge"}, "spec.model", 'spec.model: Unsupported value: "huge": supported values: "small", "large"'),
        ({"prompt": "x", "timeoutSeconds": 5}, "spec.timeoutSeconds", "spec.timeoutSeconds: Invalid value: 5: spec.timeoutSeconds in body should be greater than or equal to 60"),
        ({"prompt": "x", "timeoutSeconds": 90000}, "spec.timeoutSeconds", "spec.timeoutSeconds in body should be less than or equal to 86400"),
        ({}, "spec.prompt", "spec.prompt: Required value"),
        ({"prompt": "x", "env": [{"value": "v"}]}, "spec.env[0].name", "spec.env[0].name: Required value"),
    ],
)  # fmt: skip
def test_schema_validation_is_422_with_field_paths(custom, crd, ns, spec, field, message):
    body = session()
    body["spec"] = spec
    code, status = failure(create_session, custom, ns, body)
    assert code == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == KIND and status["details"]["group"] == GROUP
    assert [cause["field"] for cause in status["details"]["causes"]] == [field]
    assert status["message"].startswith(f'{KIND}.{GROUP} "s1" is invalid: ') and message in status["message"]


# --- server-side apply ---------------------------------------------------------------------------


def apply_config_map(core, ns, body, manager="pier", **kwargs):
    return core.patch_namespaced_config_map(
        body["metadata"]["name"], ns, body, field_manager=manager, _content_type=APPLY, **kwargs
    )


def cm(name="settings", **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "pier"}}, "data": data}


def managed(obj) -> dict:
    """manager → (operation, fieldsV1), from the JSON the server sent."""
    return {e["manager"]: (e["operation"], e["fieldsV1"]) for e in obj["metadata"].get("managedFields", [])}


def test_apply_creates_and_records_the_fields_the_manager_owns(core, ns):
    response = core.patch_namespaced_config_map(
        "settings", ns, cm(a="1"), field_manager="pier", _content_type=APPLY, _preload_content=False
    )
    assert response.status == 201
    created = json.loads(response.data)
    assert created["data"] == {"a": "1"} and created["metadata"]["uid"]
    [entry] = created["metadata"]["managedFields"]
    assert entry["manager"] == "pier" and entry["operation"] == "Apply" and entry["apiVersion"] == "v1"
    assert entry["fieldsType"] == "FieldsV1" and entry["time"]
    assert entry["fieldsV1"] == {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}
    again = raw(apply_config_map, core, ns, cm(a="1"))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # nothing changed


def test_apply_needs_a_field_manager(core, ns):
    code, body = failure(core.patch_namespaced_config_map, "settings", ns, cm(a="1"), _content_type=APPLY)
    assert code == 422 and body["reason"] == "Invalid"
    assert body["message"] == 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    code, body = failure(core.patch_namespaced_config_map, "settings", ns, {"data": {}}, force=True)
    assert code == 422 and "force: Forbidden: may not be specified for non-apply patch" in body["message"]


def test_apply_refuses_an_object_read_back_with_its_managed_fields(core, ns):
    current = raw(apply_config_map, core, ns, cm(a="1"))
    code, body = failure(apply_config_map, core, ns, current)
    assert code == 400 and body["message"] == "metadata.managedFields must be nil"


def test_apply_conflicts_with_another_manager_unless_forced(core, ns):
    apply_config_map(core, ns, cm(a="1", b="2"), manager="other")
    code, body = failure(apply_config_map, core, ns, cm(a="changed"))
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "other": .data.a'
    assert body["details"]["causes"] == [
        {"type": "FieldManagerConflict", "message": 'conflict with "other"', "field": ".data.a"}
    ]
    # The same value is no conflict: both own the field.
    shared = raw(apply_config_map, core, ns, cm(a="1"))
    assert set(managed(shared)) == {"other", "pier"}
    forced = raw(apply_config_map, core, ns, cm(a="changed"), force=True)
    assert forced["data"] == {"a": "changed", "b": "2"}
    owners = managed(forced)
    assert owners["pier"][1]["f:data"] == {"f:a": {}}
    assert owners["other"][1]["f:data"] == {"f:b": {}}  # lost .data.a to the forced apply


def test_updates_record_the_user_agent_or_field_manager_and_conflict_with_apply(core, ns):
    core.create_namespaced_config_map(ns, cm(a="1"))
    owners = managed(raw(core.read_namespaced_config_map, "settings", ns))
    assert owners == {"OpenAPI-Generator": ("Update", {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})}
    core.patch_namespaced_config_map("settings", ns, {"data": {"b": "2"}}, field_manager="editor")
    code, body = failure(apply_config_map, core, ns, cm(b="3"))
    assert code == 409
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "editor" using v1: .data.b'
    code, body = failure(apply_config_map, core, ns, cm(a="9", b="3"))
    assert body["message"] == (
        "Apply failed with 2 conflicts: "
        'conflicts with "OpenAPI-Generator" using v1:\n- .data.a\n'
        'conflicts with "editor" using v1:\n- .data.b'
    )


def test_a_hand_edit_takes_the_field_so_a_reconciler_must_force(core, ns):
    apply_config_map(core, ns, cm(a="1"))
    core.patch_namespaced_config_map("settings", ns, {"data": {"a": "by hand"}}, field_manager="kubectl-edit")
    owners = managed(raw(core.read_namespaced_config_map, "settings", ns))
    assert owners["kubectl-edit"] == ("Update", {"f:data": {"f:a": {}}})
    assert "f:data" not in owners["pier"][1]  # pier lost .data.a to the edit
    code, body = failure(apply_config_map, core, ns, cm(a="1"))
    assert code == 409 and 'conflict with "kubectl-edit" using v1: .data.a' in body["message"]
    assert apply_config_map(core, ns, cm(a="1"), force=True).data == {"a": "1"}


def test_apply_removes_fields_the_manager_no_longer_sets(core, ns):
    apply_config_map(core, ns, cm(a="1", b="2"))
    core.patch_namespaced_config_map("settings", ns, {"data": {"c": "3"}}, field_manager="editor")
    after = apply_config_map(core, ns, cm(a="1"))
    assert after.data == {"a": "1", "c": "3"}  # b went; c is someone else's
    # A field another manager owns too stays when the applier drops it.
    apply_config_map(core, ns, cm(a="1", d="4"))
    apply_config_map(core, ns, cm(d="4"), manager="other")
    assert apply_config_map(core, ns, cm(a="1")).data == {"a": "1", "c": "3", "d": "4"}


def test_apply_merges_keyed_lists_by_key(batch, ns):
    def job(*containers):
        return {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "runner"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": list(containers)}}},
        }  # fmt: skip

    runner = {"name": "runner", "image": "runner:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]}
    created = raw(batch.patch_namespaced_job, "runner", ns, job(runner), field_manager="pier", _content_type=APPLY)
    containers = created["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    item = containers['k:{"name":"runner"}']
    assert item["."] == {} and item["f:image"] == {} and item["f:env"]['k:{"name":"A"}'] == {".": {}, "f:name": {}, "f:value": {}}
    assert 'k:{"containerPort":80}' in item["f:ports"]

    sidecar = {"name": "sidecar", "image": "proxy:1"}
    code, body = failure(batch.patch_namespaced_job, "runner", ns, job(runner | {"image": "runner:2"}), field_manager="ops", _content_type=APPLY)
    assert code == 409 and '.spec.template.spec.containers[name="runner"].image' in body["message"]
    # A container of its own merges by name next to the first manager's (the template is immutable
    # on a Job, so the 422 here comes after the merge, from validation).
    code, body = failure(batch.patch_namespaced_job, "runner", ns, job(sidecar), field_manager="ops", _content_type=APPLY)
    assert code == 422 and "spec.template: Invalid value" in body["message"] and "field is immutable" in body["message"]


def test_apply_custom_resources_and_their_status_through_the_dynamic_client(api_client, crd, ns, tmp_path):
    dyn = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    sessions = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind=KIND)
    body = session(env=[{"name": "A", "value": "1"}])
    created = sessions.server_side_apply(body=body, namespace=ns, field_manager="pier")
    assert created.spec.prompt == "fix the tests" and created.metadata.generation == 1
    fields = created.to_dict()["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:spec"]["f:env"] == {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}}

    sessions.status.server_side_apply(
        body={"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "s1"}, "status": {"phase": "Running"}},
        namespace=ns, field_manager="pier-controller",
    )  # fmt: skip
    current = sessions.get(name="s1", namespace=ns)
    assert current.status.phase == "Running" and current.metadata.generation == 1
    entries = {(e["manager"], e.get("subresource", "")) for e in current.to_dict()["metadata"]["managedFields"]}
    assert entries == {("pier", ""), ("pier-controller", "status")}

    changed = sessions.server_side_apply(body=session(env=[{"name": "B", "value": "2"}]), namespace=ns, field_manager="pier")
    assert [e.name for e in changed.spec.env] == ["B"]  # A was the applier's and is no longer sent
    assert changed.metadata.generation == 2 and changed.status.phase == "Running"
    # Defaulted fields belong to no one: setting one is no conflict; changing the prompt is.
    other = sessions.server_side_apply(body=session(model="large"), namespace=ns, field_manager="someone-else")
    assert other.spec.model == "large"
    rewritten = session(model="large")
    rewritten["spec"]["prompt"] = "something else"
    with pytest.raises(ApiException) as conflict:
        sessions.server_side_apply(body=rewritten, namespace=ns, field_manager="someone-else")
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["message"] == 'Apply failed with 1 conflict: conflict with "pier": .spec.prompt'
    forced = sessions.server_side_apply(body=rewritten, namespace=ns, field_manager="someone-else", force_conflicts=True)
    assert forced.spec.prompt == "something else"


def test_apply_body_may_be_yaml(api_client, ns):
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: '1'\n"
    response = api_client.rest_client.pool_manager.request(
        "PATCH",
        f"{api_client.configuration.host}/api/v1/namespaces/{ns}/configmaps/from-yaml?fieldManager=pier",
        body=yaml_body,
        headers={"Content-Type": APPLY, "Authorization": api_client.configuration.api_key["BearerToken"]},
    )
    assert response.status == 201 and json.loads(response.data)["data"] == {"a": "1"}


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("patch_namespaced_secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "stringData": {"k": "v"}}),
        ("patch_namespaced_service_account", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountServiceAccountToken": False}),
        ("patch_namespaced_resource_quota", {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "x"}, "spec": {"hard": {"pods": "10"}}}),
        ("patch_namespaced_limit_range", {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "x"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
    ],
)  # fmt: skip
def test_apply_serves_the_core_kinds_pier_applies(core, ns, method, body):
    created = raw(getattr(core, method), "x", ns, body, field_manager="pier", _content_type=APPLY)
    assert created["metadata"]["managedFields"][0]["operation"] == "Apply"
    again = raw(getattr(core, method), "x", ns, body, field_manager="pier", _content_type=APPLY)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_apply_serves_namespaces_rbac_and_network_policies(core, rbac, net, ns):
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "applied", "labels": {"pier.dev/tenant": "acme"}}}
    assert core.patch_namespace("applied", namespace, field_manager="pier", _content_type=APPLY).metadata.labels["pier.dev/tenant"] == "acme"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    assert rbac.patch_namespaced_role("r", ns, role, field_manager="pier", _content_type=APPLY).rules[0].verbs == ["get"]
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", **role_binding("b")}
    assert rbac.patch_namespaced_role_binding("b", ns, binding, field_manager="pier", _content_type=APPLY).role_ref.name == "edit"
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]},
    }  # fmt: skip
    applied = raw(net.patch_namespaced_network_policy, "deny", ns, policy, field_manager="pier", _content_type=APPLY)
    assert applied["spec"]["policyTypes"] == ["Ingress"]  # defaulted as on any write
    assert "f:ingress" in applied["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]  # an atomic list


def test_a_watcher_of_custom_resources_sees_them_deleted_with_their_crd(ext, custom, crd, ns, core):
    create_session(custom, ns)
    rv = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["metadata"]["resourceVersion"]
    # The answer's headers are in: the watch is open before the CRD goes.
    stream = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, watch=True, resource_version=rv,
                                                  timeout_seconds=2, _preload_content=False)
    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    core.list_namespace()  # the next operation removes the CRD's objects, one removal each
    events = [json.loads(line) for line in stream.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "s1")]


def test_apply_creates_a_custom_resource_whose_schema_keeps_every_field(ext, custom, api_client, ns):
    version = {"name": VERSION, "served": True, "storage": True,
               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    ext.create_custom_resource_definition(session_crd(versions=[version]))
    wait_until(lambda: established(ext))
    response = api_client.rest_client.pool_manager.request(
        "PATCH",
        f"{api_client.configuration.host}/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/loose?fieldManager=pier&force=true",
        body=json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "loose"},
                         "spec": {"anything": {"goes": [1, 2]}}}).encode(),
        headers={"Content-Type": APPLY, "Authorization": api_client.configuration.api_key["BearerToken"]},
    )
    assert response.status == 201, response.data[:300]
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "loose")
    assert stored["spec"] == {"anything": {"goes": [1, 2]}}
