"""What people and keys do with sessions: start, stop, delete, clone. Pages and API call these;
the controller (sessions/controller.py) does the cluster work after the commit.

Who may do what: viewers read (logs too); editors start, stop and clone; admins delete. A person
stops only the sessions they started unless they are a project admin; a key stops the sessions it
started, or any with the admin role. Every action is audited with the session's name.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from portal import audit, controller, kube
from portal.errors import Conflict, Forbidden, InvalidInput, Refusals, Unavailable
from sessions import cluster, limits
from sessions.controller import QUEUED, SESSIONS
from sessions.models import AgenticSession, RunnerSecret
from tenants.models import Tenant
from tenants.projects import config
from tenants.projects.access import Access
from tenants.projects.models import Project

MAX_PROMPT = 100_000
MAX_REPOS = 20
MAX_ENV = 50
MIN_TIMEOUT = config.MINIMUMS["sessions.max_timeout"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_BRANCH = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<!/)$")
_REPO_URL = re.compile(r"^(https|ssh|git)://[^\s]{1,2000}$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]{1,2000}$")
# The user part of a URL (before the host): a password or token there would be stored in the
# spec, which every viewer reads; credentials belong in the runner secret (GIT_TOKEN).
_URL_USERINFO = re.compile(r"^[a-z]+://([^/@]*)@")


def _refuse(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details={field: [message]})


def _text(value: Any, field: str, *, limit: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _refuse(field, "give text.")
    value = value.strip() if field != "prompt" else value
    if required and not value.strip():
        raise _refuse(field, "this field is required.")
    if len(value) > limit:
        raise _refuse(field, f"at most {limit} characters.")
    if "\x00" in value:
        raise _refuse(field, "NUL characters are not allowed.")
    return value


def _temperature(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise _refuse("llm.temperature", "give a number from 0 to 2.")
    return float(value)


def _max_tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise _refuse("llm.max_tokens", "give a whole number from 1 to 1000000.")
    return value


def clean_llm(value: Any) -> dict:
    """The API's {model, temperature, max_tokens} as the custom resource spells it (maxTokens)."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise _refuse("llm", "give an object with model, temperature, max_tokens.")
    unknown = set(value) - {"model", "temperature", "max_tokens"}
    if unknown:
        raise _refuse("llm", f"unknown key(s): {', '.join(sorted(map(str, unknown)))[:200]}.")
    refusals, out = Refusals(), {}
    for key, name, clean in (("model", "model", lambda v: _text(v, "llm.model", limit=200)),
                             ("temperature", "temperature", _temperature), ("max_tokens", "maxTokens", _max_tokens)):
        if value.get(key) not in (None, ""):
            out[name] = refusals.check(clean, value[key])
    refusals.raise_any()
    return out


def api_llm(stored: dict) -> dict:
    """A stored llm (the custom resource's spelling) as the API spells it."""
    return {("max_tokens" if k == "maxTokens" else k): v for k, v in (stored or {}).items()}


def clean_timeout(value: Any, project: Project, tenant: Tenant) -> int:
    longest = limits.max_timeout(project, tenant)
    if value in (None, ""):
        return min(settings.PIER_SESSION_DEFAULT_TIMEOUT, longest)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse("timeout_seconds", f"give a whole number of seconds from {MIN_TIMEOUT} to {longest}.")
    if not MIN_TIMEOUT <= value <= longest:
        raise _refuse("timeout_seconds", f"give {MIN_TIMEOUT} to {longest} seconds (the maximum here is {longest}).")
    return value


def _repo(i: int, repo: Any) -> dict:
    if isinstance(repo, dict) and set(repo) - {"url", "branch"}:
        raise _refuse(f"repos[{i}]", "give only url and branch.")
    if not isinstance(repo, dict) or not isinstance(repo.get("url"), str) or not _REPO_URL.match(repo["url"]):
        raise _refuse(f"repos[{i}].url", "give a git URL (https://, ssh://, git:// or user@host:path).")
    userinfo = _URL_USERINFO.match(repo["url"])
    if userinfo and (":" in userinfo.group(1) or repo["url"].startswith("https://")):
        raise _refuse(f"repos[{i}].url", "give the URL without credentials: put a token in the project's runner "
                                        "secret (GIT_TOKEN), which viewers cannot read.")
    entry = {"url": repo["url"]}
    branch = repo.get("branch")
    if branch not in (None, ""):
        if not isinstance(branch, str) or not _BRANCH.match(branch):
            raise _refuse(f"repos[{i}].branch", "give a branch name (letters, digits, . _ - /).")
        entry["branch"] = branch
    return entry


