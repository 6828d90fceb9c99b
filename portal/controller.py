"""The controller kernel: one way to make the cluster follow what the database says, for every
model Pier reconciles (projects, access keys, tenants with their provisioning and deletion jobs).

A reconciled row holds its *desired state* and a `generation` that every change the cluster must
follow bumps (`Controller.bump`). A `Controller` — one per model, registered by its model label —
makes the cluster match, and says what it saw as *conditions*, Kubernetes-style: a type (`Ready`,
`Removed`), a status (`True`/`False`), a reason in CamelCase, a message, the generation it
concerns and when its status last changed. The row's `status` (the word pages and the API show and
filter on) is never written by hand: `Controller.record` sets conditions, derives the status from
them with the controller's `derive`, writes both only if something changed, and adds a row to the
model's history when the status or its message changed. A write guarded by `only_generation`
lands only if nobody changed the row since the pass read it (a stale pass never marks a newer
generation ready).

One task runs every controller: `reconcile_object(label, pk, schema, failures)`, with the
model's label, the row's key and the schema it lives in, captured by `enqueue` when the work is
asked for (not when the transaction commits: that may happen in another schema). The task runs
`Controller.run`, which holds the row's lock (a PostgreSQL advisory lock, one reconcile per object
across workers; the periodic pass goes through `run` too), and retries by one policy
(portal.retries): another worker holding the lock (`locks.Busy`) or work under way
(`retries.NotDoneYet`, e.g. a namespace still terminating) come back after
`PIER_NAMESPACE_POLL_SECONDS` without spending the failure budget; a failure is recorded on the
row (`Controller.failed`) and retried with backoff below the broker's redelivery timeout; a
failure while recording it is logged and the retry still goes out. Effects are idempotent
(server-side apply, a 404 on delete is success, the generation guard), so a task delivered twice
changes nothing the second time.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar

from celery import shared_task
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context, tenant_context

from portal import audit, locks, retries

log = logging.getLogger(__name__)

REGISTRY: dict[str, Controller] = {}


def register(cls: type[Controller]) -> type[Controller]:
    """Class decorator: the controller answers for its model's label from now on."""
    REGISTRY[cls.model._meta.label_lower] = cls()
    return cls


def controller_for(label: str) -> Controller:
    try:
        return REGISTRY[label]
    except KeyError:
        raise LookupError(f"no controller is registered for {label!r}") from None


def enqueue(obj_or_label: models.Model | str, pk: Any = None, *, schema: str | None = None) -> None:
    """Reconcile the row after the current transaction commits (at once outside one), in the
    schema named now (`schema`, or the connection's current one)."""
    if isinstance(obj_or_label, models.Model):
        label, pk = obj_or_label._meta.label_lower, obj_or_label.pk
    else:
        label = obj_or_label
    controller_for(label)  # a typo fails here, in the request, not in the worker
    schema = schema or connection.schema_name
    transaction.on_commit(lambda: reconcile_object.apply_async(args=[label, pk, schema],
                                                               headers={"_schema_name": schema}))


# --- Conditions ------------------------------------------------------------------------------


TRUE, FALSE = "True", "False"


def condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def with_condition(conditions: list[dict], kind: str, status: str, reason: str, message: str = "", *,
                   generation: int) -> list[dict]:
    """The conditions with `kind` set (a new list; the same list if nothing changes).
    lastTransitionTime moves only when the status changes, as in Kubernetes."""
    current = condition(conditions, kind)
    new = {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": generation}
    if current is not None and {k: current.get(k) for k in new} == new:
        return conditions
    changed_at = (current or {}).get("lastTransitionTime") if current and current.get("status") == status else None
    new["lastTransitionTime"] = changed_at or timezone.now().isoformat(timespec="seconds")
    return [*(c for c in conditions or () if c.get("type") != kind), new]


class Reconciled(models.Model):
    """What every reconciled model holds: the generation its desired state is at, the one the
    cluster was last made to match, and the conditions the controller recorded."""

    generation = models.PositiveIntegerField(default=1)
    observed_generation = models.PositiveIntegerField(default=0)
    conditions = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        abstract = True


# --- The controller base --------------------------------------------------------------------


class Controller:
    """Subclasses set `model` (and, if the model has them, the fields `derive` fills) and
    implement `reconcile(pk, **context)`, `derive(obj)`, `failed(pk, exc, final=…)`."""

    model: ClassVar[type[models.Model]]
    # Settings naming the failure budget and the backoff base (portal.retries.backoff).
    max_failures_setting: ClassVar[str] = "PIER_PROJECT_MAX_RETRIES"
    backoff_setting: ClassVar[str] = "PIER_PROJECT_BACKOFF"
    # The row's fields `derive` returns a value for ({"status": …, "status_message": …}).
    derived_fields: ClassVar[tuple[str, ...]] = ("status", "status_message")

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def max_failures(self) -> int:
        return getattr(settings, self.max_failures_setting)

    @property
    def backoff_base(self) -> float:
        return getattr(settings, self.backoff_setting)

    # -- what subclasses say --

    def reconcile(self, pk: Any, **context) -> Any:
        raise NotImplementedError

    def derive(self, obj) -> dict[str, Any]:
        """The derived fields from the row's conditions and desired state."""
        raise NotImplementedError

    def failed(self, pk: Any, exc: Exception, *, final: bool) -> bool:
        """Record a failed attempt on the row; True if it should be retried."""
        raise NotImplementedError

    def waiting(self, pk: Any, what: str) -> None:
        """Work under way (NotDoneYet): note it on the row if the controller shows waits."""

    def history(self, obj, fields: dict[str, Any], text: str) -> None:
        """A transition to keep in the row's history (the status or its message changed)."""

    def lock_key(self, pk: Any) -> tuple:
        return (self.label, connection.schema_name, pk)

    def while_removed(self, obj, status: str) -> dict[str, str] | None:
        """For `derive`: once a deletion is asked for (`deletion_requested_at`), `status` with the
        `Removed` condition's message; None otherwise."""
        if getattr(obj, "deletion_requested_at", None) is None:
            return None
        removed = condition(obj.conditions, "Removed")
        return {"status": status, "status_message": removed["message"] if removed else ""}

    # -- what the kernel does --

    def run(self, pk: Any, **context) -> Any:
        """Reconcile the row under its lock; raises locks.Busy at once if another worker holds it."""
        with locks.held(*self.lock_key(pk)):
            return self.reconcile(pk, **context)

    def record(self, obj, kind: str | None = None, status: str = "", reason: str = "", message: str = "", *,
               only_generation: int | None = None, **fields) -> bool:
        """Set one condition (`kind`…) and `fields` on the row, derive its status, and write it all
        only if something changed; with `only_generation`, only if the row is still at that
        generation. A history entry (the condition's message) is added when a derived field
        changed. Returns True if the row was written."""
        conditions = obj.conditions
        if kind is not None:
            conditions = with_condition(conditions, kind, status, reason, message,
                                        generation=obj.generation if only_generation is None else only_generation)
        before = {f: getattr(obj, f) for f in self.derived_fields}
        changes = {k: v for k, v in fields.items() if getattr(obj, k) != v}
        if conditions is not obj.conditions:
            changes["conditions"] = conditions
        saved = {k: getattr(obj, k) for k in changes}
        for key, value in changes.items():
            setattr(obj, key, value)
        derived = self.derive(obj)
        changes.update({k: v for k, v in derived.items() if before[k] != v})  # a stale stored status heals too
        if not changes:
            return False
        saved.update({k: before[k] for k in derived if k in changes})
        with transaction.atomic():
            rows = self.model.objects.filter(pk=obj.pk)
            if only_generation is not None:
                rows = rows.filter(generation=only_generation)
            if hasattr(self.model, "updated_at"):
                changes["updated_at"] = timezone.now()
            if not rows.update(**changes):
                for key, value in saved.items():  # changed meanwhile: its own reconcile follows
                    setattr(obj, key, value)
                return False
            for key, value in changes.items():
                setattr(obj, key, value)
            if any(before[k] != getattr(obj, k) for k in self.derived_fields):
                self.history(obj, derived, message)
        return True

    def bump(self, rows: models.QuerySet) -> list[Any]:
        """The desired state of `rows` changed: a new generation each, the status derived again
        (the cluster has not followed yet), and a reconcile enqueued after the commit. Returns
        the keys bumped."""
        ids = list(rows.values_list("pk", flat=True))
        if not ids:
            return []
        self.model.objects.filter(pk__in=ids).update(generation=F("generation") + 1)
        if self.derived_fields:
            objs = list(self.model.objects.filter(pk__in=ids))
            for obj in objs:
                for key, value in self.derive(obj).items():
                    setattr(obj, key, value)
            self.model.objects.bulk_update(objs, list(self.derived_fields))
        for pk in ids:
            enqueue(self.label, pk)
        return ids


# --- The one task -----------------------------------------------------------------------------


@contextlib.contextmanager
def _in_schema(schema: str):
    """The schema the work was enqueued in, with its tenant (controllers read connection.tenant);
    yields False if that tenant is gone (and its rows with it)."""
    if schema == get_public_schema_name():
        with schema_context(schema):
            yield True
        return
    tenant = get_tenant_model().objects.filter(schema_name=schema).first()
    if tenant is None:
        yield False
        return
    with tenant_context(tenant):
        yield True


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def reconcile_object(self, label: str, pk: Any, schema: str, failures: int = 0) -> None:
    """Reconcile one row of `label` in `schema`. `failures` counts failed attempts only: waiting
    for another worker or for work under way is not one."""
    ctl = controller_for(label)
    args = [label, pk, schema]
    with audit.source("task"), _in_schema(schema) as present:
        if not present:
            log.info("%s %s: schema %s is gone; nothing to reconcile", label, pk, schema)
            return
        try:
            ctl.run(pk)
        except locks.Busy:  # another worker is on it, maybe with older data: come back after it
            raise self.retry(args=args, kwargs={"failures": failures}, countdown=settings.PIER_NAMESPACE_POLL_SECONDS)
        except retries.NotDoneYet as exc:  # under way (a namespace terminating): a wait, not a failure
            _note(ctl.waiting, label, pk, str(exc))
            raise self.retry(args=args, kwargs={"failures": failures},
                             countdown=settings.PIER_NAMESPACE_POLL_SECONDS) from exc
        except Exception as exc:  # a cluster fault, a conflict, a failed step: show it, retry with backoff
            final = failures >= ctl.max_failures
            again = _note(ctl.failed, label, pk, exc, final=final, default=True)
            if not again:
                log.warning("%s %s: not retried after %s failed attempts: %s", label, pk, failures, exc)
                return
            raise self.retry(args=args, kwargs={"failures": failures + 1},
                             countdown=retries.backoff(failures, base=ctl.backoff_base), exc=exc) from exc


def _note(record, label: str, pk: Any, *args, default: Any = None, **kwargs) -> Any:
    """Bookkeeping before a retry: if it fails (the database went away), the retry still goes
    out; the periodic pass is the net for what it did not record."""
    try:
        return record(pk, *args, **kwargs)
    except Exception:
        log.exception("%s %s: could not record the attempt; retrying anyway", label, pk)
        return default
