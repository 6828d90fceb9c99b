"""What Pier says people may do in a project is what the cluster says: for every way of holding a
Pier role (organization owner or admin, creator, a grant to a person or a group, nothing), the
cluster's SubjectAccessReview, answered from the RoleBindings Pier wrote (the emulator with
authorization on), agrees. And no identity above edit is within an editor's reach: not an admin
key's, through a pod, a token Secret or a TokenRequest (only a legacy key's, as the README warns)."""

import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django_tenants.utils import tenant_context
from kubernetes import client

import kubehelp
from portal import kube
from portal.services import groups_of, user_set_groups
from tenants import services as tenant_services
from tenants.models import Membership
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access, project_access
from tenants.projects.models import ProjectGrant
from test_keys_namespace import legacy_key

pytestmark = pytest.mark.django_db

# What each project role may do, as the portal documents it (README, "Who sees and does what").
CAN = {
    "view": {("get", "pods"), ("list", "configmaps")},
    "edit": {("get", "pods"), ("list", "configmaps"), ("create", "pods"), ("get", "secrets")},
    "admin": {("get", "pods"), ("list", "configmaps"), ("create", "pods"), ("get", "secrets"),
              ("create", "rolebindings")},
    None: set(),
}
CHECKS = [("get", "pods", ""), ("list", "configmaps", ""), ("create", "pods", ""), ("get", "secrets", ""),
          ("create", "rolebindings", "rbac.authorization.k8s.io")]


def _cluster_allows(user, namespace: str) -> set[tuple[str, str]]:
    api = client.AuthorizationV1Api(kube.api_client())
    allowed = set()
    for verb, resource, group in CHECKS:
        review = api.create_subject_access_review({
            "spec": {"user": reconcile.kube_username(user), "groups": groups_of(user),
                     "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource,
                                            "group": group}}})
        if review.status.allowed:
            allowed.add((verb, resource))
    return allowed


def test_every_pier_role_is_what_the_cluster_allows(alpha, users, django_user_model):
    call_command("install_cluster_objects", stdout=open("/dev/null", "w"))
    alice, bob, dave = users["alice"], users["bob"], users["dave"]  # owner, member, admin of alpha
    viewer = django_user_model.objects.create_user("vera")
    grouped = django_user_model.objects.create_user("gus")
    outsider = django_user_model.objects.create_user("otto")
    for person in (viewer, grouped, outsider):
        Membership.objects.create(tenant=alpha, user=person, role="member")
    user_set_groups(user=grouped, groups=["builders"], acting_user=users["staff"])  # as the identity provider says
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="rbac-check", acting_user=bob)
        admin = Access("admin", "test")
        project_services.grant_add(tenant=alpha, project=project, kind="user", name="vera", role="view",
                                   acting_user=bob, access=admin)
        project_services.grant_add(tenant=alpha, project=project, kind="group", name="builders", role="edit",
                                   acting_user=bob, access=admin)
        reconcile.run(project.pk)
        project.refresh_from_db()
        seen = {}
        for person in (alice, dave, bob, viewer, grouped, outsider):
            role = project_access(project, user=person, tenant_role=alpha.role_of(person),
                                  groups=groups_of(person)).role
            seen[person.username] = (role, _cluster_allows(person, project.namespace))
    assert {name: role for name, (role, _) in seen.items()} == {
        "alice": "admin", "dave": "admin", "bob": "admin", "vera": "view", "gus": "edit", "otto": None}
    for name, (role, allowed) in seen.items():
        assert allowed == CAN[role], f"{name}: Pier says {role}, the cluster allows {sorted(allowed)}"


def test_an_organization_admin_demoted_loses_the_clusters_admin_rights_with_pier(alpha, users,
                                                                                django_capture_on_commit_callbacks):
    call_command("install_cluster_objects", stdout=open("/dev/null", "w"))
    dave = users["dave"]
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="rbac-demote", acting_user=users["alice"])
        reconcile.run(project.pk)
    assert ("create", "rolebindings") in _cluster_allows(dave, project.namespace)
    membership = Membership.objects.get(tenant=alpha, user=dave)
    with django_capture_on_commit_callbacks() as callbacks:
        tenant_services.member_change_role(tenant=alpha, membership=membership, role="member",
                                           acting_user=users["alice"], acting_role="owner")
    assert callbacks  # every project's reconcile is enqueued with the change
    with tenant_context(alpha):
        reconcile.run(project.pk)  # what the enqueued task does
    assert _cluster_allows(dave, project.namespace) == set()


