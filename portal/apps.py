from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Platform"

    def ready(self) -> None:
        from portal import receivers  # noqa: F401  (audits sign-ins)
