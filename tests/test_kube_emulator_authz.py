"""Contract tests of the emulator's authentication and RBAC authorization (tests/kube_emulator
authn.py, rbac.py, access.py): who a bearer token is, what RBAC lets them do, the 401 and 403
bodies the real API server sends, the bind/escalate checks on RBAC writes, impersonation, and
the access reviews (SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview).

Observed as a client observes them: through the official client's typed APIs, with a second
ApiClient carrying another bearer token. The emulator here runs with authorization on, except
where a test starts its own to show what "off" means.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from kube_emulator import KubeEmulator
from kube_emulator.emulator import TOKEN as ADMIN_TOKEN
from kubecontract import *
from kubecontract import NAMESPACE_DELETION_DELAY, failure, status_of, wait_until
from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
RBAC_GROUP = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def emulator():
    emu = KubeEmulator(namespace_deletion_delay=NAMESPACE_DELETION_DELAY, authorization=True).start()
    yield emu
    emu.stop()


@pytest.fixture
def clients(emulator):
    """Make official-client APIs for another bearer token: `clients(token).core`, `.rbac`, `.authz`."""
    made = []

    class As:
        def __init__(self, token: str | None):
            self.api = emulator.api_client(token) if token is not None else anonymous_client(emulator)
            made.append(self.api)
            self.core = client.CoreV1Api(self.api)
            self.rbac = client.RbacAuthorizationV1Api(self.api)
            self.authz = client.AuthorizationV1Api(self.api)

    yield As
    for api in made:
        api.close()


def anonymous_client(emulator) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = emulator.url
    return client.ApiClient(configuration)


@pytest.fixture
def authz(api_client):
    return client.AuthorizationV1Api(api_client)


@pytest.fixture
def other_ns(core):
    name = f"o-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def role(name: str, rules: list[dict], **extra) -> dict:
    return {"metadata": {"name": name, **extra.pop("metadata", {})}, "rules": rules, **extra}


def rule(verbs, resources, groups=("",), names=None) -> dict:
    out = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def bind(name: str, kind: str, role_name: str, subjects: list[dict]) -> dict:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role_name},
        "subjects": subjects,
    }


def user(name: str) -> dict:
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": name}


def group(name: str) -> dict:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def sar(authz, who: dict, **attributes):
    """A SubjectAccessReview's status for `who` ({"user": ..., "groups": [...]}) and resource attributes."""
    spec = {**who, "resourceAttributes": attributes}
    return authz.create_subject_access_review({"spec": spec}).status


def can(authz, who: dict, **attributes) -> bool:
    return sar(authz, who, **attributes).allowed


# --- authentication ----------------------------------------------------------------------------


def test_an_unknown_token_is_401_unauthorized(clients):
    code, body = failure(clients("not-a-token").core.list_namespace)
    assert code == 401
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    }  # fmt: skip
    # Even discovery and paths the server does not serve: authentication comes first.
    assert failure(client.CoreApi(clients("not-a-token").api).get_api_versions)[0] == 401


def test_without_a_token_a_request_is_anonymous(clients):
    anonymous = clients(None)
    code, body = failure(anonymous.core.list_namespace)
    assert code == 403
    assert body["message"] == (
        'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" '
        "at the cluster scope"
    )
    assert client.VersionApi(anonymous.api).get_code().major == "1"  # system:public-info-viewer
    code, body = failure(client.CoreApi(anonymous.api).get_api_versions)
    assert (code, body["message"]) == (403, 'forbidden: User "system:anonymous" cannot get path "/api/"')


def test_authorization_off_accepts_any_token_and_allows_everything():
    with KubeEmulator() as open_emulator:
        api = open_emulator.api_client("anything at all")
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "anyone"}})
        assert core.read_namespace("anyone").metadata.name == "anyone"
        api.close()


def test_the_kubeconfig_identity_is_an_admin_in_system_masters(authz, core):
    review = authz.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}}
    )
    assert review.status.allowed is True
    masters = sar(authz, {"user": "kubernetes-admin", "groups": ["system:masters"]}, verb="*", resource="*", group="*")
    assert masters.allowed and not masters.reason  # allowed before RBAC, by the privileged group
    assert not can(authz, {"user": "kubernetes-admin"}, verb="list", resource="secrets")  # the group does it


def test_registered_users_carry_their_groups(emulator, clients, core, rbac, ns):
    token = emulator.add_user("alice", groups=["team-a"])
    alice = clients(token)
    assert status_of(alice.core.list_namespaced_config_map, ns) == 403
    rbac.create_namespaced_role_binding(ns, bind("team-a-view", "ClusterRole", "view", [group("team-a")]))
    assert alice.core.list_namespaced_config_map(ns).items == []
    review = alice.authz.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": ns}}}
    )
    assert review.status.allowed
    assert review.status.reason == (
        f'RBAC: allowed by RoleBinding "team-a-view/{ns}" of ClusterRole "view" to Group "team-a"'
    )