def test_a_deactivated_owner_leaves_the_managers_binding(alpha, users, django_capture_on_commit_callbacks):
    from portal.services import user_set_active

    call_command("install_cluster_objects", stdout=open("/dev/null", "w"))
    dave = users["dave"]  # an admin of alpha
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="rbac-gone", acting_user=users["alice"])
        reconcile.run(project.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        user_set_active(user=dave, active=False, acting_user=users["staff"])
    assert callbacks  # every project of the organizations dave ran is reconciled
    with tenant_context(alpha):
        reconcile.run(project.pk)
    binding = kube.get("RoleBinding", reconcile.MANAGERS_BINDING, project.namespace)
    assert [s["name"] for s in binding["subjects"]] == ["alice"]


# --- No identity above `edit` is usable from what an editor may create --------------------------


def _as(token: str) -> client.CoreV1Api:
    """The cluster as whoever holds `token` (no impersonation: the API server authenticates it)."""
    configuration = client.Configuration()
    configuration.host = kubehelp.emulator_url()
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.CoreV1Api(client.ApiClient(configuration))


def _answer(call, *args) -> tuple[int, str]:
    """(HTTP status, the server's message) of a request."""
    try:
        call(*args)
    except client.ApiException as exc:
        return exc.status, json.loads(exc.body or "{}").get("message", "")
    return 201, ""


def _pod(name: str, account: str) -> dict:
    return {"metadata": {"name": name},
            "spec": {"serviceAccountName": account, "containers": [{"name": "main", "image": "registry.example/x:1"}]}}


def _token_secret(name: str, account: str) -> dict:
    return {"metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": account}},
            "type": "kubernetes.io/service-account-token"}


def _token_request() -> dict:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}


def _secret_token(namespace: str, name: str) -> str | None:
    """What the token controller put in the Secret: its token, or None once it removed the Secret
    (no account of that name in the Secret's namespace). Waits for one or the other."""
    import base64
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        secret = kube.get("Secret", name, namespace)
        if secret is None:
            return None
        if (secret.get("data") or {}).get("token"):
            return base64.b64decode(secret["data"]["token"]).decode()
        time.sleep(0.05)
    raise AssertionError(f"the token controller did nothing with Secret {namespace}/{name}")


