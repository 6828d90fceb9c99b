from django.urls import path

from tenants.projects.api import views

# Under api/v1/tenants/<slug:tenant_slug>/ (portal/urls.py), in the "api" namespace.
urlpatterns = [
    path("projects", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:project_slug>", views.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<slug:project_slug>/access", views.ProjectAccessView.as_view(), name="project-access"),
    path("projects/<slug:project_slug>/grants", views.ProjectGrantListView.as_view(), name="project-grant-list"),
    path("projects/<slug:project_slug>/grants/<int:grant_id>", views.ProjectGrantDetailView.as_view(),
         name="project-grant-detail"),
    path("projects/<slug:project_slug>/keys", views.AccessKeyListView.as_view(), name="project-key-list"),
    path("projects/<slug:project_slug>/keys/<int:key_id>", views.AccessKeyDetailView.as_view(),
         name="project-key-detail"),
    path("project-defaults", views.ProjectDefaultsView.as_view(), name="project-defaults"),
]

# Under api/v1/admin/ (platform staff; the tenant is named in the path, not routed).
admin_urlpatterns = [
    path("tenants/<slug:slug>/policy", views.AdminTenantPolicyView.as_view(), name="admin-tenant-policy"),
]
