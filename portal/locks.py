"""PostgreSQL advisory locks named by a few parts ("tenant-job", 42): one worker at a time per
object, across processes and machines sharing the database."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

from django.db import connection


class Busy(Exception):
    """Someone else holds the lock."""


def key(*parts: object) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def xact_lock(*parts: object) -> None:
    """Wait for the lock; it is released when the current transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key(*parts)])


def try_xact_lock(*parts: object) -> bool:
    """Take the lock for the current transaction if nobody holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key(*parts)])
        return bool(cursor.fetchone()[0])


@contextmanager
def held(*parts: object):
    """A session-level lock around work that spans transactions (e.g. calls to the cluster);
    raises Busy at once if another session holds it. A crashed holder's connection closes, which
    releases it."""
    lock = key(*parts)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
        if not cursor.fetchone()[0]:
            raise Busy("/".join(map(str, parts)))
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
