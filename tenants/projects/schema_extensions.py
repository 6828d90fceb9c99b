"""How access keys appear in the OpenAPI schema (drf-spectacular)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AccessKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.projects.authentication.AccessKeyAuthentication"
    name = "accessKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A project access key: acts only in its project, with its role."}
