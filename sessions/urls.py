from django.urls import path

from sessions import views

app_name = "sessions"

# Under t/<slug:tenant_slug>/ (portal/urls.py), beside the project pages.
session = "projects/<slug:project_slug>/sessions/<slug:session_name>"
urlpatterns = [
    path("projects/<slug:project_slug>/sessions", views.SessionListView.as_view(), name="list"),
    path("projects/<slug:project_slug>/runner-secret", views.RunnerSecretView.as_view(), name="runner_secret"),
    path("projects/<slug:project_slug>/runner-secret/delete", views.RunnerSecretDeleteView.as_view(),
         name="runner_secret_delete"),
    path(session, views.SessionDetailView.as_view(), name="detail"),
    path(f"{session}/status", views.SessionStatusView.as_view(), name="status"),
    path(f"{session}/log", views.SessionLogView.as_view(), name="log"),
    path(f"{session}/stop", views.SessionStopView.as_view(), name="stop"),
    path(f"{session}/clone", views.SessionCloneView.as_view(), name="clone"),
    path(f"{session}/delete", views.SessionDeleteView.as_view(), name="delete"),
]
