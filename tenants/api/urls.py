from django.urls import path

from tenants.api import views

# Included by portal/urls.py under the "api" namespace. No trailing slashes.
admin_urlpatterns = [
    path("tenants", views.AdminTenantListView.as_view(), name="admin-tenant-list"),
    path("tenants/<slug:slug>", views.AdminTenantDetailView.as_view(), name="admin-tenant-detail"),
    path("tenants/<slug:slug>/suspend", views.AdminTenantActionView.as_view(action_name="suspend", audit_actions={"POST": "tenant.suspend"}), name="admin-tenant-suspend"),
    path("tenants/<slug:slug>/resume", views.AdminTenantActionView.as_view(action_name="resume", audit_actions={"POST": "tenant.resume"}), name="admin-tenant-resume"),
    path("tenants/<slug:slug>/retry", views.AdminTenantActionView.as_view(action_name="retry", audit_actions={"POST": "tenant.retry"}), name="admin-tenant-retry"),
    path("jobs", views.AdminJobListView.as_view(), name="job-list"),
    path("jobs/<int:pk>", views.AdminJobDetailView.as_view(), name="job-detail"),
]

# Under api/v1/tenants/<slug:tenant_slug>/ (the tenant itself is routed by portal/urls.py).
tenant_urlpatterns = [
    path("members", views.MemberListView.as_view(), name="member-list"),
    path("members/<str:username>", views.MemberDetailView.as_view(), name="member-detail"),
    path("invitations", views.InvitationListView.as_view(), name="invitation-list"),
    path("invitations/<int:pk>", views.InvitationDetailView.as_view(), name="invitation-detail"),
    path("invitations/<int:pk>/resend", views.InvitationResendView.as_view(), name="invitation-resend"),
    path("audit", views.TenantAuditListView.as_view(), name="tenant-audit"),
]

urlpatterns = [
    path("tenants", views.MyTenantListView.as_view(), name="my-tenant-list"),
]