def clean_repos(value: Any) -> list[dict]:
    """Every bad entry is named (repos[2].url), not only the first."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > MAX_REPOS:
        raise _refuse("repos", f"give a list of at most {MAX_REPOS} repositories.")
    refusals = Refusals()
    out = [refusals.check(_repo, i, repo) for i, repo in enumerate(value)]
    refusals.raise_any()
    return out


def _variable(i: int, item: Any, seen: set[str]) -> dict:
    if isinstance(item, dict) and set(item) - {"name", "value"}:
        raise _refuse(f"env[{i}]", "give only name and value.")
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise _refuse(f"env[{i}].name", "give a variable name (letters, digits, _; not starting with a digit).")
    if name.upper().startswith("PIER_"):
        raise _refuse(f"env[{i}].name", "names starting with PIER_ are Pier's.")
    if name in seen:
        raise _refuse(f"env[{i}].name", f"{name} is given twice.")
    seen.add(name)
    return {"name": name, "value": _text(item.get("value", ""), f"env[{i}].value", limit=32_768)}


def clean_env(value: Any) -> list[dict]:
    """Every bad variable is named (env[1].name), not only the first."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > MAX_ENV:
        raise _refuse("env", f"give a list of at most {MAX_ENV} variables.")
    refusals, seen = Refusals(), set()
    out = [refusals.check(_variable, i, item, seen) for i, item in enumerate(value)]
    refusals.raise_any()
    return out


def new_name(base: str) -> str:
    """A DNS label unique enough to try: a few words of the title and a random suffix."""
    stem = slugify(base)[:24].strip("-") or "session"
    if not stem[0].isalpha():
        stem = f"s-{stem}"[:24].strip("-")
    return f"{stem}-{secrets.token_hex(3)}"


def _who(acting_user) -> tuple[str, str]:
    if getattr(acting_user, "is_access_key", False):
        return "key", acting_user.key.name
    return "user", acting_user.get_username()


def _creator(acting_user):
    """The person a session belongs to: the caller, or the person who issued the calling key."""
    return acting_user.key.created_by if getattr(acting_user, "is_access_key", False) else acting_user


def _require_startable(tenant: Tenant, project: Project) -> None:
    if tenant.status == Tenant.Status.SUSPENDED:
        raise Conflict("The organization is suspended; no session can start.", code="tenant_suspended")
    if project.deletion_requested_at is not None or project.observed_generation == 0:
        raise Conflict(f"The project '{project.slug}' is {project.status}; sessions need its namespace.",
                       code="invalid_state")


def _digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def clean_session_fields(*, tenant: Tenant, project: Project, prompt: Any = None, display_name: Any = "",
                         llm: Any = None, timeout_seconds: Any = None, repos: Any = None, env: Any = None) -> dict:
    """A new session's fields, checked: one InvalidInput naming every bad field (and entry)."""
    refusals = Refusals()
    fields = {
        "prompt": refusals.check(_text, prompt, "prompt", limit=MAX_PROMPT, required=True),
        "display_name": refusals.check(_text, display_name, "display_name", limit=200),
        "llm": refusals.check(clean_llm, llm),
        "timeout_seconds": refusals.check(clean_timeout, timeout_seconds, project, tenant),
        "repos": refusals.check(clean_repos, repos),
        "env": refusals.check(clean_env, env),
    }
    refusals.raise_any()
    return fields


