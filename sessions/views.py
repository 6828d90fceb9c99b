"""Sessions pages, under /t/<tenant>/projects/<project>/sessions: a project's sessions with the
start form, a session's page (status, settings, result, log, history, conditions) with stop, clone
and delete, and the fragments those pages poll while a session is under way (the project pages'
mechanism: htmx polls every 2 s, the server answers 286 once nothing will change)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone

from portal import kube
from portal.errors import Conflict, PierError, Unavailable
from portal.services import groups_of
from sessions import limits, selectors, services
from sessions.filtersets import SessionFilterSet
from sessions.forms import RunnerSecretForm, SessionCloneForm, SessionStartForm
from sessions.models import AgenticSession, RunnerSecret
from tenants.projects import selectors as project_selectors
from tenants.projects.access import project_access
from tenants.projects.views import ProjectPage

PAGE_SIZE = 25
TAILS = (100, 500, 2000)  # the log's "last N lines" choices; "all" is the whole kept log
DEFAULT_TAIL = 500
HISTORY = 200  # the newest history rows a page shows
STOP_POLLING = 286  # htmx: stop polling


def duration(s: AgenticSession) -> str:
    """How long it ran (runs, while it runs): "42 s", "3 min 5 s", "2 h 10 min"; "" before it started."""
    if s.start_time is None:
        return ""
    end = s.completion_time or (None if s.is_finished else timezone.now())
    if end is None:
        return ""
    seconds = max(0, int((end - s.start_time).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _shown(s: AgenticSession, tenant_slug: str) -> AgenticSession:
    """What the templates show besides the row's fields."""
    s.duration = duration(s)
    project, _, name = s.cloned_from.partition("/")
    s.cloned_from_url = reverse("sessions:detail", kwargs={"tenant_slug": tenant_slug, "project_slug": project,
                                                           "session_name": name}) if name else ""
    return s


def _tail(request) -> int | None:
    """The log's last N lines the page asks for (None: all that is kept)."""
    raw = request.GET.get("tail", "")
    if raw == "all":
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) > 0:
        return int(raw)
    return DEFAULT_TAIL


def _log(s: AgenticSession, tail: int | None) -> dict:
    """The log as selectors.log_of reads it; when the cluster does not answer, Pier's copy with
    why (the page keeps polling: the next answer may be live again)."""
    try:
        return selectors.log_of(s, tail=tail)
    except Unavailable as exc:
        text = s.log if tail is None else "\n".join(s.log.splitlines()[-tail:])
        return {"source": "captured", "text": text, "truncated": s.log_truncated, "problem": exc.message}


class SessionPage(ProjectPage):
    """Pages of one project's sessions. The project and the caller's access are resolved once (404
    if they may not see it), the session by its name among the project's (404 if it is not one of
    them or is being deleted); the services check the role each action needs."""

    def dispatch(self, request, *args, **kwargs):
        self._session = None
        return super().dispatch(request, *args, **kwargs)

    def get_session(self) -> AgenticSession:
        if self._session is None:
            rows = selectors.sessions_of(self.get_project()).select_related("created_by", "created_by_key")
            self._session = _shown(get_object_or_404(rows, name=self.kwargs["session_name"]), self.request.tenant.slug)
        return self._session

    def base_context(self) -> dict:
        return {"tenant": self.request.tenant, "project": self.get_project(), "access": self.access,
                "cluster": kube.cluster_label(), "simulated": settings.PIER_KUBE_SIMULATED}

    def summary_context(self) -> dict:
        """What the top of a session's page shows (it is also a polled fragment)."""
        s = self.get_session()
        # The service's own rule (who started it, or a project admin), so the button shows only
        # for people it would not refuse; the service checks it again.
        can_stop = (not s.is_finished and s.stop_requested_at is None and "edit" in self.access.actions
                    and services.may_stop(s, self.request.user, self.access))
        return {**self.base_context(), "s": s, "can_stop": can_stop}


