from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from tenants import provisioning, receivers  # noqa: F401  (the jobs' controller; login claims pending memberships)