def session_create(*, tenant: Tenant, project: Project, acting_user, access: Access, prompt: Any,
                   display_name: Any = "", llm: Any = None, timeout_seconds: Any = None, repos: Any = None,
                   env: Any = None, idempotency_key: str = "", cloned_from: str = "") -> tuple[AgenticSession, bool]:
    """A new session (enqueued to start after the commit). Returns (session, created): with an
    `idempotency_key` the caller used before for the same request, the first session and False."""
    access.require("edit", project=project)
    fields = clean_session_fields(tenant=tenant, project=project, prompt=prompt, display_name=display_name, llm=llm,
                                  timeout_seconds=timeout_seconds, repos=repos, env=env)
    kind, name = _who(acting_user)
    key = _text(idempotency_key, "Idempotency-Key", limit=255)
    caller = f"{kind}:{acting_user.key.pk if kind == 'key' else acting_user.pk}" if key else ""
    digest = _digest({**fields, "project": project.pk}) if key else ""
    if key:
        earlier = AgenticSession.objects.filter(idempotency_caller=caller, idempotency_key=key).first()
        if earlier is not None:
            return _replayed(earlier, digest)
    _require_startable(tenant, project)
    for _attempt in range(5):
        try:
            with transaction.atomic():
                session = AgenticSession.objects.create(
                    project=project, name=new_name(fields["display_name"] or fields["prompt"]), **fields,
                    created_by=_creator(acting_user), created_by_kind=kind, created_by_name=name,
                    created_by_key=acting_user.key if kind == "key" else None,
                    idempotency_key=key, idempotency_caller=caller, idempotency_digest=digest, cloned_from=cloned_from,
                    reason=QUEUED[0], message=QUEUED[1],
                )
                session.project = project
                audit.record(action="session.create", actor=acting_user, tenant=tenant, target_type="session",
                             target=f"{project.slug}/{session.name}",
                             details={"timeout_seconds": session.timeout_seconds, "started_by": f"{kind} {name}",
                                      **({"cloned_from": cloned_from} if cloned_from else {})})
                controller.enqueue(session)
            return session, True
        except IntegrityError:
            if key:
                earlier = AgenticSession.objects.filter(idempotency_caller=caller, idempotency_key=key).first()
                if earlier is not None:  # a concurrent retry of the same request won
                    return _replayed(earlier, digest)
            continue  # the random name was taken: draw another
    raise Conflict("Could not find a free session name; try again.", code="name_exhausted")


def _replayed(earlier: AgenticSession, digest: str) -> tuple[AgenticSession, bool]:
    if earlier.idempotency_digest != digest:
        raise Conflict("Idempotency-Key: this key was used for a different request.", code="idempotency_key_reused",
                       details={"Idempotency-Key": ["Used for a different request."]})
    return earlier, False


def may_stop(session: AgenticSession, acting_user, access: Access) -> bool:
    if access.role == "admin":
        return True
    if getattr(acting_user, "is_access_key", False):
        return session.created_by_key_id == acting_user.key.pk
    return session.created_by_kind == "user" and session.created_by_id == acting_user.pk


def session_stop(*, tenant: Tenant, project: Project, session: AgenticSession, acting_user,
                 access: Access) -> AgenticSession:
    access.require("edit", project=project)
    if not may_stop(session, acting_user, access):
        raise Forbidden(f"Only whoever started '{session.name}' or a project admin may stop it.")
    with transaction.atomic():
        session = AgenticSession.objects.select_for_update().get(pk=session.pk)
        if session.is_finished:
            raise Conflict(f"The session '{session.name}' has already finished ({session.phase}).",
                           code="invalid_state")
        if session.stop_requested_at is not None:
            return session
        kind, name = _who(acting_user)
        session.stop_requested_at = timezone.now()
        session.stop_reason = "StoppedByUser"
        session.stopped_by = f"{kind} {name}" if kind == "key" else name
        session.save(update_fields=["stop_requested_at", "stop_reason", "stopped_by"])
        audit.record(action="session.stop", actor=acting_user, tenant=tenant, target_type="session",
                     target=f"{project.slug}/{session.name}", details={"phase": session.phase})
        _bump(session)
    return session


def session_delete(*, tenant: Tenant, project: Project, session: AgenticSession, acting_user,
                   access: Access) -> None:
    access.require("delete", project=project)
    with transaction.atomic():
        session = AgenticSession.objects.select_for_update().get(pk=session.pk)
        if session.deletion_requested_at is not None:
            return
        session.deletion_requested_at = timezone.now()
        session.save(update_fields=["deletion_requested_at"])
        audit.record(action="session.delete", actor=acting_user, tenant=tenant, target_type="session",
                     target=f"{project.slug}/{session.name}", details={"phase": session.phase})
        _bump(session)