class SessionListView(SessionPage):
    """A project's sessions (viewers), filtered by phase and by who started them (or by one key:
    ?key=<id>, from the keys page), and the start form (editors)."""

    audit_actions = {"POST": "session.create"}

    template_name = "sessions/list.html"

    def start_form(self, data=None) -> SessionStartForm:
        longest = limits.max_timeout(self.get_project(), self.request.tenant)
        return SessionStartForm(data, min_timeout=services.MIN_TIMEOUT, max_timeout=longest,
                                default_timeout=min(settings.PIER_SESSION_DEFAULT_TIMEOUT, longest))

    def key(self):
        raw = self.request.GET.get("key", "")
        if not raw:
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise Http404("No such key.")
        return get_object_or_404(self.get_project().keys, pk=int(raw))

    def get_context_data(self, form=None, secret_form=None, **extra):
        project = self.get_project()
        rows = selectors.sessions_of(project).select_related("created_by", "created_by_key")
        key = self.key()
        if key is not None:
            rows = rows.filter(created_by_key=key)
        filterset = SessionFilterSet(self.request.GET, queryset=rows)
        page = Paginator(filterset.qs, PAGE_SIZE).get_page(self.request.GET.get("page"))
        for s in page:
            _shown(s, self.request.tenant.slug)
        query = self.request.GET.copy()
        query.pop("page", None)
        cleaned = getattr(filterset.form, "cleaned_data", {})
        can_start = "edit" in self.access.actions
        return {
            **self.base_context(), "filter": filterset, "page": page, "query": query.urlencode(), "key": key,
            "filtered": bool(key or cleaned.get("phase") or cleaned.get("created_by")),
            "form": (form or self.start_form()) if can_start else None,
            "ready": project.observed_generation > 0 and project.deletion_requested_at is None,
            "secret": RunnerSecret.objects.filter(project=project).first(),
            "secret_form": (secret_form or RunnerSecretForm()) if "configure" in self.access.actions else None,
            **extra,
        }

    def get(self, request, tenant_slug, project_slug):
        return render(request, self.template_name, self.get_context_data())

    def post(self, request, tenant_slug, project_slug):
        project = self.get_project()
        self.access.require("edit", project=project)  # a viewer is refused before their input is read
        form = self.start_form(request.POST)
        if not form.is_valid():
            form.check_the_rest(functools.partial(services.clean_session_fields, tenant=request.tenant, project=project))
            return render(request, self.template_name, self.get_context_data(form=form), status=400)
        try:
            session, created = services.session_create(tenant=request.tenant, project=project,
                                                       acting_user=request.user, access=self.access,
                                                       **form.service_fields())
        except PierError as exc:
            if exc.code == "idempotency_key_reused":  # this form started a session before, saying other things
                form = self.start_form(form.with_new_key())
                form.is_valid()
                exc = Conflict("This form already started a session with other values. Check them and send it "
                               "again to start another.", code=exc.code)
            return self.refused(request, form.at_fields(exc), form=form)
        if created:
            messages.success(request, f"Session {session.name} is starting in namespace {project.namespace}.")
        else:
            messages.warning(request, f"This form was sent before: here is the session it started, {session.name}.")
        return redirect("sessions:detail", tenant_slug=request.tenant.slug, project_slug=project.slug,
                        session_name=session.name)


class SessionDetailView(SessionPage):
    template_name = "sessions/detail.html"

    def clone_targets(self) -> list:
        """Where the caller may clone to: this project, then the others they may edit."""
        project = self.get_project()
        targets = [project] if "edit" in self.access.actions else []
        if getattr(self.request.user, "is_access_key", False):
            return targets  # a key acts in its own project only
        groups = groups_of(self.request.user)
        others = (project_selectors.projects_for(self.request).filter(deletion_requested_at__isnull=True)
                  .exclude(pk=project.pk).prefetch_related("grants"))
        for other in others:
            access = project_access(other, user=self.request.user, tenant_role=self.request.tenant_role, groups=groups)
            if "edit" in access.actions:
                targets.append(other)
        return targets

    def clone_form(self, data=None) -> SessionCloneForm:
        return SessionCloneForm(data, projects=self.clone_targets(), initial={"project": self.get_project().slug})

    def get_context_data(self, clone_form=None, **extra):
        s = self.get_session()
        tail = _tail(self.request)
        clone_form = clone_form or self.clone_form()
        return {
            **self.summary_context(), "log": _log(s, tail), "tail": tail, "tails": TAILS,
            "events": s.events.all()[:HISTORY], "clone_form": clone_form,
            "can_clone": bool(clone_form.fields["project"].choices), "can_delete": "delete" in self.access.actions,
            **extra,
        }

    def get(self, request, tenant_slug, project_slug, session_name):
        return render(request, self.template_name, self.get_context_data())


class SessionStatusView(SessionPage):
    """The fragments the pages poll: a session's badge (default), its row of the list (?part=row)
    or the top of its page with its history and conditions (?part=summary); 286 (htmx: stop
    polling) once it has finished, or is gone."""

    PARTS = {"row": "sessions/_row.html", "summary": "sessions/_summary.html"}

    def get(self, request, tenant_slug, project_slug, session_name):
        part = request.GET.get("part", "")
        try:
            context = self.summary_context()
        except Http404:
            if not request.headers.get("HX-Request"):
                raise
            # A page that watched it: the same answer whether it was deleted or never visible.
            return render(request, "sessions/_gone.html", {"part": part}, status=STOP_POLLING)
        if part == "summary":  # the history and conditions come along (htmx swaps them in by id)
            context.update(oob=True, events=context["s"].events.all()[:HISTORY])
        return render(request, self.PARTS.get(part, "sessions/_status.html"), context,
                      status=STOP_POLLING if context["s"].is_finished else 200)


