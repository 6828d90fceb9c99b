"""Pages: the tenant picker, a tenant's home, its members and its audit trail."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_safe

from portal.errors import PierError
from portal.filtersets import AuditEventFilterSet
from portal.views import TenantView
from tenants import selectors, services
from tenants.forms import MemberAddForm, MemberRoleForm
from tenants.models import MANAGER_ROLES, Membership, PendingMembership


@require_safe
@login_required
def picker(request):
    """The tenants the signed-in user belongs to."""
    tenants = list(selectors.tenants_for_user(request.user))
    return render(request, "tenants/picker.html", {"tenants": tenants})


HOME_MEMBERS = 8  # the home page lists the first few; the members page has them all


class TenantHomeView(TenantView):
    template_name = "tenants/home.html"

    def get_context_data(self, **extra):
        tenant = self.request.tenant
        can_manage = self.request.tenant_role in (*MANAGER_ROLES, "staff")
        members = selectors.members_of(tenant)
        shown, count = list(members[:HOME_MEMBERS]), members.count()
        return {
            "tenant": tenant,
            "members": shown,
            "member_count": count,
            "members_more": count - len(shown),
            "invited_count": selectors.invitations_of(tenant).count(),
            "sections": selectors.home_sections(self.request),
            "recent_audit": selectors.tenant_audit(tenant)[:10] if can_manage else None,
            "can_manage": can_manage,
            **extra,
        }

    def get(self, request, tenant_slug):
        return render(request, self.template_name, self.get_context_data())


class MembersPage(TenantView):
    """The members page; its forms post to the views below, which re-render it on a refusal."""

    template_name = "tenants/members.html"

    def get_context_data(self, form=None, **extra):
        tenant = self.request.tenant
        can_manage = self.request.tenant_role in (*MANAGER_ROLES, "staff")
        return {
            "tenant": tenant,
            "members": selectors.members_of(tenant),
            # Invitees' emails are for the people who manage members only.
            "invitations": selectors.invitations_of(tenant) if can_manage else None,
            "form": form or MemberAddForm(),
            "roles": MemberRoleForm.base_fields["role"].choices,
            "can_manage": can_manage,
            **extra,
        }


class MembersView(MembersPage):
    audit_actions = {"POST": "member.add"}

    def get(self, request, tenant_slug):
        return render(request, self.template_name, self.get_context_data())

    def post(self, request, tenant_slug):
        form = MemberAddForm(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, self.get_context_data(form=form), status=400)
        try:
            created = services.member_add(
                tenant=request.tenant, person=form.cleaned_data["username"], role=form.cleaned_data["role"],
                acting_user=request.user, acting_role=request.tenant_role,
            )
        except PierError as exc:
            return self.refused(request, exc, form=form)
        if isinstance(created, Membership):
            messages.success(request, f"{created.user.get_username()} was added as {created.role}.")
        else:
            messages.warning(request, f"No account matches '{form.cleaned_data['username'].strip()}' yet: invited as "
                                      f"{created.role}; they join at their first sign-in.")
        return redirect("tenants:members", tenant_slug=request.tenant.slug)


class MemberRoleView(MembersPage):
    audit_actions = {"POST": "member.change_role"}

    def post(self, request, tenant_slug, pk):
        membership = get_object_or_404(selectors.members_of(request.tenant), pk=pk)
        form = MemberRoleForm(request.POST)
        if not form.is_valid():
            return self.refused(request, PierError("role: choose owner, admin or member."))
        services.member_change_role(
            tenant=request.tenant, membership=membership, role=form.cleaned_data["role"],
            acting_user=request.user, acting_role=request.tenant_role,
        )
        messages.success(request, f"{membership.user.get_username()} is now {form.cleaned_data['role']}.")
        return redirect("tenants:members", tenant_slug=request.tenant.slug)


class MemberRemoveView(MembersPage):
    audit_actions = {"POST": "member.remove"}

    def post(self, request, tenant_slug, pk):
        membership = get_object_or_404(selectors.members_of(request.tenant), pk=pk)
        services.member_remove(
            tenant=request.tenant, membership=membership, acting_user=request.user, acting_role=request.tenant_role
        )
        messages.success(request, f"{membership.user.get_username()} was removed.")
        return redirect("tenants:members", tenant_slug=request.tenant.slug)


class InvitationRemoveView(MembersPage):
    audit_actions = {"POST": "member.remove"}

    def post(self, request, tenant_slug, pk):
        pending = get_object_or_404(PendingMembership, tenant=request.tenant, pk=pk)
        services.pending_member_remove(
            tenant=request.tenant, pending=pending, acting_user=request.user, acting_role=request.tenant_role
        )
        messages.success(request, f"The invitation for {pending.username or pending.email} was withdrawn.")
        return redirect("tenants:members", tenant_slug=request.tenant.slug)


class InvitationResendView(MembersPage):
    audit_actions = {"POST": "invitation.resend"}

    def post(self, request, tenant_slug, pk):
        pending = get_object_or_404(PendingMembership, tenant=request.tenant, pk=pk)
        try:
            services.invitation_resend(
                tenant=request.tenant, pending=pending, acting_user=request.user, acting_role=request.tenant_role
            )
        except PierError as exc:
            return self.refused(request, exc)
        messages.success(request, f"The invitation for {pending.email} is being sent again.")
        return redirect("tenants:members", tenant_slug=request.tenant.slug)


class AuditView(TenantView):
    template_name = "tenants/audit.html"
    min_role = "admin"

    def get(self, request, tenant_slug):
        filterset = AuditEventFilterSet(request.GET, queryset=selectors.tenant_audit(request.tenant))
        page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        return render(request, self.template_name, {
            "tenant": request.tenant, "filter": filterset, "page": page, "query": query.urlencode(),
        })
