"""Project pages: the list with a create form, a project's page with its effective configuration,
history and deletion."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from portal import kube
from portal.errors import PierError
from portal.views import TenantView
from tenants.projects import config, selectors, services
from tenants.projects.filtersets import ProjectFilterSet
from tenants.projects.forms import (AccessKeyForm, ConfigOverridesForm, DefaultsForm, GrantForm, GrantRoleForm,
                                    ProjectCreateForm, ProjectEditForm)


class ProjectListView(TenantView):
    audit_actions = {"POST": "project.create"}

    template_name = "projects/list.html"
    min_role_for_write = "member"

    def get_context_data(self, form=None, **extra):
        filterset = ProjectFilterSet(self.request.GET, queryset=selectors.projects_for(self.request))
        page = Paginator(filterset.qs, 50).get_page(self.request.GET.get("page"))
        return {"tenant": self.request.tenant, "filter": filterset, "page": page,
                "form": form or ProjectCreateForm(), "cluster": kube.cluster_label(),
                "limit": self.request.tenant.effective_max_projects, "total": selectors.projects().count(), **extra}

    def get(self, request, tenant_slug):
        return render(request, self.template_name, self.get_context_data())

    def post(self, request, tenant_slug):
        form = ProjectCreateForm(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, self.get_context_data(form=form), status=400)
        try:
            project = services.project_create(tenant=request.tenant, acting_user=request.user, **form.cleaned_data)
        except PierError as exc:
            return self.refused(request, exc, form=form)
        messages.success(request, f"Project {project.slug} is being created in namespace {project.namespace}.")
        return redirect("projects:detail", tenant_slug=request.tenant.slug, project_slug=project.slug)


class ProjectPage(TenantView):
    """Pages of one project: the project and the caller's access are resolved once (404 if they
    may not see it); services check the role each action needs."""

    min_role_for_write = "member"

    def dispatch(self, request, *args, **kwargs):
        self.project_and_access = None
        return super().dispatch(request, *args, **kwargs)

    def get_project(self):
        if self.project_and_access is None:
            self.project_and_access = selectors.project_for(self.request, self.kwargs["project_slug"])
        return self.project_and_access[0]

    @property
    def access(self):
        self.get_project()
        return self.project_and_access[1]


class ProjectDetailView(ProjectPage):
    template_name = "projects/detail.html"

    def get_context_data(self, form=None, edit_form=None, **extra):
        project = self.get_project()
        effective = selectors.effective_config(project, policy=selectors.policy_for(self.request.tenant))
        form = form or ConfigOverridesForm(effective=effective)
        rows = [
            {"key": key, "source": entry["source"], "field": form[key], "ceiling": entry["ceiling"],
             "locked": entry["locked"], "clamped_from": config.display(entry["clamped_from"]),
             "override": config.display(project.config_overrides.get(key)),
             "display": config.display(entry["value"]) or "(none)"}
            for key, entry in effective.items()
        ]
        return {
            "tenant": self.request.tenant, "project": project, "rows": rows, "form": form,
            "edit_form": edit_form or ProjectEditForm(initial={"display_name": project.display_name,
                                                                "description": project.description}),
            "cluster": kube.cluster_label(), "access": self.access,
            "can_change": "configure" in self.access.actions, "can_edit": "edit" in self.access.actions,
            **extra,
        }

    def get(self, request, tenant_slug, project_slug):
        return render(request, self.template_name, self.get_context_data())


class ProjectEditView(ProjectDetailView):
    """Display name and description (editors)."""

    audit_actions = {"POST": "project.update"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug):
        form = ProjectEditForm(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, self.get_context_data(edit_form=form), status=400)
        try:
            services.project_update(tenant=request.tenant, project=self.get_project(), acting_user=request.user,
                                    access=self.access, **form.cleaned_data)
        except PierError as exc:
            return self.refused(request, exc, edit_form=form)
        messages.success(request, "Saved.")
        return redirect("projects:detail", tenant_slug=request.tenant.slug, project_slug=project_slug)


class ProjectStatusView(ProjectPage):
    """The status fragment the pages poll: 286 (htmx: stop polling) once nothing is under way,
    or once the project is gone."""

    template_name = "projects/_status.html"

    def get(self, request, tenant_slug, project_slug):
        compact = request.GET.get("compact") == "1"
        try:
            project = self.get_project()
        except Http404:
            if not request.headers.get("HX-Request"):
                raise
            # A page that watched it: the same answer whether it was deleted or never visible.
            return HttpResponse('<span class="badge">deleted</span>' if compact else
                                '<div class="live-status"><span class="badge">deleted</span> '
                                '<span class="small">This project no longer exists.</span></div>', status=286)
        return render(request, self.template_name, {"tenant": request.tenant, "project": project,
                                                    "compact": compact, "terminal": project.is_settled},
                      status=286 if project.is_settled else 200)


class ProjectHistoryView(ProjectPage):
    template_name = "projects/history.html"

    def get(self, request, tenant_slug, project_slug):
        project = self.get_project()
        return render(request, self.template_name, {"tenant": request.tenant, "project": project,
                                                    "access": self.access, "events": project.events.all()[:200]})


class ProjectConfigView(ProjectDetailView):
    audit_actions = {"POST": "project.update"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug):
        project = self.get_project()
        form = ConfigOverridesForm(request.POST, effective=selectors.effective_config(
            project, policy=selectors.policy_for(request.tenant)))
        form.is_valid()
        overrides = form.overrides()
        for key, entry in form.effective.items():  # locked rows show no field: their override is kept
            if entry["locked"] and key in project.config_overrides:
                overrides[key] = project.config_overrides[key]
        try:
            services.project_update(tenant=request.tenant, project=project, acting_user=request.user,
                                    access=self.access, config_overrides=overrides)
        except PierError as exc:
            return self.refused(request, exc, form=form)
        messages.success(request, "Configuration saved; the cluster follows in a moment.")
        return redirect("projects:detail", tenant_slug=request.tenant.slug, project_slug=project_slug)


class ProjectDeleteView(ProjectDetailView):
    audit_actions = {"POST": "project.delete"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug):
        project = services.project_delete(tenant=request.tenant, project=self.get_project(), acting_user=request.user,
                                          access=self.access)
        messages.success(request, f"Project {project.slug} is being deleted with its namespace {project.namespace}.")
        return redirect("projects:list", tenant_slug=request.tenant.slug)


class SharingView(ProjectPage):
    """Who has access, modelled on the OpenShift console's Project access tab: one row per person
    or group, its role changed in place."""

    audit_actions = {"POST": "project.share"}

    template_name = "projects/sharing.html"

    def get_context_data(self, form=None, **extra):
        project = self.get_project()
        grants = project.grants.select_related("created_by", "updated_by").order_by("kind", "subject")
        return {"tenant": self.request.tenant, "project": project, "access": self.access,
                "grants": [(grant, GrantRoleForm(initial={"role": grant.role}, auto_id=f"id_g{grant.pk}_%s"))
                           for grant in grants],
                "form": form or GrantForm(), "can_share": "share" in self.access.actions, **extra}

    def get(self, request, tenant_slug, project_slug):
        return render(request, self.template_name, self.get_context_data())

    def post(self, request, tenant_slug, project_slug):
        form = GrantForm(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, self.get_context_data(form=form), status=400)
        try:
            grant = services.grant_add(tenant=request.tenant, project=self.get_project(), acting_user=request.user,
                                       access=self.access, **form.cleaned_data)
        except PierError as exc:
            return self.refused(request, exc, form=form)
        messages.success(request, f"{grant.kind.title()} {grant.subject} now has the {grant.role} role.")
        return redirect("projects:sharing", tenant_slug=request.tenant.slug, project_slug=project_slug)


class SharingRoleView(SharingView):
    audit_actions = {"POST": "project.share_change"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug, grant_id):
        grant = get_object_or_404(self.get_project().grants, pk=grant_id)
        form = GrantRoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose admin, edit or view.")
            return redirect("projects:sharing", tenant_slug=request.tenant.slug, project_slug=project_slug)
        grant = services.grant_change(tenant=request.tenant, project=self.get_project(), grant=grant,
                                      role=form.cleaned_data["role"], acting_user=request.user, access=self.access)
        messages.success(request, f"{grant.kind.title()} {grant.subject} now has the {grant.role} role.")
        return redirect("projects:sharing", tenant_slug=request.tenant.slug, project_slug=project_slug)


class SharingRemoveView(SharingView):
    audit_actions = {"POST": "project.unshare"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug, grant_id):
        grant = get_object_or_404(self.get_project().grants, pk=grant_id)
        services.grant_remove(tenant=request.tenant, project=self.get_project(), grant=grant,
                              acting_user=request.user, access=self.access)
        messages.success(request, f"{grant.kind.title()} {grant.subject} no longer has access.")
        return redirect("projects:sharing", tenant_slug=request.tenant.slug, project_slug=project_slug)


class KeysView(ProjectPage):
    """The project's access keys. A new key's token is shown on the response page only: never
    stored, never put in the session."""

    audit_actions = {"POST": "key.create"}

    template_name = "projects/keys.html"

    def get_context_data(self, form=None, **extra):
        project = self.get_project()
        return {"tenant": self.request.tenant, "project": project, "access": self.access,
                "keys": project.keys.select_related("created_by").order_by("-created_at", "-id"),
                "form": form or AccessKeyForm(max_days=self.request.tenant.effective_max_key_days), "can_issue": "share" in self.access.actions, **extra}

    def get(self, request, tenant_slug, project_slug):
        return render(request, self.template_name, self.get_context_data())

    def post(self, request, tenant_slug, project_slug):
        form = AccessKeyForm(request.POST, max_days=request.tenant.effective_max_key_days)
        if not form.is_valid():
            return render(request, self.template_name, self.get_context_data(form=form), status=400)
        try:
            key, token = services.key_create(tenant=request.tenant, project=self.get_project(), acting_user=request.user,
                                         access=self.access, name=form.cleaned_data["name"], role=form.cleaned_data["role"],
                                         expires_in=form.cleaned_data["expires_in_days"] * 86400)
        except PierError as exc:
            return self.refused(request, exc, form=form)
        response = render(request, self.template_name, self.get_context_data(new_key=key, token=token), status=201)
        response["Cache-Control"] = "no-store"
        return response


class KeyRevokeView(KeysView):
    audit_actions = {"POST": "key.revoke"}

    http_method_names = ["post"]  # an action: its page is the one it came from

    def post(self, request, tenant_slug, project_slug, key_id):
        key = get_object_or_404(self.get_project().keys, pk=key_id)
        services.key_revoke(tenant=request.tenant, project=self.get_project(), key=key, acting_user=request.user,
                        access=self.access)
        messages.success(request, f"The key {key.name} was revoked; it no longer works.")
        return redirect("projects:keys", tenant_slug=request.tenant.slug, project_slug=project_slug)


class OrganizationSettingsView(TenantView):
    """The organization's project defaults and locks (owners and admins change them), with the
    ceilings, budget and locks platform staff set, read-only."""

    audit_actions = {"POST": "tenant.project_defaults"}

    template_name = "projects/settings.html"

    def get_context_data(self, form=None, **extra):
        policy = selectors.organization_policy(self.request.tenant)
        role = getattr(self.request, "tenant_role", "")
        rows = []
        form = form or DefaultsForm(defaults=policy["project_defaults"], locked=policy["locked_keys"])
        for key in config.KEYS:
            ceiling = policy["ceilings"].get(key)
            rows.append({"key": key, "field": form[key], "lock": form[f"lock:{key}"],
                         "platform_default": config.display(settings.PIER_PROJECT_DEFAULTS[key]),
                         "ceiling": ceiling, "platform_locked": key in policy["platform_locks"],
                         "budget": policy["budget"].get(key)})
        return {"tenant": self.request.tenant, "rows": rows, "form": form, "policy": policy,
                "can_change": role in ("owner", "admin", "staff"), **extra}

    def get(self, request, tenant_slug):
        return render(request, self.template_name, self.get_context_data())

    def post(self, request, tenant_slug):
        policy = selectors.organization_policy(request.tenant)
        form = DefaultsForm(request.POST, defaults=policy["project_defaults"], locked=policy["locked_keys"])
        form.is_valid()
        defaults, locked = form.defaults(), form.locked_keys()
        # The form shows the whole map: keys left empty stop being organization defaults.
        patch = {**{key: None for key in policy["project_defaults"] if key not in defaults}, **defaults}
        try:
            services.tenant_defaults_update(tenant=request.tenant, acting_user=request.user, defaults=patch,
                                            locked_keys=locked)
        except PierError as exc:
            return self.refused(request, exc, form=form)
        messages.success(request, "Organization defaults saved; every project follows in a moment.")
        return redirect("projects:settings", tenant_slug=request.tenant.slug)