def test_users_over_http_for_other_processes_and_gone_after_reset(emulator, clients):
    code, body = control(emulator, "POST", "/_emulator/users", {"name": "bob", "groups": ["ops"]})
    assert code == 201 and body["name"] == "bob"
    bob = clients(body["token"])
    review = bob.authz.create_self_subject_access_review(
        {"spec": {"nonResourceAttributes": {"verb": "get", "path": "/api"}}}
    )
    assert review.status.allowed  # system:discovery, through system:authenticated
    assert control(emulator, "POST", "/_emulator/users", {"name": "", "groups": []})[0] == 400
    assert control(emulator, "POST", "/_emulator/users", {"name": "x", "groups": "ops"})[0] == 400
    emulator.reset()
    assert failure(bob.core.list_namespace)[0] == 401


def test_service_account_tokens_authenticate_as_the_account(emulator, clients, core, rbac, ns):
    core.create_namespaced_service_account(ns, {"metadata": {"name": "bot"}})
    token = core.create_namespaced_service_account_token(
        "bot", ns, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(expiration_seconds=600))
    ).status.token
    bot = clients(token)
    code, body = failure(bot.core.list_namespaced_secret, ns)
    assert code == 403
    assert f'User "system:serviceaccount:{ns}:bot" cannot list resource "secrets"' in body["message"]
    # A ServiceAccount subject without a namespace is the RoleBinding's own namespace's.
    rbac.create_namespaced_role_binding(ns, bind("bot-edit", "ClusterRole", "edit", [{"kind": "ServiceAccount", "name": "bot"}]))
    bot.core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    review = bot.authz.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "create", "resource": "serviceaccounts", "subresource": "token",
                                         "namespace": ns}}}
    )  # fmt: skip
    assert review.status.allowed
    assert review.status.reason.endswith(f'to ServiceAccount "bot/{ns}"')
    # Once expired (after the minute of leeway), or once the account is gone, the token is a 401.
    emulator.advance_clock(600 + 61)
    assert failure(bot.core.list_namespaced_secret, ns)[0] == 401
    fresh = core.create_namespaced_service_account_token("bot", ns, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec())).status.token  # fmt: skip
    assert clients(fresh).core.list_namespaced_secret(ns).items
    core.delete_namespaced_service_account("bot", ns)
    assert failure(clients(fresh).core.list_namespaced_secret, ns)[0] == 401


# --- authorization: the 403 --------------------------------------------------------------------


def test_forbidden_has_the_api_servers_message_reason_and_details(emulator, clients, ns):
    alice = clients(emulator.add_user("alice"))
    code, body = failure(alice.core.read_namespaced_config_map, "settings", ns)
    assert code == 403
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'configmaps "settings" is forbidden: User "alice" cannot get resource "configmaps" in API group "" '
                   f'in the namespace "{ns}"',
        "reason": "Forbidden", "details": {"name": "settings", "kind": "configmaps"}, "code": 403,
    }  # fmt: skip
    code, body = failure(alice.rbac.list_cluster_role)
    assert body["message"] == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "alice" cannot list resource "clusterroles" '
        'in API group "rbac.authorization.k8s.io" at the cluster scope'
    )
    assert body["details"] == {"group": RBAC_GROUP, "kind": "clusterroles"}
    code, body = failure(alice.core.create_namespaced_service_account_token, "default", ns,
                         client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec()))  # fmt: skip
    assert 'cannot create resource "serviceaccounts/token"' in body["message"]
    assert body["details"] == {"name": "default", "kind": "serviceaccounts"}


def test_a_forbidden_write_changes_nothing(emulator, clients, core, ns):
    alice = clients(emulator.add_user("alice"))
    assert failure(alice.core.create_namespaced_config_map, ns, config_map("sneaky"))[0] == 403
    assert failure(alice.core.delete_namespace, ns)[0] == 403
    assert failure(core.read_namespaced_config_map, "sneaky", ns)[0] == 404
    assert core.read_namespace(ns).status.phase == "Active"


def test_discovery_is_open_to_any_authenticated_user(emulator, clients):
    alice = clients(emulator.add_user("alice"))
    assert client.CoreApi(alice.api).get_api_versions().versions == ["v1"]
    assert "rbac.authorization.k8s.io" in {g.name for g in client.ApisApi(alice.api).get_api_versions().groups}
    assert "pods" in {r.name for r in alice.core.get_api_resources().resources}
    assert client.VersionApi(alice.api).get_code().major == "1"


