"""Reads for pages and API: sessions a caller may see, and a session's log."""

from __future__ import annotations

from portal import kube
from portal.errors import Unavailable
from sessions.controller import runner_log
from sessions.models import AgenticSession


def sessions_of(project):
    return (AgenticSession.objects.filter(project=project, deletion_requested_at__isnull=True)
            .select_related("project").order_by("-created_at", "-id"))


def log_of(session: AgenticSession, *, tail: int | None = None) -> dict:
    """While the runner runs, its log live from the cluster: one call, to the pod the controller
    pinned, with the in-request timeout (503 if the cluster does not answer); afterwards, or before
    the controller saw the pod, Pier's captured copy. `tail`: the last lines only."""
    source, text, truncated = "captured", session.log, session.log_truncated
    if session.phase == AgenticSession.Phase.RUNNING and session.runner_pod_name:
        try:
            with kube.in_request():
                text, truncated = runner_log(session.project.namespace, session.runner_pod_name, tail=tail)
            source = "live"
        except kube.KubeUnavailable as exc:
            raise Unavailable(f"The cluster did not answer in time; try again. ({exc})", code="cluster_unavailable")
        except kube.KubeError as exc:
            if exc.status != 404:  # the pod went meanwhile: the captured copy is the answer
                raise Unavailable(f"The cluster refused to show the log. ({exc})", code="cluster_refused")
    if tail is not None and source == "captured":
        text = "\n".join(text.splitlines()[-tail:]) if tail else ""
    return {"source": source, "text": text, "truncated": truncated}
