"""The one URLconf. Tenant routes carry the slug in their path (the middleware selected the schema)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import health, users_api, views
from sessions.api import urls as session_api_urls
from tenants import views as tenant_views
from tenants.api import urls as tenant_api_urls
from tenants.api import views as tenant_api_views
from tenants.projects.api import urls as project_api_urls

api_patterns = [
    path("admin/", include(tenant_api_urls.admin_urlpatterns)),
    path("admin/", include(project_api_urls.admin_urlpatterns)),
    path("admin/users", users_api.UserListView.as_view(), name="admin-user-list"),
    path("admin/users/<str:username>", users_api.UserDetailView.as_view(), name="admin-user-detail"),
    path("tenants/<slug:tenant_slug>", tenant_api_views.TenantDetailView.as_view(), name="tenant-detail"),
    path("tenants/<slug:tenant_slug>/", include(tenant_api_urls.tenant_urlpatterns)),
    path("tenants/<slug:tenant_slug>/", include(project_api_urls.urlpatterns)),
    path("tenants/<slug:tenant_slug>/", include(session_api_urls.urlpatterns)),
    path("", include(tenant_api_urls.urlpatterns)),
    path("schema", views.SchemaView.as_view(), name="schema"),
    path("docs", views.DocsView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [
    path("", tenant_views.picker, name="home"),
    path("login", views.LoginView.as_view(), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_patterns, "api"))),
    path("t/<slug:tenant_slug>/", include("tenants.urls")),
    path("t/<slug:tenant_slug>/", include("tenants.projects.urls")),
    path("t/<slug:tenant_slug>/", include("sessions.urls")),
]

handler404 = "portal.errors.handler404"
handler403 = "portal.errors.handler403"
handler500 = "portal.errors.handler500"
