"""Base classes for server-rendered pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.forms import BaseForm
from django.http import Http404
from django.views import View
from drf_spectacular.renderers import (OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer,
                                       OpenApiYamlRenderer2)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated

from portal.access import NotSignedIn, check_tenant_access
from portal.errors import Conflict, PierError, error_response, from_django_validation_error


class LoginView(auth_views.LoginView):
    """Username and password sign-in (platform staff, local runs)."""

    audit_actions = {"POST": "auth.login"}

    redirect_authenticated_user = True
    http_method_names = ["get", "post", "head", "options"]


class TenantView(View):
    """Every page under /t/<slug>/ inherits this: the caller's tenant role is checked once,
    before the handler runs; `min_role` for reading, `min_role_for_write` for POST.

    A service refusal (PierError) on POST re-renders the page with the message and the right
    HTTP status, so nothing typed is lost."""

    min_role = "member"
    min_role_for_write = "admin"

    def dispatch(self, request, *args, **kwargs):
        needed = self.min_role if request.method in ("GET", "HEAD", "OPTIONS") else self.min_role_for_write
        try:
            check_tenant_access(request, min_role=needed)
        except NotSignedIn:
            if request.headers.get("HX-Request"):
                # A polled fragment whose session ended: say so in place (286 stops the polling)
                # instead of swapping the sign-in page into a badge.
                page = urlsplit(request.headers.get("HX-Current-URL", "")).path or request.get_full_path()
                return render(request, "signed_out_fragment.html", {"login": redirect_to_login(page).url},
                              status=286)
            return redirect_to_login(request.get_full_path())
        except PierError as exc:
            return error_response(request, status=exc.status, code=exc.code, message=exc.message)
        try:
            return super().dispatch(request, *args, **kwargs)
        except Http404:
            # Pier's page with the organization's menu, never Django's (debug) 404.
            return error_response(request, status=404, code="not_found",
                                  message="There is nothing here, or you have no access to it.")
        except ValidationError as exc:
            return self.refused(request, from_django_validation_error(exc))
        except PierError as exc:
            return self.refused(request, exc)

    def refused(self, request, exc: PierError, **context):
        """Show a refused action on the page it came from, with what was typed (`context`)."""
        request.pier_refusal = {"code": exc.code, "message": exc.message}
        for form in context.values():
            if isinstance(form, BaseForm) and exc.details:
                _errors_at_fields(form, _plain_details(exc))
        # The banner (base.html) points at the marked fields, or says the message in plain words.
        if hasattr(self, "get_context_data"):
            context = self.get_context_data(error=exc.message, **context)
        return render(request, self.template_name, context, status=exc.status)


def _plain_details(exc: PierError) -> dict:
    """The field errors in plain words: a conflict about one field says at that field what its
    message says ("slug: a project 'web' already exists." → "A project 'web' already exists."),
    not just the API's short detail ("Already exists.")."""
    if isinstance(exc, Conflict) and len(exc.details) == 1:
        (name, messages), = exc.details.items()
        prefix = f"{name}: "
        if isinstance(messages, list) and exc.message.startswith(prefix):
            plain = exc.message[len(prefix):]
            return {name: [plain[:1].upper() + plain[1:]]}
    return exc.details


def _errors_at_fields(form, details: dict) -> None:
    """Put a service's field errors ("config_overrides.quota.pods": […]) on the form's fields
    ("quota.pods"), so each appears at its field."""
    for name, messages in details.items():
        if not isinstance(messages, list):
            continue
        field = next((f for f in form.fields if name == f or name.endswith("." + f)), None)
        if field is not None and field not in form.errors:
            form.add_error(field, [str(m) for m in messages])


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema: JSON a browser shows (not a download) unless YAML is asked for; a
    signed-out browser is sent to sign in, automation gets the 401 error shape."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2]

    def initial(self, request, *args, **kwargs):
        # Before content negotiation: a signed-out browser asks for HTML, which the schema is not.
        if "text/html" in request.headers.get("Accept", "") and not request.user.is_authenticated:
            raise NotAuthenticated()
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, NotAuthenticated) and "text/html" in self.request.headers.get("Accept", ""):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)


class DocsView(SpectacularSwaggerView):
    """The Swagger UI (served locally): people who are signed out are sent to sign in first."""

    def handle_exception(self, exc):
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)
