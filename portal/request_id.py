"""One id per request: returned in `X-Request-ID`, put on log lines, carried into Celery tasks
(a message header) and written on audit rows."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

HEADER = "X-Request-ID"
CELERY_HEADER = "pier_request_id"
_current: contextvars.ContextVar[str] = contextvars.ContextVar("pier_request_id", default="")
# An id handed in by a trusted proxy is kept if it looks like one; anything else is replaced.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def get() -> str:
    return _current.get()


def new_id() -> str:
    return uuid.uuid4().hex


def set_current(value: str) -> contextvars.Token:
    return _current.set(value)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings

        incoming = request.headers.get(HEADER, "") if settings.PIER_TRUST_REQUEST_ID else ""
        rid = incoming if _ACCEPTABLE.match(incoming) else new_id()
        token = _current.set(rid)
        request.request_id = rid
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = rid
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    @before_task_publish.connect(weak=False, dispatch_uid="pier_request_id_publish")
    def _publish(headers=None, **kwargs):
        if headers is not None and _current.get():
            headers.setdefault(CELERY_HEADER, _current.get())

    @task_prerun.connect(weak=False, dispatch_uid="pier_request_id_prerun")
    def _prerun(task=None, **kwargs):
        request = task.request
        rid = (request.headers or {}).get(CELERY_HEADER) if request.headers else None
        rid = rid or request.get(CELERY_HEADER) or f"task-{request.id}"
        # On the task's request (one per execution), not on the task object shared by threads.
        request.pier_request_id_token = _current.set(rid)

    @task_postrun.connect(weak=False, dispatch_uid="pier_request_id_postrun")
    def _postrun(task=None, **kwargs):
        token = getattr(task.request, "pier_request_id_token", None)
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # set in another context (eager calls nested in a request)
                _current.set("")
            task.request.pier_request_id_token = None
