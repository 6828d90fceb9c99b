"""Project pages: the list with a create form, a project's page with its effective configuration,
history and deletion."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render

from portal import kube
from portal.errors import PierError
from portal.views import TenantView
from tenants.projects import selectors, services
from tenants.projects.filtersets import ProjectFilterSet
from tenants.projects.forms import ConfigOverridesForm, ProjectCreateForm


class ProjectListView(TenantView):
    template_name = "projects/list.html"
    min_role_for_write = "member"

    def get_context_data(self, form=None, **extra):
        filterset = ProjectFilterSet(self.request.GET, queryset=selectors.projects())
        page = Paginator(filterset.qs, 50).get_page(self.request.GET.get("page"))
        return {"tenant": self.request.tenant, "filter": filterset, "page": page,
                "form": form or ProjectCreateForm(), "cluster": kube.cluster_label(),
                "limit": self.request.tenant.effective_max_projects, **extra}

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


class ProjectDetailView(TenantView):
    template_name = "projects/detail.html"
    min_role_for_write = "member"  # services check creator / tenant admin

    def get_project(self):
        return get_object_or_404(selectors.projects(), slug=self.kwargs["project_slug"])

    def get_context_data(self, form=None, **extra):
        project = self.get_project()
        effective = selectors.effective_config(project)
        form = form or ConfigOverridesForm(effective=effective)
        rows = [
            {"key": key, "source": entry["source"], "field": form[key],
             "display": ", ".join(entry["value"]) or "(none)" if isinstance(entry["value"], list) else entry["value"]}
            for key, entry in effective.items()
        ]
        return {
            "tenant": self.request.tenant, "project": project, "rows": rows, "form": form,
            "events": project.events.all()[:30], "cluster": kube.cluster_label(),
            "can_change": services.can_change(project, user=self.request.user, tenant_role=self.request.tenant_role),
            **extra,
        }

    def get(self, request, tenant_slug, project_slug):
        return render(request, self.template_name, self.get_context_data())


class ProjectConfigView(ProjectDetailView):
    def post(self, request, tenant_slug, project_slug):
        project = self.get_project()
        form = ConfigOverridesForm(request.POST, effective=selectors.effective_config(project))
        form.is_valid()
        try:
            services.project_update(tenant=request.tenant, project=project, acting_user=request.user,
                                    tenant_role=request.tenant_role, config_overrides=form.overrides())
        except PierError as exc:
            return self.refused(request, exc, form=form)
        messages.success(request, "Configuration saved; the cluster follows in a moment.")
        return redirect("projects:detail", tenant_slug=request.tenant.slug, project_slug=project_slug)


class ProjectDeleteView(ProjectDetailView):
    def post(self, request, tenant_slug, project_slug):
        project = services.project_delete(tenant=request.tenant, project=self.get_project(), acting_user=request.user,
                                          tenant_role=request.tenant_role)
        messages.success(request, f"Project {project.slug} is being deleted with its namespace {project.namespace}.")
        return redirect("projects:list", tenant_slug=request.tenant.slug)
