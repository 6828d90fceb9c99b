from django.urls import path

from sessions.api import views

# Under api/v1/tenants/<slug:tenant_slug>/ (portal/urls.py), in the "api" namespace.
urlpatterns = [
    path("projects/<slug:project_slug>/sessions", views.SessionListView.as_view(), name="session-list"),
    path("projects/<slug:project_slug>/sessions/<slug:session_name>", views.SessionDetailView.as_view(),
         name="session-detail"),
    path("projects/<slug:project_slug>/sessions/<slug:session_name>/stop", views.SessionStopView.as_view(),
         name="session-stop"),
    path("projects/<slug:project_slug>/sessions/<slug:session_name>/clone", views.SessionCloneView.as_view(),
         name="session-clone"),
    path("projects/<slug:project_slug>/runner-secret", views.RunnerSecretView.as_view(), name="project-runner-secret"),
    path("projects/<slug:project_slug>/sessions/<slug:session_name>/logs", views.SessionLogView.as_view(),
         name="session-logs"),
]