def test_a_role_binding_grants_its_role_in_its_namespace_only(emulator, clients, rbac, ns, other_ns):
    rbac.create_namespaced_role(ns, role("reader", [rule(["get", "list"], ["configmaps"])]))
    rbac.create_namespaced_role_binding(ns, bind("alice-reads", "Role", "reader", [user("alice")]))
    alice = clients(emulator.add_user("alice"))
    assert alice.core.list_namespaced_config_map(ns).items == []
    assert failure(alice.core.list_namespaced_config_map, other_ns)[0] == 403
    assert failure(alice.core.create_namespaced_config_map, ns, config_map("c"))[0] == 403
    assert failure(alice.core.list_config_map_for_all_namespaces)[0] == 403  # a list across namespaces is cluster-wide
    assert failure(alice.core.list_namespaced_secret, ns)[0] == 403


def test_watch_is_its_own_verb_a_list_grant_does_not_cover(emulator, clients, rbac, ns):
    rbac.create_namespaced_role(ns, role("lister", [rule(["list"], ["configmaps"])]))
    rbac.create_namespaced_role_binding(ns, bind("bob-lists", "Role", "lister", [user("bob")]))
    bob = clients(emulator.add_user("bob"))
    assert bob.core.list_namespaced_config_map(ns).items == []
    status, body = failure(bob.core.list_namespaced_config_map, ns, watch=True, timeout_seconds=1)
    assert status == 403 and 'cannot watch resource "configmaps"' in body["message"]
    rbac.patch_namespaced_role("lister", ns, {"rules": [rule(["list", "watch"], ["configmaps"])]})
    stream = bob.core.list_namespaced_config_map(ns, watch=True, timeout_seconds=1, _preload_content=False)
    assert stream.status == 200
    stream.read()


def test_a_cluster_role_binding_grants_in_every_namespace(emulator, clients, rbac, ns, other_ns):
    rbac.create_cluster_role(role("cm-reader", [rule(["get", "list", "watch"], ["configmaps"])]))
    rbac.create_cluster_role_binding(bind("ops-read-cm", "ClusterRole", "cm-reader", [group("ops")]))
    ops = clients(emulator.add_user("carol", groups=["ops"]))
    assert ops.core.list_namespaced_config_map(other_ns).items == []
    assert ops.core.list_config_map_for_all_namespaces().items == []
    assert failure(ops.core.list_namespaced_secret, ns)[0] == 403


def test_rules_match_verbs_groups_resources_subresources_and_names(authz, rbac, ns):
    rbac.create_namespaced_role(ns, role("mixed", [
        rule(["get"], ["pods/log"]),
        rule(["update", "patch"], ["*/status"], groups=["*"]),
        rule(["*"], ["configmaps"], names=["settings"]),
        rule(["list"], ["deployments"], groups=["apps"]),
    ]))  # fmt: skip
    rbac.create_namespaced_role_binding(ns, bind("dana-mixed", "Role", "mixed", [user("dana")]))
    dana = {"user": "dana"}
    checks = {
        ("get", "", "pods", "log", ""): True,
        ("get", "", "pods", "", ""): False,  # pods/log is not pods
        ("get", "", "pods", "exec", ""): False,
        ("update", "batch", "jobs", "status", "j"): True,  # */status in any group
        ("update", "batch", "jobs", "", "j"): False,
        ("delete", "", "configmaps", "", "settings"): True,  # every verb, on that name
        ("delete", "", "configmaps", "", "other"): False,
        ("list", "", "configmaps", "", ""): False,  # a list has no name: resourceNames do not match it
        ("list", "apps", "deployments", "", ""): True,
        ("list", "", "deployments", "", ""): False,  # the core group is not apps
    }
    for (verb, api_group, resource, subresource, name), allowed in checks.items():
        attributes = {"verb": verb, "group": api_group, "resource": resource, "subresource": subresource,
                      "name": name, "namespace": ns}  # fmt: skip
        assert can(authz, dana, **attributes) is allowed, (verb, api_group, resource, subresource, name)
    assert not can(authz, dana, verb="get", resource="pods", subresource="log", namespace="elsewhere")


def test_a_name_in_a_field_selector_lets_resource_names_match_a_list(emulator, clients, rbac, core, ns):
    rbac.create_namespaced_role(ns, role("one", [rule(["get", "list"], ["configmaps"], names=["settings"])]))
    rbac.create_namespaced_role_binding(ns, bind("erin-one", "Role", "one", [user("erin")]))
    core.create_namespaced_config_map(ns, config_map("settings"))
    erin = clients(emulator.add_user("erin"))
    listed = erin.core.list_namespaced_config_map(ns, field_selector="metadata.name=settings")
    assert [c.metadata.name for c in listed.items] == ["settings"]
    assert failure(erin.core.list_namespaced_config_map, ns)[0] == 403


