from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    """The tenant-schema app: every model here exists once per tenant schema."""

    name = "tenants.projects"
    label = "projects"
    verbose_name = "Projects (tenant schema)"

    def ready(self) -> None:
        from tenants.projects import reconcile, receivers  # noqa: F401  (the controllers; tenant deletion)
        from tenants.projects import schema_extensions  # noqa: F401  (access keys in the OpenAPI schema)
