"""Switchable faults, for tests and demonstrations of failure handling.

A fault is armed in the shared cache, so a test can arm it for a worker running in another
process. `check(name)` raises while the fault is armed. Disabled unless PIER_FAULT_INJECTION is on
(it is off in production by default).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


class InjectedFault(RuntimeError):
    pass


def _key(name: str) -> str:
    return f"fault:{name}"


def arm(name: str, *, times: int = -1, message: str = "injected fault") -> None:
    """Make `check(name)` fail `times` times (-1: until disarmed)."""
    cache.set(_key(name), {"remaining": times, "message": message}, timeout=3600)


def disarm(name: str) -> None:
    cache.delete(_key(name))


def check(name: str) -> None:
    if not settings.PIER_FAULT_INJECTION:
        return
    fault = cache.get(_key(name))
    if not fault:
        return
    if fault["remaining"] == 0:
        return
    if fault["remaining"] > 0:
        fault["remaining"] -= 1
        cache.set(_key(name), fault, timeout=3600)
    raise InjectedFault(f"{fault['message']} ({name})")