class SessionLogView(SessionPage):
    """The log fragment a session's page polls while it runs (live from the pod, else Pier's copy);
    286 once the session has finished: its copy is final."""

    template_name = "sessions/_log.html"

    def get(self, request, tenant_slug, project_slug, session_name):
        try:
            s = self.get_session()
        except Http404:
            if not request.headers.get("HX-Request"):
                raise
            return render(request, "sessions/_gone.html", {"part": "log"}, status=STOP_POLLING)
        tail = _tail(request)
        return render(request, self.template_name, {**self.base_context(), "s": s, "log": _log(s, tail), "tail": tail},
                      status=STOP_POLLING if s.is_finished else 200)


class SessionStopView(SessionDetailView):
    audit_actions = {"POST": "session.stop"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug, session_name):
        s = services.session_stop(tenant=request.tenant, project=self.get_project(), session=self.get_session(),
                                  acting_user=request.user, access=self.access)
        messages.success(request, f"Session {s.name} is stopping: its runner is asked to end, then removed; "
                                  "its log is kept.")
        return redirect("sessions:detail", tenant_slug=request.tenant.slug, project_slug=project_slug,
                        session_name=s.name)


class SessionCloneView(SessionDetailView):
    """A new session with this one's prompt and settings, in this project or another the caller
    may edit."""

    audit_actions = {"POST": "session.create"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug, session_name):
        source, project = self.get_session(), self.get_project()
        form = self.clone_form(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, self.get_context_data(clone_form=form), status=400)
        slug = form.cleaned_data["project"] or project.slug
        if slug == project.slug:
            target, access = project, self.access
        else:
            target, access = project_selectors.project_for(request, slug)  # 404 if they may not see it
        try:
            clone, _created = services.session_clone(tenant=request.tenant, source=source, target=target,
                                                     acting_user=request.user, access=access)
        except PierError as exc:
            return self.refused(request, exc, clone_form=form)
        where = "" if target == project else f" in project {target.slug}"
        messages.success(request, f"Session {clone.name} is starting{where}, a clone of {source.name}.")
        return redirect("sessions:detail", tenant_slug=request.tenant.slug, project_slug=target.slug,
                        session_name=clone.name)


class SessionDeleteView(SessionDetailView):
    audit_actions = {"POST": "session.delete"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug, session_name):
        s = self.get_session()
        services.session_delete(tenant=request.tenant, project=self.get_project(), session=s,
                                acting_user=request.user, access=self.access)
        messages.success(request, f"Session {s.name} is being deleted with its custom resource and runner.")
        return redirect("sessions:list", tenant_slug=request.tenant.slug, project_slug=project_slug)


class RunnerSecretView(SessionListView):
    """Write the project's runner secret (project admins): replaces it whole; what was typed is
    never shown again, even next to an error."""

    audit_actions = {"POST": "project.runner_secret"}

    http_method_names = ["post"]  # an action: its page is the sessions list

    def post(self, request, tenant_slug, project_slug):
        project = self.get_project()
        self.access.require("configure", project=project)
        form = RunnerSecretForm(request.POST)
        if not form.is_valid():
            blank = RunnerSecretForm.blank(form.errors.get("values", []))
            return render(request, self.template_name, self.get_context_data(secret_form=blank), status=400)
        try:
            row = services.runner_secret_put(tenant=request.tenant, project=project, acting_user=request.user,
                                             access=self.access, data=form.cleaned_data["parsed"])
        except PierError as exc:
            exc = form.at_fields(exc)
            return self.refused(request, exc, secret_form=RunnerSecretForm.blank(exc.details.get("values", [])))
        messages.success(request, f"The runner secret now holds {', '.join(row.keys)}; new sessions get them.")
        return redirect(reverse("sessions:list", kwargs={"tenant_slug": request.tenant.slug,
                                                         "project_slug": project.slug}) + "#runner-secret")


class RunnerSecretDeleteView(SessionListView):
    audit_actions = {"POST": "project.runner_secret_delete"}

    http_method_names = ["post"]

    def post(self, request, tenant_slug, project_slug):
        project = self.get_project()
        try:
            services.runner_secret_delete(tenant=request.tenant, project=project, acting_user=request.user,
                                          access=self.access)
        except PierError as exc:
            return self.refused(request, exc)
        messages.success(request, "The runner secret was removed; new sessions get none.")
        return redirect(reverse("sessions:list", kwargs={"tenant_slug": request.tenant.slug,
                                                         "project_slug": project.slug}) + "#runner-secret")
