"""`Authorization: Bearer <key>`: an access key, checked locally by its peppered hash (no call to
the cluster per request). A key acts only in its project, with its role."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.errors import Unavailable
from tenants.projects.models import AccessKey

LAST_USED_EVERY = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hmac.new(settings.PIER_KEY_PEPPER.encode(), token.encode(), hashlib.sha256).hexdigest()


class KeyPrincipal:
    """Who a request with an access key is: not a person, so no tenant membership of its own."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    is_access_key = True
    pk = None

    def __init__(self, key: AccessKey):
        self.key = key
        self.project_id = key.project_id
        self.role = key.role
        self.username = f"key:{key.name}"

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


class AccessKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        scheme, _, token = authentication.get_authorization_header(request).decode(errors="replace").partition(" ")
        if scheme.lower() != self.keyword.lower():  # auth schemes are case-insensitive (RFC 7235)
            return None
        token = token.strip()
        tenant = getattr(request._request, "tenant", None)
        if tenant is None:
            raise exceptions.AuthenticationFailed("Access keys work under /api/v1/tenants/<slug>/ only.")
        if connection.schema_name != tenant.schema_name:
            # The tenant is not being served (being set up, upgraded, deleted): no keys to check.
            raise Unavailable("This organization is not available right now; try again later.", code="tenant_unavailable")
        key = (AccessKey.objects.filter(token_hash=token_hash(token)).select_related("created_by").order_by().first()
               if token else None)
        # Another tenant's key is simply unknown here: its table is in another schema.
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown access key.")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This access key was revoked.")
        if not key.created_by.is_active:
            raise exceptions.AuthenticationFailed("The person who issued this access key was deactivated.")
        now = timezone.now()
        if key.expires_at <= now:
            raise exceptions.AuthenticationFailed("This access key has expired.")
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_EVERY:
            # At most once a minute, across every process: only if the stored value is still old.
            stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
            AccessKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
        return KeyPrincipal(key), key

    def authenticate_header(self, request):
        return self.keyword
