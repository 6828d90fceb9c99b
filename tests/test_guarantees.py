"""Pier's concurrency guarantees, each forced by a real race (threads with their own database
connections, on committed data) and observed as a user would: the cluster or the database ends
wrong, a job runs twice, a failure is recorded for a success. Each test fails when the guard it
names is removed.

How a race is forced, every time: a `Gate` holds the first worker inside the critical section
(it waits on an event) while the second one runs; when the second one can only wait for a lock,
the test sees it waiting in pg_stat_activity before it lets the first one go. No sleeps decide
the order.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django_tenants.utils import schema_exists, tenant_context

from conftest import provision_now, wait_for
from portal import controller, kube, locks
from portal.models import AuditEvent
from tenants import provisioning, schema
from tenants import services as tenant_services
from tenants.models import JobStep, ProvisioningJob, SchemaTemplate, Tenant
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access
from tenants.projects.models import Project

pytestmark = pytest.mark.usefixtures("committed")

FIRST, SECOND = "guarantee-first", "guarantee-second"
WAIT = 60  # seconds; only a hung test ever waits this long


class Gate:
    """Holds the first call made from thread `who` until released."""

    def __init__(self, who: str = FIRST):
        self.who, self.entered, self.released = who, threading.Event(), threading.Event()

    def wrap(self, fn):
        def gated(*args, **kwargs):
            if threading.current_thread().name == self.who and not self.entered.is_set():
                self.entered.set()
                assert self.released.wait(WAIT), "the gate was never released"
            return fn(*args, **kwargs)

        return gated

    def wait_entered(self) -> None:
        assert self.entered.wait(WAIT), "the first worker never reached the critical section"


class Worker(threading.Thread):
    """Runs fn on a database connection of its own (in `tenant`'s schema if given); keeps the
    result or the exception."""

    def __init__(self, name: str, fn, *, tenant=None):
        super().__init__(name=name, daemon=True)
        self.fn, self.tenant = fn, tenant
        self.result = self.error = self.backend_pid = None
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            if self.tenant is not None:
                connection.set_tenant(self.tenant)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend_pid = cursor.fetchone()[0]
            self.connected.set()
            self.result = self.fn()
        except BaseException as exc:  # the outcome is what the test looks at
            self.error = exc
        finally:
            self.connected.set()
            connections.close_all()

    def finish(self) -> None:
        self.join(WAIT)
        assert not self.is_alive(), f"{self.name} did not finish"


def blocked_or_done(worker: Worker) -> str:
    """Wait until `worker` has finished or its connection waits for a lock (advisory, row or
    transaction): then the race is set up and the first worker may go on."""
    assert worker.connected.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if not worker.is_alive():
            return "done"
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [worker.backend_pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return "blocked"
        time.sleep(0.01)  # polling for a state, not deciding an order
    raise AssertionError(f"{worker.name} neither finished nor waited for a lock")


def delete_tenant(tenant: Tenant) -> None:
    """Clean-up: delete the tenant (its namespaces, waiting for them to terminate, and its schema);
    a tenant a failed test left half-made goes row by row."""
    connection.set_schema_to_public()
    tenant = Tenant.objects.filter(pk=tenant.pk).first()
    if tenant is None:
        return
    if tenant.status in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED):
        _, job = tenant_services.tenant_delete(tenant=tenant, acting_user=None)

        def attempt() -> bool:
            try:
                provisioning.run_job(job.pk)
                return True
            except Exception:  # still terminating (a step that fails and is retried, like the task does)
                return False

        wait_for(attempt, timeout=30, interval=0.2, message="the tenant's namespaces to go")
    if Tenant.objects.filter(pk=tenant.pk).exists():
        schema.drop_tenant_schema(tenant.schema_name)
        ProvisioningJob.objects.filter(tenant=tenant).delete()
        tenant.delete()


@pytest.fixture
def no_enqueue(monkeypatch):
    """The tests play the workers themselves: nothing goes to the broker."""
    monkeypatch.setattr(controller, "enqueue", lambda *a, **k: None)
    monkeypatch.setattr(tenant_services, "_enqueue_job", lambda *a, **k: None)
    monkeypatch.setattr(tenant_services, "_enqueue_invitation", lambda *a, **k: None)


@pytest.fixture
def org(unique_slug, no_enqueue):
    tenant = provision_now(unique_slug("guard"), "bob")
    yield tenant
    delete_tenant(tenant)


@pytest.fixture
def bob():
    return get_user_model().objects.get(username="bob")


def ready_project(org: Tenant, bob, slug: str = "app") -> Project:
    """A project reconciled once: its namespace and objects exist, it is `ready`."""
    with tenant_context(org):
        project = project_services.project_create(tenant=org, slug=slug, acting_user=bob)
        reconcile.run(project.pk)
        project.refresh_from_db()
    assert project.status == Project.Status.READY
    return project


def change_pods(org: Tenant, project: Project, bob, pods: str) -> Project:
    with tenant_context(org):
        return project_services.project_update(tenant=org, project=project, acting_user=bob,
                                               access=Access("admin", "test"),
                                               config_overrides={"quota.pods": pods})


def pods_in_cluster(project: Project) -> str:
    return kube.get("ResourceQuota", reconcile.QUOTA_NAME, project.namespace)["spec"]["hard"]["pods"]


def reconcile_in_thread(org: Tenant, project: Project, name: str) -> Worker:
    worker = Worker(name, lambda: reconcile.run(project.pk), tenant=org)
    worker.start()
    return worker


# --- One reconcile per project at a time (locks.held in reconcile.run) --------------------------


def test_a_second_reconcile_backs_off_so_the_cluster_ends_with_the_newest_configuration(org, bob, monkeypatch):
    """A reconcile read the project, then the configuration changed and a second reconcile
    started. The second must back off (Busy: the task retries it later); otherwise it applies the
    new quota and the first, resuming, overwrites the cluster with the old one, while the project
    says `ready` at the new generation."""
    project = ready_project(org, bob)
    default_pods = pods_in_cluster(project)
    gate = Gate()
    monkeypatch.setattr(kube, "reconcile", gate.wrap(kube.reconcile))

    first = reconcile_in_thread(org, project, FIRST)
    try:
        gate.wait_entered()  # the first read the old configuration and holds the lock
        project = change_pods(org, project, bob, "7")
        second = reconcile_in_thread(org, project, SECOND)
        second.finish()
    finally:
        gate.released.set()
    first.finish()
    assert first.error is None
    if isinstance(second.error, locks.Busy):
        with tenant_context(org):  # what the task does on Busy: come back later
            reconcile.run(project.pk)
    else:
        assert second.error is None

    assert default_pods != "7"
    assert pods_in_cluster(project) == "7", "an older reconcile overwrote the newer configuration"
    with tenant_context(org):
        project.refresh_from_db()
    assert project.status == Project.Status.READY and project.observed_generation == project.generation


# --- The stale-generation guard (record(only_generation=…) in reconcile.apply) -----------------


def test_a_reconcile_of_an_older_generation_does_not_mark_the_newer_one_ready(org, bob, monkeypatch):
    """The reconcile read generation N; the configuration changed (N+1) while it applied N. It
    must not record itself as the reconcile of the project as it is now: the project stays
    `provisioning` until N+1 reaches the cluster, and only then is `ready`."""
    project = ready_project(org, bob)
    gate = Gate()
    monkeypatch.setattr(kube, "reconcile", gate.wrap(kube.reconcile))
    project = change_pods(org, project, bob, "5")  # generation N: the first reconcile applies it

    first = reconcile_in_thread(org, project, FIRST)
    try:
        gate.wait_entered()
        project = change_pods(org, project, bob, "7")
        newer = project.generation
    finally:
        gate.released.set()
    first.finish()
    assert first.error is None

    with tenant_context(org):
        project.refresh_from_db()
    assert pods_in_cluster(project) == "5"  # the first pass applied generation N
    assert project.status == Project.Status.PROVISIONING, "the project says ready before its change reached the cluster"
    assert project.observed_generation < newer
    with tenant_context(org):
        reconcile.run(project.pk)
        project.refresh_from_db()
    assert pods_in_cluster(project) == "7"
    assert project.status == Project.Status.READY and project.observed_generation == newer


def test_a_reconcile_in_flight_does_not_undo_a_deletion(org, bob, monkeypatch):
    """Deletion was requested while a reconcile applied the project. The reconcile must not write
    `ready` over `deleting`: the next reconcile tears the project down (otherwise it would apply
    it again and the project would never go)."""
    project = ready_project(org, bob)
    gate = Gate()
    monkeypatch.setattr(kube, "reconcile", gate.wrap(kube.reconcile))
    project = change_pods(org, project, bob, "5")  # the reconcile in flight applies this change

    first = reconcile_in_thread(org, project, FIRST)
    try:
        gate.wait_entered()
        with tenant_context(org):
            project_services.project_delete(tenant=org, project=project, acting_user=bob,
                                            access=Access("admin", "test"))
    finally:
        gate.released.set()
    first.finish()
    assert first.error is None

    with tenant_context(org):
        project.refresh_from_db()
        assert project.status == Project.Status.DELETING, "a reconcile in flight brought a deleted project back"
        with pytest.raises(reconcile.StillTerminating):
            reconcile.run(project.pk)  # the deletion goes on
    namespace = kube.get("Namespace", project.namespace)
    assert namespace is None or namespace["status"]["phase"] == "Terminating"


# --- One provisioning job per tenant at a time (the tenant's lock, TenantJobController.lock_key) --


def new_tenant(unique_slug) -> tuple[Tenant, ProvisioningJob]:
    with transaction.atomic():
        return tenant_services.tenant_create(slug=unique_slug("guard"), name="Guard", owner="bob", acting_user=None)


@pytest.fixture
def unprovisioned(unique_slug, no_enqueue):
    tenant, job = new_tenant(unique_slug)
    yield tenant, job
    delete_tenant(tenant)


def test_two_workers_on_one_provisioning_job_run_it_once(unprovisioned, monkeypatch):
    """The same job delivered twice (a redelivery, the stuck-job pass): while one worker runs it,
    the other leaves at once (locks.Busy; the task comes back later). Otherwise the steps run twice and the tenant's history
    says it was provisioned twice."""
    tenant, job = unprovisioned
    gate = Gate()
    monkeypatch.setitem(provisioning.STEPS, "create_schema", gate.wrap(provisioning.STEPS["create_schema"]))

    first = Worker(FIRST, lambda: provisioning.run_job(job.pk))
    first.start()
    try:
        gate.wait_entered()  # inside the attempt's transaction, before the schema exists
        second = Worker(SECOND, lambda: provisioning.run_job(job.pk))
        second.start()
        blocked_or_done(second)
    finally:
        gate.released.set()
    first.finish()
    second.finish()
    assert first.error is None
    assert isinstance(second.error, locks.Busy), f"the second worker ran the job too: {second.error!r}"

    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and schema_exists(tenant.schema_name)
    assert ProvisioningJob.objects.get(pk=job.pk).status == ProvisioningJob.Status.SUCCEEDED
    assert AuditEvent.objects.filter(action="tenant.provision", target=tenant.slug).count() == 1
    assert set(JobStep.objects.filter(job_id=job.pk).values_list("attempts", flat=True)) == {1}


def test_giving_up_waits_for_the_attempt_in_flight_and_leaves_its_success_alone(unprovisioned, monkeypatch):
    """Retries ran out (give_up) while another delivery's attempt was running: giving up waits
    for that attempt, sees the job finished, and records no failure. Otherwise the tenant is marked
    failed (its schema dropped) and the audit log says provisioning failed, for a tenant that
    came up."""
    tenant, job = unprovisioned
    gate = Gate()
    monkeypatch.setitem(provisioning.STEPS, "create_schema", gate.wrap(provisioning.STEPS["create_schema"]))

    first = Worker(FIRST, lambda: provisioning.run_job(job.pk))
    first.start()
    try:
        gate.wait_entered()
        giving_up = Worker(SECOND, lambda: provisioning.give_up(job.pk, "retries exhausted"))
        giving_up.start()
        blocked_or_done(giving_up)
    finally:
        gate.released.set()
    first.finish()
    giving_up.finish()
    assert first.error is None and giving_up.error is None

    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and schema_exists(tenant.schema_name)
    assert ProvisioningJob.objects.get(pk=job.pk).status == ProvisioningJob.Status.SUCCEEDED
    failures = AuditEvent.objects.filter(action="tenant.provision", target=tenant.slug,
                                         outcome=AuditEvent.Outcome.FAILED)
    assert not failures.exists(), "a failure was recorded for a provisioning that succeeded"


# --- One template capture per migration state (xact_lock in schema.template_sql) ----------------


def test_two_processes_capturing_a_new_template_capture_it_once_and_both_get_it(monkeypatch):
    """After a deploy with a new migration, two workers provision tenants at once, in two
    processes: the template is captured once (the capture runs every migration, seconds) and both
    get it; otherwise both capture and the second one's insert fails (the provisioning attempt
    errors)."""
    state = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    monkeypatch.setattr(schema, "template_key", lambda: state)
    monkeypatch.setattr(schema, "_local_templates", {})
    # Two processes: the in-process lock does not serialise them (threads stand in for processes).
    monkeypatch.setattr(schema, "_local_lock", contextlib.nullcontext())
    captures: list[str] = []

    def capture() -> list[str]:
        captures.append(threading.current_thread().name)
        return [f"-- template {state[:12]}"]

    gate = Gate()
    monkeypatch.setattr(schema, "capture_template_sql", gate.wrap(capture))
    try:
        first = Worker(FIRST, schema.template_sql)
        first.start()
        try:
            gate.wait_entered()  # capturing, inside the transaction that will store it
            second = Worker(SECOND, schema.template_sql)
            second.start()
            blocked_or_done(second)
        finally:
            gate.released.set()
        first.finish()
        second.finish()
        assert first.error is None and second.error is None, (first.error, second.error)
        assert first.result == second.result == [f"-- template {state[:12]}"]
        assert len(captures) == 1, f"captured {len(captures)} times"
    finally:
        SchemaTemplate.objects.filter(migration_state=state).delete()


# --- One tenant per slug (the unique slug, answered 409 by tenant_create) ------------------------


def test_two_creates_of_one_slug_make_one_tenant_and_the_other_is_told_409(unique_slug, no_enqueue, monkeypatch):
    slug = unique_slug("guard")
    gate = Gate()
    monkeypatch.setattr(tenant_services, "_new_job", gate.wrap(tenant_services._new_job))

    def create():
        return tenant_services.tenant_create(slug=slug, name="Guard", owner="bob", acting_user=None)

    try:
        first = Worker(FIRST, create)
        first.start()
        try:
            gate.wait_entered()  # the first has checked the slug and inserted its row
            second = Worker(SECOND, create)
            second.start()
            blocked_or_done(second)
        finally:
            gate.released.set()
        first.finish()
        second.finish()
        assert first.error is None
        assert getattr(second.error, "code", None) == "slug_taken", repr(second.error)
        assert second.error.status == 409
        assert Tenant.objects.filter(slug=slug).count() == 1
        assert ProvisioningJob.objects.filter(tenant_slug=slug).count() == 1
    finally:
        for tenant in Tenant.objects.filter(slug=slug):
            delete_tenant(tenant)


# --- Quotas under a race (the tenant row lock: select_for_update in member_add, project_create) -


def test_two_members_added_at_once_with_room_for_one_make_one_member(org, monkeypatch):
    """Room for one more member, two admins add someone at the same moment: one is added, the
    other is told the limit. The tenant row lock makes the second count after the first wrote;
    without it both count the same members and the organization ends above its limit."""
    from portal import audit
    from tenants.models import Membership

    Tenant.objects.filter(pk=org.pk).update(max_members=2)  # bob, the owner, and one more
    org.refresh_from_db()
    gate = Gate()
    monkeypatch.setattr(audit, "record", gate.wrap(audit.record))  # after the member was written

    def add(username: str):
        return lambda: tenant_services.member_add(tenant=org, person=username, role="member",
                                                  acting_user=None, acting_role="staff")

    first = Worker(FIRST, add("carol"))
    first.start()
    try:
        gate.wait_entered()
        second = Worker(SECOND, add("dave"))
        second.start()
        blocked_or_done(second)
    finally:
        gate.released.set()
    first.finish()
    second.finish()
    assert first.error is None
    assert getattr(second.error, "code", None) == "quota_exceeded", f"both were added: {second.error!r}"
    assert Membership.objects.filter(tenant=org).count() == 2


def test_two_projects_created_at_once_with_room_for_one_make_one_project(org, bob, monkeypatch):
    """The project limit under the same race: one project, the other create is told the limit."""
    Tenant.objects.filter(pk=org.pk).update(max_projects=1)
    org.refresh_from_db()
    gate = Gate()
    monkeypatch.setattr(project_services, "_event", gate.wrap(project_services._event))  # after the row

    def create(slug: str):
        return lambda: project_services.project_create(tenant=org, slug=slug, acting_user=bob)

    first = Worker(FIRST, create("one"), tenant=org)
    first.start()
    try:
        gate.wait_entered()
        second = Worker(SECOND, create("two"), tenant=org)
        second.start()
        blocked_or_done(second)
    finally:
        gate.released.set()
    first.finish()
    second.finish()
    assert first.error is None
    assert getattr(second.error, "code", None) == "quota_exceeded", f"both were created: {second.error!r}"
    with tenant_context(org):
        assert Project.objects.count() == 1
