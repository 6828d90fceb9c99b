from django.urls import path

from tenants.projects import views

app_name = "projects"

# Under t/<slug:tenant_slug>/ (portal/urls.py).
urlpatterns = [
    path("projects", views.ProjectListView.as_view(), name="list"),
    path("projects/<slug:project_slug>", views.ProjectDetailView.as_view(), name="detail"),
    path("projects/<slug:project_slug>/edit", views.ProjectEditView.as_view(), name="edit"),
    path("projects/<slug:project_slug>/status", views.ProjectStatusView.as_view(), name="status"),
    path("projects/<slug:project_slug>/history", views.ProjectHistoryView.as_view(), name="history"),
    path("settings", views.OrganizationSettingsView.as_view(), name="settings"),
    path("projects/<slug:project_slug>/config", views.ProjectConfigView.as_view(), name="config"),
    path("projects/<slug:project_slug>/delete", views.ProjectDeleteView.as_view(), name="delete"),
    path("projects/<slug:project_slug>/sharing", views.SharingView.as_view(), name="sharing"),
    path("projects/<slug:project_slug>/keys", views.KeysView.as_view(), name="keys"),
    path("projects/<slug:project_slug>/keys/<int:key_id>/revoke", views.KeyRevokeView.as_view(), name="key_revoke"),
    path("projects/<slug:project_slug>/sharing/<int:grant_id>/role", views.SharingRoleView.as_view(),
         name="sharing_role"),
    path("projects/<slug:project_slug>/sharing/<int:grant_id>/remove", views.SharingRemoveView.as_view(),
         name="sharing_remove"),
]
