"""The emulator's clock: real time, plus however far tests have moved it forward.

Everything in the emulated cluster that depends on time reads this clock: timestamps in object
metadata, when a terminating namespace is purged, and when a service-account token expires. So
a test that needs an hour to pass calls `KubeEmulator.advance_clock(3600)` instead of sleeping,
and every one of those moves together, as they would on a real cluster an hour later.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def rfc3339(seconds: float) -> str:
    """A metav1.Time as the API server writes it: UTC, whole seconds."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def time(self) -> float:
        """Wall-clock time, in seconds since the epoch."""
        return time.time() + self._offset

    def monotonic(self) -> float:
        """For deadlines: never goes back, except on `reset`."""
        return time.monotonic() + self._offset

    def timestamp(self) -> str:
        """Now, as an RFC 3339 timestamp (`creationTimestamp`, `deletionTimestamp`)."""
        return rfc3339(self.time())

    def advance(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError("the clock only moves forward: seconds must be a number ≥ 0")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._offset = 0.0
