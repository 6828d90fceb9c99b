"""The Celery app of the cycle benchmark's worker (`celery -A bench.cycle_worker worker`): Pier's own
app (portal.celery.app, with every task of Pier's), plus two signal handlers that time each task.

When a task ends, one JSON line is pushed onto a Redis list (PIER_BENCH_TIMINGS_URL, key
PIER_BENCH_TIMINGS_KEY): its name, start and end (time.time(), comparable with the benchmark
process's clock on the same machine), final state, and the SQL statements and writes
(INSERT/UPDATE/DELETE) it ran, counted by an execute wrapper on the connection while it runs.
Pier's code is not changed: only the worker that bench/cycle.py starts has these handlers.
"""

from __future__ import annotations

import json
import os
import time

from celery.signals import task_postrun, task_prerun, task_revoked

from portal.celery import app

__all__ = ["app"]

SQL_WRITES = ("INSERT", "UPDATE", "DELETE")

_running: dict[str, dict] = {}
_redis = None  # made in each pool process on its first task (a connection must not cross a fork)


def _timings():
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ["PIER_BENCH_TIMINGS_URL"])
    return _redis


class _Counter:
    def __init__(self):
        self.statements = self.writes = 0

    def __call__(self, execute, sql, params, many, context):
        self.statements += 1
        self.writes += sql.lstrip().split(None, 1)[0].upper() in SQL_WRITES
        return execute(sql, params, many, context)


@task_prerun.connect
def _task_started(task_id=None, **_):
    from django.db import connection

    counter = _Counter()
    connection.execute_wrappers.append(counter)
    _running[task_id] = {"start": time.time(), "sql": counter}


@task_postrun.connect
def _task_ended(task_id=None, task=None, state=None, **_):
    from django.db import connection

    end = time.time()
    running = _running.pop(task_id, {"start": end, "sql": _Counter()})
    counter = running["sql"]
    if counter in connection.execute_wrappers:
        connection.execute_wrappers.remove(counter)
    record = {"task": task.name, "start": running["start"], "end": end, "state": state,
              "sql": counter.statements, "sql_writes": counter.writes}
    _timings().rpush(os.environ["PIER_BENCH_TIMINGS_KEY"], json.dumps(record))


@task_revoked.connect
def _task_dropped(request=None, expired=False, **_):
    """A copy beat sent that was not started within its `expires` (one interval): the worker drops
    it, and the next cycle does that work. Counted, so a cycle slower than the interval shows."""
    now = time.time()
    name = getattr(request, "task", None) or getattr(request, "name", "") or ""
    record = {"task": name, "start": now, "end": now, "state": "EXPIRED" if expired else "REVOKED", "sql": 0,
              "sql_writes": 0}
    _timings().rpush(os.environ["PIER_BENCH_TIMINGS_KEY"], json.dumps(record))