def _can_bind_roles(token: str, namespace: str) -> bool:
    """An admin's power in the project: writing RoleBindings (an editor cannot)."""
    api = client.RbacAuthorizationV1Api(_as(token).api_client)
    binding = {"metadata": {"generateName": "probe-"}, "subjects": [{"kind": "Group", "name": "probe"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pier-project-view"}}
    return _answer(api.create_namespaced_role_binding, namespace, binding)[0] == 201


def test_an_editor_cannot_become_an_admin_key_but_could_become_a_legacy_one(alpha, users, django_user_model):
    """With authorization on: a person bound with edit, and an edit key with its own token, try
    the three ways to a ServiceAccount's identity on an admin key's; they work only on a key
    issued before the move (its ServiceAccount in the project's namespace)."""

    keys_ns = settings.PIER_KEYS_NAMESPACE
    eddie = django_user_model.objects.create_user("eddie")
    Membership.objects.create(tenant=alpha, user=eddie, role="member")
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="escalate", acting_user=users["bob"])
        admin = Access("admin", "test")
        project_services.grant_add(tenant=alpha, project=project, kind="user", name="eddie", role="edit",
                                   acting_user=users["bob"], access=admin)
        reconcile.run(project.pk)
        project.refresh_from_db()
        admin_key, admin_token = project_services.key_create(tenant=alpha, project=project, name="deploy",
                                                             role="admin", acting_user=users["bob"], access=admin)
        edit_key, edit_token = project_services.key_create(tenant=alpha, project=project, name="ci",
                                                           role="edit", acting_user=users["bob"], access=admin)
    old_admin, old_admin_token = legacy_key(alpha, "escalate", users["bob"], role="admin", name="old-deploy")
    ns, account = project.namespace, admin_key.service_account
    assert _can_bind_roles(admin_token, ns) and _can_bind_roles(old_admin_token, ns)  # what is at stake
    editors = {"eddie (a person with edit)": kubehelp.add_user(reconcile.kube_username(eddie)),
               "the edit key": edit_token}

    for who, token in editors.items():
        core = _as(token)
        tag = "p" if token == edit_token else "u"
        assert not _can_bind_roles(token, ns), who
        assert _answer(core.create_namespaced_pod, ns, _pod(f"{tag}-own", "default"))[0] == 201, who  # may run pods
        # (a) A pod as the admin key's ServiceAccount: there is none of that name in the project.
        assert _answer(core.create_namespaced_pod, ns, _pod(f"{tag}-as-key", account)) == (403, (
            f'pods "{tag}-as-key" is forbidden: error looking up service account {ns}/{account}: '
            f'serviceaccount "{account}" not found')), who
        assert _answer(core.create_namespaced_pod, keys_ns, _pod(f"{tag}-there", account))[0] == 403, who
        # One of the same name the editor makes in the project is another identity, bound to nothing.
        assert _answer(core.create_namespaced_service_account, ns, {"metadata": {"name": f"{account}-{tag}"}})[0] == 201
        # (b) A token Secret for it: the token controller fills none (and removes the Secret).
        assert _answer(core.create_namespaced_secret, ns, _token_secret(f"{tag}-steal", account))[0] == 201, who
        assert _secret_token(ns, f"{tag}-steal") is None, who
        assert _answer(core.create_namespaced_secret, keys_ns, _token_secret(f"{tag}-there", account))[0] == 403, who
        # (c) A TokenRequest for it, where it lives and in the project.
        status, message = _answer(core.create_namespaced_service_account_token, account, keys_ns, _token_request())
        assert status == 403 and "serviceaccounts/token" in message, who
        assert _answer(core.create_namespaced_service_account_token, account, ns, _token_request())[0] == 403, who

        # A legacy admin key (its ServiceAccount in the project) is what the README warns about:
        # a pod runs as it, and a token Secret for it hands the editor an admin's token.
        legacy = old_admin.service_account
        assert _answer(core.create_namespaced_pod, ns, _pod(f"{tag}-as-legacy", legacy))[0] == 201, who
        assert kube.get("Pod", f"{tag}-as-legacy", ns)["spec"]["serviceAccountName"] == legacy
        assert _answer(core.create_namespaced_secret, ns, _token_secret(f"{tag}-legacy", legacy))[0] == 201, who
        stolen = _secret_token(ns, f"{tag}-legacy")
        assert stolen is not None and _can_bind_roles(stolen, ns), who
        # Even then, TokenRequest stays closed to an editor.
        assert _answer(core.create_namespaced_service_account_token, legacy, ns, _token_request())[0] == 403, who

    # Nor does edit hold another way to someone else's identity or rights.
    authz = client.AuthorizationV1Api(kube.api_client())
    for verb, resource, subresource, group in (("create", "serviceaccounts", "token", ""),
                                               ("impersonate", "serviceaccounts", "", ""),
                                               ("impersonate", "users", "", ""),
                                               ("bind", "clusterroles", "", "rbac.authorization.k8s.io"),
                                               ("escalate", "roles", "", "rbac.authorization.k8s.io")):
        review = authz.create_subject_access_review({"spec": {
            "user": reconcile.kube_username(eddie), "groups": [], "resourceAttributes": {
                "namespace": ns, "verb": verb, "resource": resource, "subresource": subresource, "group": group}}})
        assert not review.status.allowed, (verb, resource, subresource)

    # The runner's ServiceAccount, which any pod of the project may run as, holds nothing.
    runner = f"system:serviceaccount:{ns}:{reconcile.RUNNER_ACCOUNT}"
    assert _cluster_allows_identity(runner, ["system:serviceaccounts", f"system:serviceaccounts:{ns}"], ns) == set()


def _cluster_allows_identity(username: str, groups: list[str], namespace: str) -> set[tuple[str, str]]:
    api = client.AuthorizationV1Api(kube.api_client())
    allowed = set()
    for verb, resource, group in CHECKS:
        review = api.create_subject_access_review({"spec": {"user": username, "groups": groups, "resourceAttributes": {
            "namespace": namespace, "verb": verb, "resource": resource, "group": group}}})
        if review.status.allowed:
            allowed.add((verb, resource))
    return allowed


@pytest.mark.parametrize("group", ["system:serviceaccounts", "system:serviceaccounts:alpha-sa-grant",
                                   "system:serviceaccount:alpha-sa-grant:pier-runner"])
def test_no_grant_reaches_the_project_s_service_accounts(api, alpha, users, group):
    """A pod an editor runs is `system:serviceaccount:<ns>:<name>`, in `system:serviceaccounts` and
    `system:serviceaccounts:<ns>`: a grant to those would hand every editor its role."""
    with tenant_context(alpha):
        project_services.project_create(tenant=alpha, slug="sa-grant", acting_user=users["bob"])
    response = api(users["bob"]).post("/api/v1/tenants/alpha/projects/sa-grant/grants",
                                      {"kind": "group", "name": group, "role": "admin"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["details"]
    assert "access key" in response.json()["error"]["message"]
    assert api(users["bob"]).post("/api/v1/tenants/alpha/projects/sa-grant/grants",
                                  {"kind": "group", "name": "system:authenticated", "role": "view"},
                                  format="json").status_code == 201  # people's groups stay grantable


def test_everyone_signed_in_gets_at_most_edit_since_every_pod_is_signed_in_too(api, alpha, users):
    """Every ServiceAccount token is in `system:authenticated`: admin for that group would make
    every pod an editor runs an admin. Anonymous requests get nothing."""
    with tenant_context(alpha):
        project_services.project_create(tenant=alpha, slug="everyone", acting_user=users["bob"])
    grants = "/api/v1/tenants/alpha/projects/everyone/grants"
    refused = api(users["bob"]).post(grants, {"kind": "group", "name": "system:authenticated", "role": "admin"},
                                     format="json")
    assert refused.status_code == 400 and "role" in refused.json()["error"]["details"]
    anonymous = api(users["bob"]).post(grants, {"kind": "group", "name": "system:unauthenticated", "role": "view"},
                                       format="json")
    assert anonymous.status_code == 400 and "name" in anonymous.json()["error"]["details"]
    made = api(users["bob"]).post(grants, {"kind": "group", "name": "system:authenticated", "role": "edit"},
                                  format="json")
    assert made.status_code == 201
    raised = api(users["bob"]).patch(f"{grants}/{made.json()['id']}", {"role": "admin"}, format="json")
    assert raised.status_code == 400 and "role" in raised.json()["error"]["details"]
    with tenant_context(alpha):
        assert ProjectGrant.objects.get(subject="system:authenticated").role == "edit"  # nothing lost
