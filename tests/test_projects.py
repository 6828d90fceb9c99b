"""Projects: the API and pages, validation, quotas, the effective configuration, and the
reconciler run in this process against the Kubernetes API emulator (over HTTP, with the official
client). The worker-driven paths (faults, a killed worker) are in test_projects_worker.py."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

import kubehelp
from conftest import provision_now
from portal import kube
from tenants.models import NamespaceRegistry
from tenants.projects import reconcile
from tenants.projects.models import Project

PIER = "app.kubernetes.io/managed-by=pier"

pytestmark = pytest.mark.django_db

OBJECTS = [("ResourceQuota", "pier-quota"), ("LimitRange", "pier-limits"), ("NetworkPolicy", "pier-isolation"),
           ("NetworkPolicy", "pier-runner-egress"),
           ("RoleBinding", "pier-creator-admin"), ("RoleBinding", "pier-organization-admins"),
           ("ServiceAccount", "pier-runner")]


@pytest.fixture(autouse=True)
def _no_faults_left():
    yield
    kubehelp.clear_faults()


@pytest.fixture
def reconcile_now():
    def run(tenant, slug: str) -> dict:
        with tenant_context(tenant):
            project = Project.objects.get(slug=slug)
            try:
                return reconcile.run(project.pk)
            except reconcile.StillTerminating:
                return {"namespace": "terminating"}

    return run


def _create(api, user, tenant_slug: str, slug: str, **extra):
    return api(user).post(f"/api/v1/tenants/{tenant_slug}/projects", {"slug": slug, **extra}, format="json")


def test_create_answers_202_and_the_reconciler_builds_every_object(api, users, alpha, reconcile_now, unique_slug,
                                                                     django_capture_on_commit_callbacks):
    slug = unique_slug("web")
    with django_capture_on_commit_callbacks() as callbacks:
        response = _create(api, users["bob"], "alpha", slug, display_name="Web shop")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["namespace"] == f"alpha-{slug}" and body["status"] == "pending"
    assert body["created_by"] == "bob"
    assert callbacks, "the reconcile is enqueued after the commit"
    assert kube.get("Namespace", f"alpha-{slug}") is None, "no cluster call in the web request"

    outcomes = reconcile_now(alpha, slug)
    assert list(outcomes.values()) == ["created"] * 8
    ns = kube.get("Namespace", f"alpha-{slug}")
    assert ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pier"
    assert ns["metadata"]["labels"]["pier.dev/tenant"] == "alpha"
    assert ns["metadata"]["labels"]["pier.dev/project"] == slug
    assert ns["metadata"]["annotations"]["openshift.io/display-name"] == "Web shop"
    for kind, name in OBJECTS:
        assert kube.get(kind, name, f"alpha-{slug}") is not None, kind
    binding = kube.get("RoleBinding", "pier-creator-admin", f"alpha-{slug}")
    assert binding["roleRef"]["name"] == "pier-project-admin"
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]
    quota = kube.get("ResourceQuota", "pier-quota", f"alpha-{slug}")
    assert quota["spec"]["hard"]["requests.cpu"] == "4" and quota["spec"]["hard"]["pods"] == "50"
    policy = kube.get("NetworkPolicy", "pier-isolation", f"alpha-{slug}")
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-ingress"}}} in policy["spec"]["ingress"][0]["from"]

    detail = api(users["bob"]).get(f"/api/v1/tenants/alpha/projects/{slug}").json()
    assert detail["status"] == "ready"
    assert [e["status"] for e in detail["events"]][:3] == ["ready", "provisioning", "pending"]


def test_a_pass_with_nothing_to_change_writes_nothing(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("calm")
    _create(api, users["bob"], "alpha", slug)
    reconcile_now(alpha, slug)
    before = kubehelp.requests_by_verb()
    with CaptureQueriesContext(connection) as queries:
        outcomes = reconcile_now(alpha, slug)
    after = kubehelp.requests_by_verb()
    assert set(outcomes.values()) == {"unchanged"}
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    written = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in ("create", "update", "patch", "delete")}
    assert written == {"create": 0, "update": 0, "patch": 0, "delete": 0}


def test_drift_is_repaired_and_foreign_objects_left_alone(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("drift")
    ns = f"alpha-{slug}"
    _create(api, users["bob"], "alpha", slug)
    reconcile_now(alpha, slug)
    kube.delete("RoleBinding", "pier-creator-admin", ns)  # someone deleted it by hand
    quota = kube.get("ResourceQuota", "pier-quota", ns)
    quota["spec"]["hard"]["pods"] = "5000"  # someone raised the quota by hand
    from kubernetes import client as k8s

    k8s.CoreV1Api(kube.api_client()).replace_namespaced_resource_quota("pier-quota", ns, quota)
    foreign = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "their-bot", "namespace": ns}}
    kube.create(foreign)

    outcomes = reconcile_now(alpha, slug)
    assert outcomes["RoleBinding/pier-creator-admin"] == "created"
    assert outcomes["ResourceQuota/pier-quota"] == "patched"
    assert kube.get("ResourceQuota", "pier-quota", ns)["spec"]["hard"]["pods"] == "50"
    assert kube.get("ServiceAccount", "their-bot", ns) is not None
    with tenant_context(alpha):
        events = list(Project.objects.get(slug=slug).events.values_list("message", flat=True))
    assert any("repaired drift" in e and "RoleBinding/pier-creator-admin created" in e for e in events)


def test_an_object_pier_did_not_create_is_never_overwritten(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("clash")
    ns = f"alpha-{slug}"
    _create(api, users["bob"], "alpha", slug)
    reconcile_now(alpha, slug)
    kube.delete("ServiceAccount", "pier-runner", ns)
    kube.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pier-runner", "namespace": ns,
                                                                          "labels": {"owner": "someone"}}})
    with pytest.raises(kube.NotManaged):
        reconcile_now(alpha, slug)
    assert kube.get("ServiceAccount", "pier-runner", ns)["metadata"]["labels"] == {"owner": "someone"}


def test_effective_config_shows_values_and_sources_and_reaches_the_cluster(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("cfg")
    _create(api, users["bob"], "alpha", slug, config_overrides={"quota.pods": "7"})
    reconcile_now(alpha, slug)
    client = api(users["alice"])  # tenant owner sets the tenant level
    response = client.patch("/api/v1/tenants/alpha/project-defaults",
                            {"project_defaults": {"quota.requests.memory": "2Gi"}}, format="json")
    assert response.status_code == 200
    config = client.get(f"/api/v1/tenants/alpha/projects/{slug}").json()["config"]
    pick = lambda entry: {k: entry[k] for k in ("value", "source")}  # noqa: E731
    assert pick(config["quota.pods"]) == {"value": "7", "source": "project"}
    assert pick(config["quota.requests.memory"]) == {"value": "2Gi", "source": "tenant"}
    assert pick(config["quota.requests.cpu"]) == {"value": "4", "source": "platform"}
    assert config["quota.pods"]["ceiling"] == {"value": "1000", "level": "platform", "scope": "platform"}
    assert config["quota.pods"]["locked"] is None and config["quota.pods"]["clamped_from"] is None

    response = api(users["bob"]).patch(f"/api/v1/tenants/alpha/projects/{slug}",
                                       {"config_overrides": {"quota.pods": "9", "limits.default.cpu": "250m"}}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "provisioning"
    reconcile_now(alpha, slug)
    hard = kube.get("ResourceQuota", "pier-quota", f"alpha-{slug}")["spec"]["hard"]
    assert hard["pods"] == "9" and hard["requests.memory"] == "2Gi"
    limits = kube.get("LimitRange", "pier-limits", f"alpha-{slug}")["spec"]["limits"][0]
    assert limits["default"]["cpu"] == "250m"
    assert api(users["bob"]).get(f"/api/v1/tenants/alpha/projects/{slug}").json()["status"] == "ready"


@pytest.mark.parametrize("overrides, field, fragment", [
    ({"quota.cpu": "2"}, "config_overrides.quota.cpu", "unknown setting"),
    ({"quota.pods": "lots"}, "config_overrides.quota.pods", "not a Kubernetes quantity"),
    ({"quota.requests.cpu": "-1"}, "config_overrides.quota.requests.cpu", "must not be negative"),
    ({"network.allow_from": "openshift-ingress"}, "config_overrides.network.allow_from", "list of namespace names"),
    ({"network.allow_from": ["Bad_Name"]}, "config_overrides.network.allow_from", "list of namespace names"),
])
def test_bad_overrides_name_the_field(api, users, overrides, field, fragment, unique_slug):
    response = _create(api, users["bob"], "alpha", unique_slug("bad"), config_overrides=overrides)
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["details"] and fragment in error["message"]


@pytest.mark.parametrize("slug, fragment", [
    ("Web", "lowercase letters"), ("-web", "starting with a letter"), ("web-", "not ending with a hyphen"),
    ("a" * 60, "Kubernetes allows 63"), ("", "This field may not be blank."),
])
def test_bad_slugs_are_refused_with_the_reason(api, users, slug, fragment):
    response = _create(api, users["bob"], "alpha", slug)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]
    assert "slug" in response.json()["error"]["details"]


def test_duplicate_project_is_409(api, users, unique_slug):
    slug = unique_slug("dup")
    assert _create(api, users["bob"], "alpha", slug).status_code == 202
    response = _create(api, users["alice"], "alpha", slug)
    assert response.status_code == 409 and response.json()["error"]["code"] == "project_exists"


def test_namespace_names_do_not_collide_across_tenants(api, users):
    # "ab-cd" + "ef" and "ab" + "cd-ef" would both be the namespace ab-cd-ef.
    first = provision_now("ab-cd", "alice", acting_user=users["staff"])
    second = provision_now("ab", "alice", acting_user=users["staff"])
    assert _create(api, users["alice"], first.slug, "ef").status_code == 202
    response = _create(api, users["alice"], second.slug, "cd-ef")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "namespace_taken"
    assert "ab-cd-ef" in response.json()["error"]["message"]
    assert NamespaceRegistry.objects.filter(name="ab-cd-ef").count() == 1


def test_the_project_quota_answers_409_naming_the_limit(api, users, alpha, unique_slug):
    alpha.max_projects = 1
    alpha.save()
    assert _create(api, users["bob"], "alpha", unique_slug("one")).status_code == 202
    response = _create(api, users["bob"], "alpha", unique_slug("two"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert "limit of 1 projects" in response.json()["error"]["message"]


def test_projects_are_seen_and_changed_according_to_the_project_role(api, users, unique_slug):
    from portal.services import user_set_groups

    slug = unique_slug("own")
    _create(api, users["dave"], "alpha", slug)  # dave is an alpha admin; he created it
    path = f"/api/v1/tenants/alpha/projects/{slug}"
    bob = api(users["bob"])  # a plain member, not in any group with access
    assert bob.get(path).status_code == 404
    assert slug not in [p["slug"] for p in bob.get("/api/v1/tenants/alpha/projects").json()["results"]]
    assert bob.patch(path, {"description": "mine now"}, format="json").status_code == 404

    user_set_groups(user=users["bob"], groups=["qa"], acting_user=users["staff"])
    dave = api(users["dave"])
    assert dave.post(f"{path}/grants", {"kind": "group", "name": "qa", "role": "view"}, format="json").status_code == 201
    assert bob.get(path).status_code == 200
    assert bob.get(f"{path}/access").json() == {"role": "view", "source": "group qa", "actions": ["read"]}
    response = bob.patch(path, {"description": "x"}, format="json")
    assert response.status_code == 403 and "needs the edit role" in response.json()["error"]["message"]
    assert bob.delete(path).status_code == 403

    grant = dave.get(f"{path}/grants").json()[0]
    assert dave.patch(f"{path}/grants/{grant['id']}", {"role": "edit"}, format="json").status_code == 200
    assert bob.patch(path, {"description": "better words"}, format="json").status_code == 200
    response = bob.patch(path, {"config_overrides": {"quota.pods": "99"}}, format="json")
    assert response.status_code == 403 and "needs the admin role" in response.json()["error"]["message"]
    assert api(users["alice"]).get(f"{path}/access").json()["source"] == "organization owner"
    assert dave.get(f"{path}/access").json()["role"] == "admin"


def test_sharing_with_groups_as_identity_providers_name_them(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("share")
    ns = f"alpha-{slug}"
    _create(api, users["bob"], "alpha", slug)
    client = api(users["bob"])
    path = f"/api/v1/tenants/alpha/projects/{slug}/grants"
    names = ["system:authenticated", "/acme/platform team", "Developers"]
    for group in names:
        assert client.post(path, {"kind": "group", "name": group, "role": "view"}, format="json").status_code == 201
    duplicate = client.post(path, {"kind": "group", "name": "Developers", "role": "view"}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "already_granted"
    bad = client.post(path, {"kind": "group", "name": "", "role": "view"}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()["error"]["details"]
    assert client.post(path, {"kind": "group", "name": "ops", "role": "owner"}, format="json").status_code == 400

    reconcile_now(alpha, slug)
    bindings = kube.list_objects("RoleBinding", ns, label_selector="pier.dev/group-access=true")
    subjects = sorted(b["subjects"][0]["name"] for b in bindings)
    assert subjects == sorted(names)
    assert all(b["roleRef"]["name"] == "pier-project-view" and b["subjects"][0]["kind"] == "Group" for b in bindings)
    assert all(b["metadata"]["annotations"]["pier.dev/group"] == b["subjects"][0]["name"] for b in bindings)

    grants = client.get(path).json()
    grant_id = next(g["id"] for g in grants if g["name"] == "system:authenticated")
    assert client.delete(f"{path}/{grant_id}").status_code == 204
    reconcile_now(alpha, slug)
    subjects = sorted(b["subjects"][0]["name"] for b in kube.list_objects("RoleBinding", ns, label_selector="pier.dev/group-access=true"))
    assert subjects == sorted(["/acme/platform team", "Developers"])
    assert kube.get("RoleBinding", "pier-creator-admin", ns) is not None  # the creator's binding stays


def test_sharing_page(client, users, alpha, unique_slug):
    client.force_login(users["bob"])
    slug = unique_slug("shpage")
    client.post("/t/alpha/projects", {"slug": slug})
    response = client.post(f"/t/alpha/projects/{slug}/sharing", {"kind": "group", "name": "system:authenticated", "role": "view"}, follow=True)
    page = response.content.decode()
    assert "Group system:authenticated now has the view role." in page
    assert 'data-subject="group:system:authenticated"' in page
    response = client.post(f"/t/alpha/projects/{slug}/sharing", {"kind": "group", "name": "system:authenticated", "role": "view"})
    assert response.status_code == 409 and "already has access" in response.content.decode()


def test_sharing_with_a_person_and_changing_roles_in_place(api, users, alpha, reconcile_now, unique_slug):
    """One row per subject, like OpenShift's Project access tab: a person or a group, its role
    changed in place (the RoleBinding follows), a second grant for the same subject refused."""
    slug = unique_slug("people")
    ns = f"alpha-{slug}"
    _create(api, users["dave"], "alpha", slug)
    client = api(users["dave"])
    path = f"/api/v1/tenants/alpha/projects/{slug}/grants"
    response = client.post(path, {"kind": "user", "name": "bob", "role": "view"}, format="json")
    assert response.status_code == 201
    grant = response.json()
    assert {k: grant[k] for k in ("kind", "name", "role", "created_by", "updated_by")} == {
        "kind": "user", "name": "bob", "role": "view", "created_by": "dave", "updated_by": None}
    assert client.post(path, {"kind": "user", "name": "bob", "role": "edit"}, format="json").status_code == 409
    # Only members of the organization can be given access (carol is in beta).
    response = client.post(path, {"kind": "user", "name": "carol", "role": "view"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["details"]
    bob = api(users["bob"])
    assert bob.get(f"/api/v1/tenants/alpha/projects/{slug}/access").json()["source"] == "shared with you"
    assert bob.patch(f"/api/v1/tenants/alpha/projects/{slug}", {"description": "x"}, format="json").status_code == 403

    reconcile_now(alpha, slug)
    [binding] = kube.list_objects("RoleBinding", ns, label_selector="pier.dev/group-access=true")
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]
    assert binding["roleRef"]["name"] == "pier-project-view"

    response = client.patch(f"{path}/{grant['id']}", {"role": "edit"}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "edit" and response.json()["updated_by"] == "dave"
    assert bob.patch(f"/api/v1/tenants/alpha/projects/{slug}", {"description": "x"}, format="json").status_code == 200
    reconcile_now(alpha, slug)
    [binding] = kube.list_objects("RoleBinding", ns, label_selector="pier.dev/group-access=true")
    assert binding["roleRef"]["name"] == "pier-project-edit"  # same name, roleRef replaced
    assert client.patch(f"{path}/{grant['id']}", {"role": "owner"}, format="json").status_code == 400
    assert bob.patch(f"{path}/{grant['id']}", {"role": "admin"}, format="json").status_code == 403


def test_sharing_page_changes_a_role_in_place(client, users, alpha, unique_slug):
    client.force_login(users["dave"])
    slug = unique_slug("shpage")
    client.post("/t/alpha/projects", {"slug": slug})
    client.post(f"/t/alpha/projects/{slug}/sharing", {"kind": "user", "name": "bob", "role": "view"})
    with tenant_context(alpha):
        grant = Project.objects.get(slug=slug).grants.get()
    response = client.post(f"/t/alpha/projects/{slug}/sharing/{grant.pk}/role", {"role": "admin"},
                           follow=True)
    assert "User bob now has the admin role." in response.content.decode()
    with tenant_context(alpha):
        grant.refresh_from_db()
        assert grant.role == "admin" and grant.updated_by == users["dave"]


def test_delete_removes_everything_then_frees_the_name(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("gone")
    ns = f"alpha-{slug}"
    _create(api, users["bob"], "alpha", slug)
    reconcile_now(alpha, slug)
    response = api(users["bob"]).delete(f"/api/v1/tenants/alpha/projects/{slug}")
    assert response.status_code == 202 and response.json()["status"] == "deleting"
    assert reconcile_now(alpha, slug) == {"namespace": "terminating"}
    for kind, name in OBJECTS:
        assert kube.get(kind, name, ns) is None, kind
    import time

    deadline = time.monotonic() + 10
    while kube.get("Namespace", ns) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    reconcile_now_result = None
    with tenant_context(alpha):
        reconcile_now_result = reconcile.run(Project.objects.get(slug=slug).pk)
        assert not Project.objects.filter(slug=slug).exists()
    assert reconcile_now_result[f"Namespace/{ns}"] == "gone"
    assert kube.get("Namespace", ns) is None
    assert not NamespaceRegistry.objects.filter(name=ns).exists()
    assert _create(api, users["bob"], "alpha", slug).status_code == 202  # the name is free again


def test_cluster_faults_show_the_last_error_and_converge_without_duplicates(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("flaky")
    ns = f"alpha-{slug}"
    _create(api, users["bob"], "alpha", slug)
    kubehelp.inject_fault(verb="patch", resource="rolebindings", status=500, times=2)
    for _attempt in range(2):
        with pytest.raises(kube.KubeUnavailable):
            reconcile_now(alpha, slug)
        with tenant_context(alpha):
            project = Project.objects.get(slug=slug)
            reconcile.record_error(project.pk, kube.KubeUnavailable("RoleBinding pier-creator-admin: boom"), final=False)
    detail = api(users["bob"]).get(f"/api/v1/tenants/alpha/projects/{slug}").json()
    assert detail["status"] == "provisioning" and "last error" in detail["status_message"]
    reconcile_now(alpha, slug)
    detail = api(users["bob"]).get(f"/api/v1/tenants/alpha/projects/{slug}").json()
    assert detail["status"] == "ready" and detail["status_message"] == ""
    assert len(kube.list_objects("RoleBinding", ns, label_selector=PIER)) == 2  # the creator's, the managers'; no duplicate
    assert len(kube.list_objects("ResourceQuota", ns, label_selector=PIER)) == 1


def test_list_queries_are_constant_in_page_size(api, users, unique_slug):
    for i in range(6):
        _create(api, users["bob"], "alpha", unique_slug(f"many{i}"))
    client = api(users["bob"])
    counts = []
    for size in (1, 6):
        client.get(f"/api/v1/tenants/alpha/projects?page_size={size}")
        with CaptureQueriesContext(connection) as queries:
            assert len(client.get(f"/api/v1/tenants/alpha/projects?page_size={size}").json()["results"]) == size
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_project_pages(client, users, alpha, reconcile_now, unique_slug):
    client.force_login(users["bob"])
    slug = unique_slug("page")
    response = client.post("/t/alpha/projects", {"slug": slug, "display_name": "Page Project"}, follow=True)
    assert response.status_code == 200
    assert f"alpha-{slug}" in response.content.decode() and "local simulated cluster" in response.content.decode()
    reconcile_now(alpha, slug)
    page = client.get(f"/t/alpha/projects/{slug}").content.decode()
    assert "ready" in page and "quota.requests.cpu" in page and "platform" in page
    response = client.post(f"/t/alpha/projects/{slug}/config", {"quota.pods": "12"}, follow=True)
    assert "Configuration saved" in response.content.decode()
    with tenant_context(alpha):
        assert Project.objects.get(slug=slug).config_overrides == {"quota.pods": "12"}
    response = client.post(f"/t/alpha/projects/{slug}/config", {"quota.pods": "twelve"})
    assert response.status_code == 400 and "not a Kubernetes quantity" in response.content.decode()
    response = client.post(f"/t/alpha/projects/{slug}/delete", follow=True)
    assert "is being deleted" in response.content.decode()


def test_an_immutable_field_changed_by_hand_is_fixed_by_recreating_the_object(api, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("immut")
    ns = f"alpha-{slug}"
    _create(api, users["bob"], "alpha", slug)
    reconcile_now(alpha, slug)
    before = kube.get("RoleBinding", "pier-creator-admin", ns)
    # roleRef cannot be changed in place (the server answers 422), so someone re-created it by hand.
    kube.delete("RoleBinding", "pier-creator-admin", ns)
    kube.create({**{k: v for k, v in before.items() if k != "metadata"},
                 "metadata": {"name": "pier-creator-admin", "namespace": ns, "labels": before["metadata"]["labels"]},
                 "roleRef": {**before["roleRef"], "name": "pier-project-view"}})
    outcomes = reconcile_now(alpha, slug)
    assert outcomes["RoleBinding/pier-creator-admin"] == "recreated"
    after = kube.get("RoleBinding", "pier-creator-admin", ns)
    assert after["roleRef"]["name"] == "pier-project-admin"
    assert len(kube.list_objects("RoleBinding", ns, label_selector=PIER)) == 2  # the creator's, the managers'; no duplicate


def test_deleting_a_tenant_removes_its_projects_namespaces(api, users, reconcile_now, unique_slug):
    from tenants import provisioning, services as tenant_services

    tenant = provision_now(unique_slug("gone-org"), "bob", acting_user=users["staff"])
    _create(api, users["bob"], tenant.slug, "app")
    reconcile_now(tenant, "app")
    ns = f"{tenant.slug}-app"
    assert kube.get("Namespace", ns) is not None
    _t, job = tenant_services.tenant_delete(tenant=tenant, acting_user=users["staff"])
    with pytest.raises(reconcile.StillTerminating):
        provisioning.run_job(job.pk)  # the namespace is terminating: the step retries
    import time

    deadline = time.monotonic() + 10
    while kube.get("Namespace", ns) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    provisioning.run_job(job.pk)
    assert kube.get("Namespace", ns) is None
    assert not NamespaceRegistry.objects.filter(name=ns).exists()
    assert not type(tenant).objects.filter(pk=tenant.pk).exists()


@pytest.mark.parametrize("overrides, fragment", [
    ({"quota.requests.cpu": "0.0000000001"}, "finer than 1n"),
    ({"quota.requests.memory": "1e40"}, "too large"),
    ({"quota.pods": "2.5"}, "whole number"),
])
def test_quantities_the_cluster_would_rewrite_are_refused(api, users, overrides, fragment, unique_slug):
    response = _create(api, users["bob"], "alpha", unique_slug("q"), config_overrides=overrides)
    assert response.status_code == 400 and fragment in response.json()["error"]["message"]


def test_a_grant_removed_during_deletion_does_not_bring_the_project_back(api, users, alpha, unique_slug):
    slug = unique_slug("undead")
    _create(api, users["bob"], "alpha", slug)
    client = api(users["bob"])
    grant = client.post(f"/api/v1/tenants/alpha/projects/{slug}/grants", {"kind": "group", "name": "ops", "role": "view"}, format="json").json()
    assert client.delete(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 202
    response = client.delete(f"/api/v1/tenants/alpha/projects/{slug}/grants/{grant['id']}")
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    assert client.get(f"/api/v1/tenants/alpha/projects/{slug}").json()["status"] == "deleting"


def test_history_says_who_changed_what_and_drift_only_when_the_cluster_was_changed(api, users, alpha, reconcile_now,
                                                                                    unique_slug):
    slug = unique_slug("hist")
    _create(api, users["bob"], "alpha", slug)
    reconcile_now(alpha, slug)
    path = f"/api/v1/tenants/alpha/projects/{slug}"
    assert api(users["bob"]).patch(path, {"description": "the shop"}, format="json").status_code == 200
    reconcile_now(alpha, slug)
    events = [e["message"] for e in api(users["bob"]).get(path).json()["events"]]
    assert events[:2] == ["the cluster matches", "changed by bob: description '' → 'the shop'"]
    assert not any("drift" in e for e in events)
    assert all(events)  # no blank rows
    # Changed by hand in the cluster: that is drift, and it says so.
    kube.delete("RoleBinding", "pier-creator-admin", f"alpha-{slug}")
    reconcile_now(alpha, slug)
    assert "repaired drift" in api(users["bob"]).get(path).json()["events"][0]["message"]


def test_the_status_fragment_polls_until_the_project_settles(client, users, alpha, reconcile_now, unique_slug):
    slug = unique_slug("live")
    client.force_login(users["bob"])
    client.post("/t/alpha/projects", {"slug": slug})
    path = f"/t/alpha/projects/{slug}/status"
    response = client.get(path, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'hx-trigger="every 2s"' in response.content.decode()
    assert "sessionid" not in response.cookies  # a poll is not activity that keeps the session alive
    reconcile_now(alpha, slug)
    response = client.get(path, HTTP_HX_REQUEST="true")
    assert response.status_code == 286  # htmx stops polling
    assert "ready" in response.content.decode() and "hx-get" not in response.content.decode()
    compact = client.get(f"{path}?compact=1", HTTP_HX_REQUEST="true")
    assert compact.status_code == 286 and "ready" in compact.content.decode()


def test_a_poll_after_the_session_ended_says_signed_out(client, users, unique_slug):
    client.force_login(users["bob"])
    slug = unique_slug("live")
    client.post("/t/alpha/projects", {"slug": slug})
    client.logout()
    response = client.get(f"/t/alpha/projects/{slug}/status", HTTP_HX_REQUEST="true",
                          HTTP_HX_CURRENT_URL=f"http://testserver/t/alpha/projects/{slug}")
    assert response.status_code == 286
    body = response.content.decode()
    assert "Signed out" in body and f"next=/t/alpha/projects/{slug}" in body
    # Without htmx, the usual redirect to the sign-in page.
    assert client.get(f"/t/alpha/projects/{slug}/status").status_code == 302


def test_the_status_of_a_deleted_project_stops_the_polling(client, users, alpha, unique_slug):
    client.force_login(users["bob"])
    response = client.get(f"/t/alpha/projects/{unique_slug('gone')}/status", HTTP_HX_REQUEST="true")
    assert response.status_code == 286 and "deleted" in response.content.decode()
