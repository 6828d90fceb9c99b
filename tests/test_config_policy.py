"""Ceilings, budgets and locks: what members cannot lift, refused naming the key, the limit and who
set it; quantities exactly as the API server takes them; allow_from within the organization;
overrides patched as JSON merge patches; a value the cluster refuses for good fails once."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

import kubehelp
from portal import kube, tenancy
from tenants.models import Tenant
from tenants.projects import reconcile
from tenants.projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_faults_left():
    yield
    kubehelp.clear_faults()


def _create(api, user, slug: str, tenant: str = "alpha", **extra):
    return api(user).post(f"/api/v1/tenants/{tenant}/projects", {"slug": slug, **extra}, format="json")


def _patch(api, user, slug: str, overrides, tenant: str = "alpha", **kwargs):
    return api(user).patch(f"/api/v1/tenants/{tenant}/projects/{slug}", {"config_overrides": overrides},
                           format="json", **kwargs)


def _policy(api, users, body, tenant: str = "alpha"):
    response = api(users["staff"]).patch(f"/api/v1/admin/tenants/{tenant}/policy", body, format="json")
    tenancy.invalidate(tenant)  # what the commit would do; the test's transaction never commits
    return response


def _reconcile(tenant, slug):
    with tenant_context(tenant):
        return reconcile.run(Project.objects.get(slug=slug).pk)


def _config(api, user, slug, tenant="alpha"):
    return api(user).get(f"/api/v1/tenants/{tenant}/projects/{slug}").json()["config"]


# --- Ceilings -------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value", [
    ("quota.limits.cpu", "100000"), ("quota.pods", str(2**63 - 1)), ("quota.limits.memory", "7Ei"),
    ("limits.default.cpu", "100000"),
])
def test_a_member_cannot_lift_a_quota_above_the_platform_ceiling(api, users, unique_slug, key, value):
    response = _create(api, users["bob"], unique_slug("greedy"), config_overrides={key: value})
    assert response.status_code == 400
    error = response.json()["error"]
    field = f"config_overrides.{key}"
    assert field in error["details"]
    assert "ceiling" in error["message"] and "platform" in error["message"]
    assert not Project.objects.filter(slug__startswith="greedy").exists()


def test_an_override_above_the_ceiling_is_refused_on_update_too(api, users, unique_slug, alpha):
    slug = unique_slug("web")
    assert _create(api, users["bob"], slug).status_code == 202
    response = _patch(api, users["bob"], slug, {"quota.pods": "5000"})
    assert response.status_code == 400
    assert "the ceiling of 1000 that the platform set" in response.json()["error"]["message"]
    with tenant_context(alpha):
        assert Project.objects.get(slug=slug).config_overrides == {}


def test_staff_set_a_ceiling_for_one_organization(api, users, unique_slug):
    assert _policy(api, users, {"ceilings": {"quota.pods": "20"}}).status_code == 200
    response = _create(api, users["bob"], unique_slug("web"), config_overrides={"quota.pods": "21"})
    assert response.status_code == 400
    assert "the ceiling of 20 that the platform set for this organization" in response.json()["error"]["message"]
    assert _create(api, users["bob"], unique_slug("web"), config_overrides={"quota.pods": "20"}).status_code == 202
    # Another organization keeps the platform's ceiling.
    assert _create(api, users["carol"], unique_slug("web"), tenant="beta",
                   config_overrides={"quota.pods": "21"}).status_code == 202


def test_organization_defaults_stay_within_the_ceilings(api, users):
    response = api(users["alice"]).patch("/api/v1/tenants/alpha/project-defaults",
                                         {"project_defaults": {"quota.limits.cpu": "100000"}}, format="json")
    assert response.status_code == 400
    assert "project_defaults.quota.limits.cpu" in response.json()["error"]["details"]


def test_only_staff_change_an_organizations_policy(api, users):
    for user in ("alice", "bob"):
        response = api(users[user]).patch("/api/v1/admin/tenants/alpha/policy", {"ceilings": {"quota.pods": "9999"}},
                                          format="json")
        assert response.status_code == 403
    assert Tenant.objects.get(slug="alpha").config_ceilings == {}


# --- Requests above limits ------------------------------------------------------------------


@pytest.mark.parametrize("overrides, field", [
    ({"quota.requests.cpu": "20", "quota.limits.cpu": "8"}, "config_overrides.quota.requests.cpu"),
    ({"quota.requests.cpu": "10"}, "config_overrides.quota.requests.cpu"),  # above the inherited limits.cpu 8
    ({"limits.request.memory": "1Gi"}, "config_overrides.limits.request.memory"),  # above default 512Mi
])
def test_requests_above_limits_are_refused(api, users, unique_slug, overrides, field):
    response = _create(api, users["bob"], unique_slug("req"), config_overrides=overrides)
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["details"] and "cannot exceed its limit" in error["message"]


def test_lowering_a_limit_below_the_request_is_refused_naming_the_limit(api, users, unique_slug):
    slug = unique_slug("req")
    assert _create(api, users["bob"], slug).status_code == 202
    response = _patch(api, users["bob"], slug, {"quota.limits.cpu": "1"})  # requests.cpu is 4
    assert response.status_code == 400
    assert "config_overrides.quota.limits.cpu" in response.json()["error"]["details"]


# --- Locks ----------------------------------------------------------------------------------


def test_an_organization_admin_locks_a_key_and_projects_cannot_override_it(api, users, unique_slug, alpha):
    slug = unique_slug("web")
    assert _create(api, users["bob"], slug, config_overrides={"quota.pods": "30"}).status_code == 202
    response = api(users["dave"]).patch("/api/v1/tenants/alpha/project-defaults",
                                        {"project_defaults": {"quota.pods": "10"}, "locked_keys": ["quota.pods"]},
                                        format="json")
    assert response.status_code == 200 and response.json()["locked_keys"] == ["quota.pods"]
    # The earlier override is kept for the record but no longer applies.
    entry = _config(api, users["bob"], slug)["quota.pods"]
    assert entry["value"] == "10" and entry["source"] == "tenant" and entry["locked"] == {"level": "organization"}
    with tenant_context(alpha):
        assert Project.objects.get(slug=slug).config_overrides == {"quota.pods": "30"}
    _reconcile(alpha, slug)
    assert kube.get("ResourceQuota", "pier-quota", f"alpha-{slug}")["spec"]["hard"]["pods"] == "10"
    # A new override of the locked key is refused; other keys are not.
    response = _patch(api, users["bob"], slug, {"quota.pods": "12"})
    assert response.status_code == 400
    assert "locked by the organization's admins" in response.json()["error"]["message"]
    assert _patch(api, users["bob"], slug, {"limits.default.cpu": "250m"}).status_code == 200
    # Plain members cannot lock or unlock.
    assert api(users["bob"]).patch("/api/v1/tenants/alpha/project-defaults", {"locked_keys": []},
                                   format="json").status_code == 403


def test_a_key_locked_by_staff_cannot_be_changed_by_the_organization(api, users, unique_slug):
    assert _policy(api, users, {"locks": ["quota.limits.memory"]}).status_code == 200
    response = api(users["alice"]).patch("/api/v1/tenants/alpha/project-defaults",
                                         {"project_defaults": {"quota.limits.memory": "32Gi"}}, format="json")
    assert response.status_code == 400
    assert "locked by the platform" in response.json()["error"]["message"]
    response = _create(api, users["bob"], unique_slug("web"), config_overrides={"quota.limits.memory": "8Gi"})
    assert response.status_code == 400
    policy = api(users["alice"]).get("/api/v1/tenants/alpha/project-defaults").json()
    assert policy["platform_locks"] == ["quota.limits.memory"]


# --- Budget ---------------------------------------------------------------------------------


def test_the_budget_caps_the_sum_of_the_organizations_quotas(api, users, unique_slug):
    used = int(api(users["alice"]).get("/api/v1/tenants/alpha/project-defaults").json()["budget"].get(
        "quota.pods", {"used": "0"})["used"])
    # Projects on defaults count with their defaults (50 pods each).
    assert _policy(api, users, {"budget": {"quota.pods": str(used + 100)}}).status_code == 200
    first, second = unique_slug("b"), unique_slug("b")
    assert _create(api, users["bob"], first).status_code == 202
    assert _create(api, users["bob"], second, config_overrides={"quota.pods": "40"}).status_code == 202
    response = _create(api, users["bob"], unique_slug("b"), config_overrides={"quota.pods": "11"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded" and "config_overrides.quota.pods" in error["details"]
    assert "budget" in error["message"] and "platform" in error["message"]
    assert _create(api, users["bob"], unique_slug("b"), config_overrides={"quota.pods": "10"}).status_code == 202
    # Raising an override past it is refused; lowering one is always fine.
    assert _patch(api, users["bob"], second, {"quota.pods": "41"}).status_code == 409
    assert _patch(api, users["bob"], second, {"quota.pods": "30"}).status_code == 200
    # So is an organization default that would cross it.
    response = api(users["alice"]).patch("/api/v1/tenants/alpha/project-defaults",
                                         {"project_defaults": {"quota.pods": "70"}}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "budget_exceeded"
    summary = api(users["alice"]).get("/api/v1/tenants/alpha/project-defaults").json()["budget"]["quota.pods"]
    assert summary == {"budget": str(used + 100), "used": str(used + 90)}


# --- Lowering a ceiling below existing projects ------------------------------------------------


def test_lowering_a_ceiling_lists_the_projects_and_clamps_them_at_the_next_reconcile(api, users, unique_slug, alpha):
    slug = unique_slug("big")
    assert _create(api, users["bob"], slug, config_overrides={"quota.pods": "80"}).status_code == 202
    _reconcile(alpha, slug)
    response = _policy(api, users, {"ceilings": {"quota.pods": "25"}})
    assert response.status_code == 200
    clamped = {p["project"]: p["keys"] for p in response.json()["clamped_projects"]}
    assert clamped[slug] == {"quota.pods": {"asked": "80", "applied": "25"}}
    assert api(users["staff"]).get("/api/v1/admin/tenants/alpha/policy").json()["clamped_projects"] == \
        response.json()["clamped_projects"]
    entry = _config(api, users["bob"], slug)["quota.pods"]
    assert entry["value"] == "25" and entry["clamped_from"] == "80" and entry["source"] == "project"
    _reconcile(alpha, slug)
    assert kube.get("ResourceQuota", "pier-quota", f"alpha-{slug}")["spec"]["hard"]["pods"] == "25"
    with tenant_context(alpha):
        project = Project.objects.get(slug=slug)
        assert project.config_overrides == {"quota.pods": "80"}  # kept for the record
        assert project.status == "ready"
        assert any("quota.pods 80 → 25 (clamped by the ceiling; the override 80 is kept)" in e.message
                   for e in project.events.all())
    # An unrelated edit is not blocked by the old override.
    assert _patch(api, users["bob"], slug, {"limits.default.cpu": "300m"}).status_code == 200
    assert api(users["bob"]).patch(f"/api/v1/tenants/alpha/projects/{slug}", {"description": "still fine"},
                                   format="json").status_code == 200


# --- network.allow_from -----------------------------------------------------------------------


def test_allow_from_is_limited_to_the_organizations_namespaces_and_the_platform_list(api, users, unique_slug, alpha,
                                                                                  beta):
    other = unique_slug("b")
    assert _create(api, users["carol"], other, tenant="beta").status_code == 202
    mine, target = unique_slug("a"), unique_slug("a")
    assert _create(api, users["bob"], mine).status_code == 202
    assert _create(api, users["bob"], target).status_code == 202
    for refused in ([f"beta-{other}"], ["kube-system"], ["openshift-ingress", "default"]):
        response = _patch(api, users["bob"], target, {"network.allow_from": refused})
        assert response.status_code == 400, refused
        assert "config_overrides.network.allow_from" in response.json()["error"]["details"]
    response = _patch(api, users["bob"], target, {"network.allow_from": [f"alpha-{mine}", "openshift-ingress"]})
    assert response.status_code == 200
    _reconcile(alpha, target)
    policy = kube.get("NetworkPolicy", "pier-isolation", f"alpha-{target}")
    sources = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
               for p in policy["spec"]["ingress"][0]["from"] if "namespaceSelector" in p]
    assert sorted(sources) == sorted([f"alpha-{mine}", "openshift-ingress"])


# --- Quantities -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [" 1", "1 ", "1_000", "\xa01", "١", "1..2", "1e", "1Ki2", "0x10", "1.5.", "Infinity",
                                   "NaN", "1 Gi"])
def test_quantities_the_api_server_would_refuse_are_refused(api, users, unique_slug, value):
    response = _create(api, users["bob"], unique_slug("q"), config_overrides={"quota.requests.cpu": value})
    assert response.status_code == 400
    assert "config_overrides.quota.requests.cpu" in response.json()["error"]["details"]


@pytest.mark.parametrize("value, canonical", [("1e0", "1"), (".5", "500m"), ("2.", "2"), ("+1", "1"), ("1500m", "1500m")])
def test_quantities_the_api_server_takes_are_taken(api, users, unique_slug, alpha, value, canonical):
    slug = unique_slug("q")
    assert _create(api, users["bob"], slug, config_overrides={"quota.requests.cpu": value}).status_code == 202
    _reconcile(alpha, slug)
    assert kube.get("ResourceQuota", "pier-quota", f"alpha-{slug}")["spec"]["hard"]["requests.cpu"] == canonical
    assert _reconcile(alpha, slug)["ResourceQuota/pier-quota"] == "unchanged"


# --- JSON merge patch -------------------------------------------------------------------------


def test_patch_merges_overrides_and_null_removes_one(api, users, unique_slug, alpha):
    slug = unique_slug("m")
    assert _create(api, users["bob"], slug, config_overrides={"limits.default.cpu": "250m"}).status_code == 202
    response = _patch(api, users["bob"], slug, {"quota.pods": "11"})
    assert response.status_code == 200
    assert response.json()["config_overrides"] == {"limits.default.cpu": "250m", "quota.pods": "11"}
    response = _patch(api, users["bob"], slug, {"limits.default.cpu": None})
    assert response.json()["config_overrides"] == {"quota.pods": "11"}
    assert response.json()["config"]["limits.default.cpu"]["source"] == "platform"
    with tenant_context(alpha):
        message = Project.objects.get(slug=slug).events.first().message
    assert message == "changed by bob: limits.default.cpu 250m → (inherited)"


def test_project_defaults_patch_merges_too(api, users):
    client = api(users["alice"])
    assert client.patch("/api/v1/tenants/alpha/project-defaults",
                        {"project_defaults": {"quota.pods": "30", "limits.default.cpu": "400m"}},
                        format="json").status_code == 200
    response = client.patch("/api/v1/tenants/alpha/project-defaults", {"project_defaults": {"quota.pods": None}},
                            format="json")
    assert response.json()["project_defaults"] == {"limits.default.cpu": "400m"}


def test_the_page_form_keeps_the_whole_map(client, users, unique_slug, alpha, api):
    slug = unique_slug("m")
    assert _create(api, users["bob"], slug, config_overrides={"quota.pods": "7", "limits.default.cpu": "250m"}
                   ).status_code == 202
    client.force_login(users["bob"])
    page = client.get(f"/t/alpha/projects/{slug}").content.decode()
    assert 'value="7"' in page and 'value="250m"' in page
    # The form sends every field; an emptied one stops overriding.
    client.post(f"/t/alpha/projects/{slug}/config", {"quota.pods": "8", "limits.default.cpu": ""})
    with tenant_context(alpha):
        assert Project.objects.get(slug=slug).config_overrides == {"quota.pods": "8"}


def test_every_bad_value_is_reported_at_once(api, users, unique_slug):
    response = _create(api, users["bob"], unique_slug("q"),
                       config_overrides={"quota.pods": "lots", "limits.default.cpu": "-1", "nope": "1"})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {
        "config_overrides.quota.pods", "config_overrides.limits.default.cpu", "config_overrides.nope"}


def test_the_page_shows_errors_at_their_fields_with_ceilings_and_locks(client, users, unique_slug, api):
    slug = unique_slug("m")
    assert _create(api, users["bob"], slug).status_code == 202
    client.force_login(users["bob"])
    response = client.post(f"/t/alpha/projects/{slug}/config", {"quota.pods": "5000", "limits.default.cpu": "5000"})
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["quota.pods"] == ["At most 1000 (ceiling set by the platform)."]
    assert form.errors["limits.default.cpu"] == ["At most 16 (ceiling set by the platform)."]
    page = response.content.decode()
    assert "at most <span class=\"mono\">1000</span>" in page


# --- A value the cluster refuses for good ---------------------------------------------------------


def test_a_configuration_the_cluster_refuses_fails_once_not_on_every_pass(api, users, unique_slug, alpha):
    slug = unique_slug("inv")
    assert _create(api, users["bob"], slug).status_code == 202
    _reconcile(alpha, slug)
    assert _patch(api, users["bob"], slug, {"quota.pods": "12"}).status_code == 200
    kubehelp.inject_fault(verb="update", resource="resourcequotas", status=422)
    kubehelp.inject_fault(verb="patch", resource="resourcequotas", status=422)
    with tenant_context(alpha):
        project = Project.objects.get(slug=slug)
        with pytest.raises(kube.KubeError) as raised:
            reconcile.run(project.pk)
        assert reconcile.record_error(project.pk, raised.value, final=False) is False  # no retry
        project.refresh_from_db()
        assert project.status == "failed" and "the cluster refused this configuration" in project.status_message
        events = project.events.count()
        for _ in range(3):  # the periodic pass leaves it alone: no flip-flop, no new history
            reconcile.reconcile_all()
        project.refresh_from_db()
        assert project.status == "failed" and project.events.count() == events
    kubehelp.clear_faults()
    # A new configuration is tried again.
    assert _patch(api, users["bob"], slug, {"quota.pods": "13"}).status_code == 200
    _reconcile(alpha, slug)
    with tenant_context(alpha):
        assert Project.objects.get(slug=slug).status == "ready"


def test_the_organization_settings_page(client, users, alpha):
    client.force_login(users["dave"])  # an organization admin
    page = client.get("/t/alpha/settings").content.decode()
    assert 'name="quota.pods"' in page and "1000" in page  # the field and the platform's ceiling
    response = client.post("/t/alpha/settings", {"quota.pods": "30", "lock:quota.pods": "on", "limits.default.cpu": ""},
                           follow=True)
    assert "Organization defaults saved" in response.content.decode()
    with tenant_context(alpha):
        from tenants.projects.models import TenantSettings

        row = TenantSettings.objects.get()
        assert row.project_defaults == {"quota.pods": "30"} and row.locked_keys == ["quota.pods"]
    response = client.post("/t/alpha/settings", {"quota.pods": "5000"})
    assert response.status_code == 400
    assert response.context["form"].errors["quota.pods"] == ["At most 1000 (ceiling set by the platform)."]
    # A plain member reads them; the form is not theirs.
    client.force_login(users["bob"])
    page = client.get("/t/alpha/settings").content.decode()
    assert "Only the organization's owners and admins change them." in page and 'name="quota.pods"' not in page
    assert client.post("/t/alpha/settings", {"quota.pods": "1"}).status_code == 403


def test_editors_change_the_name_and_description_on_the_project_page(client, users, alpha, api, unique_slug):
    slug = unique_slug("ed")
    assert _create(api, users["bob"], slug).status_code == 202
    client.force_login(users["bob"])
    response = client.post(f"/t/alpha/projects/{slug}/edit", {"display_name": "Web shop", "description": "Sells"},
                           follow=True)
    assert response.status_code == 200 and "Web shop" in response.content.decode()
    with tenant_context(alpha):
        project = Project.objects.get(slug=slug)
        assert (project.display_name, project.description) == ("Web shop", "Sells")
    response = client.post(f"/t/alpha/projects/{slug}/edit", {"display_name": "x" * 201})
    assert response.status_code == 400 and response.context["edit_form"].errors["display_name"]


def test_merge_patch_media_type_is_accepted(api, users, unique_slug):
    slug = unique_slug("mp")
    assert _create(api, users["bob"], slug, config_overrides={"limits.default.cpu": "250m"}).status_code == 202
    import json

    response = api(users["bob"]).generic("PATCH", f"/api/v1/tenants/alpha/projects/{slug}",
                                         json.dumps({"config_overrides": {"quota.pods": "11", "limits.default.cpu": None}}),
                                         content_type="application/merge-patch+json")
    assert response.status_code == 200
    assert response.json()["config_overrides"] == {"quota.pods": "11"}