def session_clone(*, tenant: Tenant, source: AgenticSession, target: Project, acting_user, access: Access,
                  idempotency_key: str = "") -> tuple[AgenticSession, bool]:
    """A new session with the source's spec, in `target` (this project or another the caller may
    edit; `access` is the caller's access to `target`). The name is new, so nothing clashes."""
    return session_create(
        tenant=tenant, project=target, acting_user=acting_user, access=access, prompt=source.prompt,
        display_name=source.display_name, llm=api_llm(source.llm), timeout_seconds=min(source.timeout_seconds, limits.max_timeout(target, tenant)),
        repos=source.repos, env=source.env, idempotency_key=idempotency_key,
        cloned_from=f"{source.project.slug}/{source.name}")


def _bump(session: AgenticSession) -> None:
    SESSIONS.bump(AgenticSession.objects.filter(pk=session.pk))


MAX_SECRET_KEYS = 50
MAX_SECRET_BYTES = 256 * 1024


def clean_secret_data(data: Any) -> dict[str, str]:
    """{NAME: value}: environment variable names, text values. Messages name keys, never values."""
    if not isinstance(data, dict) or not data:
        raise _refuse("data", "give an object of one or more {NAME: value}.")
    if len(data) > MAX_SECRET_KEYS:
        raise _refuse("data", f"at most {MAX_SECRET_KEYS} keys.")
    total = 0
    for number, (name, value) in enumerate(data.items(), start=1):
        if not isinstance(name, str) or not _ENV_NAME.match(name) or name.upper().startswith("PIER_"):
            # Named by its place, never echoed: a pasted value can end up where a name belongs.
            raise _refuse("data", f"key number {number} (in the order given) is not a usable variable name "
                                  "(a letter or _, then letters, digits or _; not PIER_*).")
        if not isinstance(value, str) or "\x00" in value:
            raise _refuse(f"data.{name}", "give the value as text (a string, without NUL characters).")
        total += len(value.encode())
    if total > MAX_SECRET_BYTES:
        raise _refuse("data", f"at most {MAX_SECRET_BYTES} bytes in all.")
    return dict(sorted(data.items()))


def runner_secret_put(*, tenant: Tenant, project: Project, acting_user, access: Access, data: Any) -> RunnerSecret:
    """Replace the project's runner secret (the keys not given are removed). Written to the cluster
    in the request (a short timeout): on failure nothing changed, 503."""
    access.require("configure", project=project)
    data = clean_secret_data(data)
    if project.deletion_requested_at is not None or project.observed_generation == 0:
        raise Conflict(f"The project '{project.slug}' is {project.status}; its secret needs the namespace.",
                       code="invalid_state")
    kind, name = _who(acting_user)
    with transaction.atomic():
        row = RunnerSecret.objects.select_for_update().filter(project=project).first()
        try:
            with kube.in_request():
                cluster.write_runner_secret(project, data, tenant_slug=tenant.slug)
        except kube.KubeUnavailable as exc:
            raise Unavailable(f"The cluster did not answer in time; the secret was not changed. ({exc})",
                              code="cluster_unavailable")
        except kube.KubeError as exc:
            raise Unavailable(f"The cluster refused the secret; it was not changed. ({exc.reason or exc.status})",
                              code="cluster_refused")
        row = row or RunnerSecret(project=project)
        row.keys, row.updated_at, row.updated_by = list(data), timezone.now(), f"{kind} {name}" if kind == "key" else name
        row.save()
        audit.record(action="project.runner_secret", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"keys": list(data)})
    return row


def runner_secret_delete(*, tenant: Tenant, project: Project, acting_user, access: Access) -> None:
    access.require("configure", project=project)
    with transaction.atomic():
        RunnerSecret.objects.select_for_update().filter(project=project).first()
        try:
            with kube.in_request():
                kube.delete("Secret", cluster.RUNNER_SECRET, project.namespace)
        except kube.KubeError as exc:
            raise Unavailable(f"The cluster did not answer in time; the secret was not removed. ({exc.status})",
                              code="cluster_unavailable")
        RunnerSecret.objects.filter(project=project).delete()
        audit.record(action="project.runner_secret_delete", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug)