def test_non_resource_urls_match_exactly_or_by_a_trailing_star(authz, rbac):
    rbac.create_cluster_role(role("urls", [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/logs/*"]}]))
    rbac.create_cluster_role_binding(bind("frank-urls", "ClusterRole", "urls", [user("frank")]))

    def allowed(path: str, verb: str = "get") -> bool:
        spec = {"user": "frank", "nonResourceAttributes": {"path": path, "verb": verb}}
        return authz.create_subject_access_review({"spec": spec}).status.allowed

    assert allowed("/healthz") and allowed("/logs/kube.log") and allowed("/logs/")
    assert not allowed("/healthz/ready") and not allowed("/logs") and not allowed("/healthz", "post")


def test_the_aggregated_admin_edit_view_roles_grant_their_rules(authz, rbac, ns):
    for name in ("admin", "edit", "view"):
        rbac.create_namespaced_role_binding(ns, bind(f"{name}-b", "ClusterRole", name, [user(name)]))

    def allowed(who: str, verb: str, resource: str, group: str = "", subresource: str = "") -> bool:
        return can(authz, {"user": who}, verb=verb, resource=resource, group=group, subresource=subresource,
                   namespace=ns)  # fmt: skip

    assert allowed("view", "list", "pods") and allowed("view", "get", "pods", subresource="log")
    assert not allowed("view", "get", "secrets") and not allowed("view", "create", "configmaps")
    assert allowed("edit", "create", "configmaps") and allowed("edit", "get", "secrets")
    assert allowed("edit", "create", "serviceaccounts", subresource="token")
    assert allowed("edit", "list", "jobs", group="batch")  # edit has view's rules too
    assert not allowed("edit", "create", "rolebindings", group=RBAC_GROUP)
    assert allowed("admin", "create", "rolebindings", group=RBAC_GROUP) and allowed("admin", "delete", "pods")
    assert not allowed("admin", "create", "resourcequotas")  # quota is the platform's, not the project admin's


def test_an_aggregation_rule_gathers_the_rules_of_matching_cluster_roles(authz, rbac):
    selector = {"clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}]}
    rbac.create_cluster_role({"metadata": {"name": "monitoring"}, "aggregationRule": selector, "rules": []})
    rbac.create_cluster_role_binding(bind("gina-monitoring", "ClusterRole", "monitoring", [user("gina")]))
    assert not can(authz, {"user": "gina"}, verb="list", resource="pods")
    labels = {"example.com/aggregate-to-monitoring": "true"}
    rbac.create_cluster_role(role("pod-reader", [rule(["list"], ["pods"])], metadata={"labels": labels}))
    assert can(authz, {"user": "gina"}, verb="list", resource="pods")
    rbac.patch_cluster_role("pod-reader", {"metadata": {"labels": {"example.com/aggregate-to-monitoring": None}}})
    assert not can(authz, {"user": "gina"}, verb="list", resource="pods")


def test_a_binding_to_a_missing_role_grants_nothing_and_says_why(emulator, clients, authz, rbac, ns):
    rbac.create_namespaced_role_binding(ns, bind("to-ghost", "Role", "ghost", [user("hal")]))
    status = sar(authz, {"user": "hal"}, verb="get", resource="pods", namespace=ns)
    assert not status.allowed and status.reason == 'RBAC: role.rbac.authorization.k8s.io "ghost" not found'
    code, body = failure(clients(emulator.add_user("hal")).core.list_namespaced_pod, ns)
    assert code == 403 and body["message"].endswith(': RBAC: role.rbac.authorization.k8s.io "ghost" not found')
    rbac.create_namespaced_role(ns, role("ghost", [rule(["list"], ["pods"])]))
    assert can(authz, {"user": "hal"}, verb="list", resource="pods", namespace=ns)


# --- bind and escalate -------------------------------------------------------------------------


@pytest.fixture
def project_admin(emulator, clients, rbac, ns):
    """`ivy`, admin of `ns` through a RoleBinding to the admin ClusterRole, as Pier grants it."""
    rbac.create_namespaced_role_binding(ns, bind("ivy-admin", "ClusterRole", "admin", [user("ivy")]))
    return clients(emulator.add_user("ivy"))


def test_a_role_may_hold_only_rules_its_writer_holds(project_admin, rbac, ns):
    project_admin.rbac.create_namespaced_role(ns, role("cm-editor", [rule(["get", "update"], ["configmaps"])]))
    code, body = failure(project_admin.rbac.create_namespaced_role, ns, role("quota-editor", [
        rule(["get", "update", "delete"], ["resourcequotas"]), rule(["get"], ["configmaps"]),
    ]))  # fmt: skip
    # admin reads quotas (view's rules are aggregated into it) but may not change them.
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'roles.rbac.authorization.k8s.io "quota-editor" is forbidden: user "ivy" (groups=["system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["resourcequotas"], Verbs:["update" "delete"]}'
    )
    assert body["details"] == {"name": "quota-editor", "group": RBAC_GROUP, "kind": "roles"}
    assert failure(rbac.read_namespaced_role, "quota-editor", ns)[0] == 404
    # Updates and patches are checked on the object they would store.
    widened = role("cm-editor", [rule(["get", "update"], ["configmaps"]), rule(["*"], ["*"], groups=["*"])])
    assert failure(project_admin.rbac.replace_namespaced_role, "cm-editor", ns, widened)[0] == 403
    patch = [{"op": "add", "path": "/rules/-", "value": rule(["delete"], ["namespaces"])}]
    assert failure(project_admin.rbac.patch_namespaced_role, "cm-editor", ns, patch)[0] == 403
    assert rbac.read_namespaced_role("cm-editor", ns).rules[0].verbs == ["get", "update"]
    # A ClusterRole is checked against what the writer holds cluster-wide.
    assert failure(project_admin.rbac.create_cluster_role, role("x", []))[0] == 403  # not even allowed to write


def test_rules_held_on_some_names_cover_only_those_names(emulator, clients, rbac, ns):
    rbac.create_namespaced_role(ns, role("limited", [
        rule(["create"], ["roles"], groups=[RBAC_GROUP]), rule(["get"], ["configmaps"], names=["settings"]),
    ]))  # fmt: skip
    rbac.create_namespaced_role_binding(ns, bind("uma-limited", "Role", "limited", [user("uma")]))
    uma = clients(emulator.add_user("uma"))
    uma.rbac.create_namespaced_role(ns, role("same", [rule(["get"], ["configmaps"], names=["settings"])]))
    code, body = failure(uma.rbac.create_namespaced_role, ns, role("wider", [rule(["get"], ["configmaps"])]))
    assert code == 403 and body["message"].endswith('{APIGroups:[""], Resources:["configmaps"], Verbs:["get"]}')
    code, body = failure(uma.rbac.create_namespaced_role, ns, role("other", [
        rule(["get"], ["configmaps"], names=["settings", "secrets-ish"]),
    ]))  # fmt: skip
    assert body["message"].endswith(
        '{APIGroups:[""], Resources:["configmaps"], ResourceNames:["secrets-ish"], Verbs:["get"]}'
    )


def test_releasing_a_finalizer_on_a_role_needs_no_grant_of_its_rules(emulator, clients, rbac, ns):
    """A controller that may update roles but holds none of their rules can still let one go."""
    finalized = role("held", [rule(["*"], ["secrets"])], metadata={"finalizers": ["example.com/cleanup"]})
    rbac.create_namespaced_role(ns, finalized)
    updater = role("role-updater", [rule(["get", "update", "patch"], ["roles"], groups=[RBAC_GROUP])])
    rbac.create_namespaced_role(ns, updater)
    rbac.create_namespaced_role_binding(ns, bind("gc-updates", "Role", "role-updater", [user("gc")]))
    gc = clients(emulator.add_user("gc"))
    labelled = {"metadata": {"labels": {"touched": "yes"}}}
    assert failure(gc.rbac.patch_namespaced_role, "held", ns, labelled)[0] == 403  # anything else is checked
    rbac.delete_namespaced_role("held", ns)  # held by the finalizer
    assert rbac.read_namespaced_role("held", ns).metadata.deletion_timestamp is not None
    gc.rbac.patch_namespaced_role("held", ns, {"metadata": {"finalizers": None}})
    assert failure(rbac.read_namespaced_role, "held", ns)[0] == 404


def test_escalate_lets_a_user_write_roles_beyond_their_own_rules(project_admin, rbac, ns):
    rbac.create_namespaced_role(ns, role("escalator", [rule(["escalate"], ["roles"], groups=[RBAC_GROUP])]))
    rbac.create_namespaced_role_binding(ns, bind("ivy-escalates", "Role", "escalator", [user("ivy")]))
    project_admin.rbac.create_namespaced_role(ns, role("quota-editor", [rule(["update"], ["resourcequotas"])]))
    assert rbac.read_namespaced_role("quota-editor", ns).rules[0].resources == ["resourcequotas"]


def test_a_binding_may_grant_only_a_role_its_writer_holds_or_may_bind(project_admin, rbac, ns):
    # edit's rules are all admin's: granting edit is no escalation.
    project_admin.rbac.create_namespaced_role_binding(ns, bind("team-edit", "ClusterRole", "edit", [group("team")]))
    code, body = failure(project_admin.rbac.create_namespaced_role_binding, ns,
                         bind("me-root", "ClusterRole", "cluster-admin", [user("ivy")]))  # fmt: skip
    assert code == 403
    assert body["message"].startswith(
        'rolebindings.rbac.authorization.k8s.io "me-root" is forbidden: user "ivy" (groups=["system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
    )
    assert '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}' in body["message"]
    assert failure(rbac.read_namespaced_role_binding, "me-root", ns)[0] == 404
    # A binding to a role that does not exist cannot be checked: 404 for the role.
    code, body = failure(project_admin.rbac.create_namespaced_role_binding, ns, bind("b", "Role", "nope", [user("x")]))
    assert (code, body["message"]) == (404, 'roles.rbac.authorization.k8s.io "nope" not found')
    # Changing who a binding grants its role to is checked too: ivy may not join a cluster-admin binding.
    rbac.create_namespaced_role_binding(ns, bind("ops-root", "ClusterRole", "cluster-admin", [group("ops")]))
    joined = {"subjects": [group("ops"), user("ivy")]}
    assert failure(project_admin.rbac.patch_namespaced_role_binding, "ops-root", ns, joined)[0] == 403
    assert [s.name for s in rbac.read_namespaced_role_binding("ops-root", ns).subjects] == ["ops"]
    project_admin.rbac.patch_namespaced_role_binding("team-edit", ns, {"subjects": [group("team"), user("ivy")]})
    # `bind` on that one role lifts the check, for that role only.
    rbac.create_namespaced_role(ns, role("binder", [
        rule(["bind"], ["clusterroles"], groups=[RBAC_GROUP], names=["cluster-admin"]),
    ]))  # fmt: skip
    rbac.create_namespaced_role_binding(ns, bind("ivy-binds", "Role", "binder", [user("ivy")]))
    project_admin.rbac.create_namespaced_role_binding(ns, bind("me-root", "ClusterRole", "cluster-admin", [user("ivy")]))
    role_ref_to_secrets_admin = bind("other", "ClusterRole", "system:aggregate-to-admin", [user("x")])
    project_admin.rbac.create_namespaced_role_binding(ns, role_ref_to_secrets_admin)  # covered by admin itself


def test_an_aggregation_rule_needs_full_authority(emulator, clients, rbac):
    rbac.create_cluster_role(role("role-writer", [rule(["create", "get"], ["clusterroles"], groups=[RBAC_GROUP])]))
    rbac.create_cluster_role_binding(bind("jo-writes", "ClusterRole", "role-writer", [user("jo")]))
    jo = clients(emulator.add_user("jo"))
    jo.rbac.create_cluster_role(role("nothing", []))
    aggregated = {"metadata": {"name": "gatherer"}, "rules": [],
                  "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}  # fmt: skip
    code, body = failure(jo.rbac.create_cluster_role, aggregated)
    assert (code, body["message"]) == (
        403,
        'clusterroles.rbac.authorization.k8s.io "gatherer" is forbidden: '
        "must have cluster-admin privileges to use the aggregationRule",
    )
    rbac.create_cluster_role(aggregated)  # the admin may


# --- impersonation -----------------------------------------------------------------------------


def test_an_admin_may_impersonate_and_the_request_is_then_the_impersonated_users(emulator, clients, rbac, ns):
    admin = clients(ADMIN_TOKEN)
    admin.api.set_default_header("Impersonate-User", "kim")
    admin.api.set_default_header("Impersonate-Group", "readers")
    code, body = failure(admin.core.list_namespaced_config_map, ns)
    assert code == 403 and 'User "kim" cannot list resource "configmaps"' in body["message"]
    rbac.create_namespaced_role_binding(ns, bind("readers-view", "ClusterRole", "view", [group("readers")]))
    assert admin.core.list_namespaced_config_map(ns).items == []
    review = admin.authz.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": ns}}}
    )
    assert review.status.reason.endswith('to Group "readers"')


def test_impersonation_needs_the_impersonate_verb_on_each_identity(emulator, clients, rbac, ns):
    lee = clients(emulator.add_user("lee"))
    lee.api.set_default_header("Impersonate-User", "kim")
    code, body = failure(lee.core.list_namespaced_config_map, ns)
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'users "kim" is forbidden: User "lee" cannot impersonate resource "users" in API group "" at the cluster scope'
    )
    rbac.create_cluster_role(role("kim-impersonator", [rule(["impersonate"], ["users"], names=["kim"])]))
    rbac.create_cluster_role_binding(bind("lee-kim", "ClusterRole", "kim-impersonator", [user("lee")]))
    rbac.create_namespaced_role_binding(ns, bind("kim-view", "ClusterRole", "view", [user("kim")]))
    assert lee.core.list_namespaced_config_map(ns).items == []  # as kim
    lee.api.set_default_header("Impersonate-Group", "admins")  # a group needs its own grant
    code, body = failure(lee.core.list_namespaced_config_map, ns)
    assert body["message"].startswith('groups "admins" is forbidden: User "lee" cannot impersonate resource "groups"')
    groups_alone = clients(emulator.add_user("lee"))
    groups_alone.api.set_default_header("Impersonate-Group", "admins")
    assert failure(groups_alone.core.list_namespaced_config_map, ns)[0] == 400  # a group without a user
    # A ServiceAccount is impersonated through `serviceaccounts` in its namespace.
    sa = clients(emulator.add_user("lee"))
    sa.api.set_default_header("Impersonate-User", f"system:serviceaccount:{ns}:bot")
    code, body = failure(sa.core.list_namespaced_config_map, ns)
    assert body["message"] == (
        f'serviceaccounts "bot" is forbidden: User "lee" cannot impersonate resource "serviceaccounts" in API group "" '
        f'in the namespace "{ns}"'
    )


# --- access reviews ----------------------------------------------------------------------------


def test_subject_access_review_answers_for_the_subject_in_the_spec(authz, rbac, ns):
    rbac.create_namespaced_role_binding(ns, bind("mo-edit", "ClusterRole", "edit", [user("mo")]))
    response = authz.create_subject_access_review(
        {"spec": {"user": "mo", "resourceAttributes": {"verb": "create", "resource": "secrets", "namespace": ns}}}
    )
    assert (response.kind, response.api_version) == ("SubjectAccessReview", "authorization.k8s.io/v1")
    assert response.status.allowed is True
    assert response.status.reason == f'RBAC: allowed by RoleBinding "mo-edit/{ns}" of ClusterRole "edit" to User "mo"'
    denied = sar(authz, {"user": "mo"}, verb="create", resource="secrets", namespace="default")
    assert denied.allowed is False and not denied.reason and not denied.denied  # RBAC has no opinion, it never denies


def test_access_reviews_are_validated(authz, ns):
    code, body = failure(authz.create_subject_access_review, {"spec": {"user": "mo"}})
    assert code == 422 and "exactly one of nonResourceAttributes or resourceAttributes must be specified" in body["message"]
    code, body = failure(authz.create_subject_access_review, {"spec": {"resourceAttributes": {"verb": "get"}}})
    assert code == 422 and "spec.user: Invalid value" in body["message"]
    assert "at least one of user or group must be specified" in body["message"]
    local = {"spec": {"user": "mo", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}}}
    code, body = failure(authz.create_namespaced_local_subject_access_review, ns, local)
    assert code == 422 and "must match metadata.namespace" in body["message"]


def test_local_subject_access_review_answers_in_its_namespace(authz, rbac, ns):
    rbac.create_namespaced_role_binding(ns, bind("nia-view", "ClusterRole", "view", [user("nia")]))
    spec = {"user": "nia", "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": ns}}
    review = authz.create_namespaced_local_subject_access_review(ns, {"spec": spec})
    assert review.status.allowed and review.metadata.namespace == ns


def test_who_may_ask_which_review(emulator, clients, rbac, ns):
    """Anyone may ask about themselves; asking about others takes a grant (admin has the local one)."""
    olga = clients(emulator.add_user("olga"))
    spec = {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": ns}}
    assert failure(olga.authz.create_subject_access_review, {"spec": spec})[0] == 403
    assert failure(olga.authz.create_namespaced_local_subject_access_review, ns, {"spec": spec})[0] == 403
    rbac.create_namespaced_role_binding(ns, bind("olga-admin", "ClusterRole", "admin", [user("olga")]))
    assert olga.authz.create_namespaced_local_subject_access_review(ns, {"spec": spec}).status.allowed is False


def test_access_reviews_answer_from_rbac_even_with_authorization_off():
    with KubeEmulator() as open_emulator:
        api = open_emulator.api_client()
        rbac, authz = client.RbacAuthorizationV1Api(api), client.AuthorizationV1Api(api)
        assert not can(authz, {"user": "pat"}, verb="get", resource="pods", namespace="default")
        rbac.create_namespaced_role_binding("default", bind("pat", "ClusterRole", "view", [user("pat")]))
        assert can(authz, {"user": "pat"}, verb="get", resource="pods", namespace="default")
        # Impersonation is applied without being checked, so a self-review reads as the impersonated user.
        api.set_default_header("Impersonate-User", "quinn")
        review = authz.create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}}
        )
        assert review.status.allowed is False
        api.close()


def test_access_review_types_are_in_discovery(authz):
    resources = {r.name: r for r in authz.get_api_resources().resources}
    assert {name: (r.namespaced, r.verbs) for name, r in resources.items()} == {
        "subjectaccessreviews": (False, ["create"]),
        "selfsubjectaccessreviews": (False, ["create"]),
        "localsubjectaccessreviews": (True, ["create"]),
    }


def test_the_bootstrap_policy_is_there_and_back_after_reset(emulator, rbac):
    bindings = {b.metadata.name: b for b in rbac.list_cluster_role_binding().items}
    assert [s.name for s in bindings["cluster-admin"].subjects] == ["system:masters"]
    assert [s.name for s in bindings["system:discovery"].subjects] == ["system:authenticated"]
    rbac.delete_cluster_role_binding("system:discovery")
    emulator.reset()
    assert "system:discovery" in {b.metadata.name for b in rbac.list_cluster_role_binding().items}


# --- the standalone process, OpenAPI and kubectl -----------------------------------------------


def run_emulator(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, str, Path]:
    kubeconfig, ready = tmp_path / "config", tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "kube_emulator", "--port", "0", "--kubeconfig", str(kubeconfig),
         "--ready-file", str(ready), *flags],
        cwd=ROOT / "tests", stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = process.stdout.readline().strip()
    wait_until(ready.exists, timeout=10)
    return process, url, kubeconfig


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def token_client(url: str, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    configuration.api_key, configuration.api_key_prefix = {"BearerToken": token}, {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


def test_the_standalone_emulator_authorizes_by_default(tmp_path):
    """`make run` and Pier's integration tests start it without flags: authorization is on."""
    process, url, kubeconfig = run_emulator(tmp_path)
    try:
        admin = config.new_client_from_config(config_file=str(kubeconfig))
        assert client.CoreV1Api(admin).list_namespace().items
        code, body = control_url(url, "/_emulator/users", {"name": "rita"})
        assert code == 201
        assert failure(client.CoreV1Api(token_client(url, body["token"])).list_namespace)[0] == 403
        assert failure(client.CoreV1Api(token_client(url, "stranger")).list_namespace)[0] == 401
        admin.close()
    finally:
        stop(process)
    (tmp_path / "off").mkdir()
    process, url, _ = run_emulator(tmp_path / "off", "--authorization", "off")
    try:
        assert client.CoreV1Api(token_client(url, "stranger")).list_namespace().items
    finally:
        stop(process)


def control_url(url: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get_path(api: client.ApiClient, path: str, accept: str = "application/json"):
    """GET a non-resource path with the client's credentials; the raw urllib3 response."""
    return api.call_api(path, "GET", header_params={"Accept": accept}, auth_settings=["BearerToken"],
                        _preload_content=False)  # fmt: skip


def test_openapi_documents_answer_without_schemas(emulator, clients):
    alice = clients(emulator.add_user("alice"))
    v2 = json.loads(get_path(alice.api, "/openapi/v2").data)
    assert v2["swagger"] == "2.0" and v2["definitions"] == {}
    # Protobuf is not spoken: 406, and kubectl then falls back to the kinds compiled into it.
    assert status_of(get_path, alice.api, "/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf") == 406
    assert json.loads(get_path(alice.api, "/openapi/v3").data) == {"paths": {}}
    assert status_of(get_path, clients("bad").api, "/openapi/v3") == 401
    assert status_of(get_path, clients(None).api, "/openapi/v3") == 403  # discovery is for the authenticated


def test_kubectl_gets_and_applies_through_the_emulators_kubeconfig(emulator, kubeconfig, rbac, core, tmp_path):
    # The development machine's tooling includes kubectl (with Kustomize): not found is a failure.
    assert shutil.which("kubectl"), "kubectl is not on PATH; install it (the emulator's kubectl contract needs it)"
    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    # This kubectl sends no credentials over plain HTTP, so it is anonymous here, and refused ...
    refused = kubectl("get", "ns")
    assert refused.returncode != 0 and "Forbidden" in refused.stderr
    # ... until anonymous is bound to a role (what a local run would do to use kubectl).
    rbac.create_cluster_role_binding(bind("anonymous-admin", "ClusterRole", "cluster-admin", [user("system:anonymous")]))
    listed = kubectl("get", "ns")
    assert listed.returncode == 0, listed.stderr
    assert {"default", "kube-system"} <= {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\n"
                        "data:\n  a: '1'\n")  # fmt: skip
    created = kubectl("apply", "--validate=false", "-f", str(manifest))
    assert created.returncode == 0 and "created" in created.stdout, created.stderr
    manifest.write_text(manifest.read_text().replace("'1'", "'2'"))
    changed = kubectl("apply", "--validate=false", "-f", str(manifest))  # a patch, computed without schemas
    assert changed.returncode == 0 and "configured" in changed.stdout, changed.stderr
    assert core.read_namespaced_config_map("applied", "default").data == {"a": "2"}


def test_a_token_that_is_not_ascii_is_401_not_a_crash(emulator):
    url = emulator.url + "/api/v1/namespaces"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer pïer"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 401
