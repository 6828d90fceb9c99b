from django.urls import path

from tenants import views

app_name = "tenants"

# Under t/<slug:tenant_slug>/ (portal/urls.py).
urlpatterns = [
    path("", views.TenantHomeView.as_view(), name="home"),
    path("members", views.MembersView.as_view(), name="members"),
    path("members/<int:pk>/role", views.MemberRoleView.as_view(), name="member_role"),
    path("members/<int:pk>/remove", views.MemberRemoveView.as_view(), name="member_remove"),
    path("invitations/<int:pk>/remove", views.InvitationRemoveView.as_view(), name="invitation_remove"),
    path("invitations/<int:pk>/resend", views.InvitationResendView.as_view(), name="invitation_resend"),
    path("audit", views.AuditView.as_view(), name="audit"),
]
