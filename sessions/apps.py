from django.apps import AppConfig


class AgenticSessionsConfig(AppConfig):
    """Agentic sessions (a tenant-schema app). The label avoids a clash with
    django.contrib.sessions; django-tenants' app lists use the module path `sessions`."""

    name = "sessions"
    label = "agentic_sessions"
    verbose_name = "Agentic sessions"

    def ready(self) -> None:
        from sessions import controller, receivers  # noqa: F401  (the controller; the tenant lifecycle hooks)
