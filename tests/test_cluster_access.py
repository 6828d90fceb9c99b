"""What Pier says people may do in a project is what the cluster says: for every way of holding a
Pier role (organization owner or admin, creator, a grant to a person or a group, nothing), the
cluster's SubjectAccessReview, answered from the RoleBindings Pier wrote (the emulator with
authorization on), agrees."""

import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context
from kubernetes import client

from portal import kube
from portal.services import groups_of, user_set_groups
from tenants import services as tenant_services
from tenants.models import Membership
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access, project_access

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
