"""One retry policy for every task that retries (tenant jobs, project reconciles, invitation mail).

`backoff(failures, base=…)` doubles from `base` seconds and stops at `PIER_MAX_BACKOFF`, which stays
below the broker's redelivery timeout: Redis redelivers a message not acknowledged within its
visibility timeout, so a countdown at or past it would be delivered twice.

`NotDoneYet` is raised by work that is under way but not finished (a namespace still emptying):
the task comes back after `PIER_NAMESPACE_POLL_SECONDS` and the wait is not counted as a failure.
"""

from __future__ import annotations

from django.conf import settings


class NotDoneYet(Exception):
    """Under way, not finished: try again soon; not a failure."""


def backoff(failures: int, *, base: float) -> float:
    return min(base * (2 ** max(failures, 0)), settings.PIER_MAX_BACKOFF)
