"""Authentication: who a request comes from, and impersonation.

Like kube-apiserver's authenticator chain (`staging/src/k8s.io/apiserver/pkg/authentication`),
a bearer token is tried against each authenticator in turn:

- the kubeconfig's admin token: user `kubernetes-admin`, groups `system:masters` and
  `system:authenticated` (kubeadm's admin.conf identity; `system:masters` may do anything);
- static users a test registered (`KubeEmulator.add_user`), kube-apiserver's `--token-auth-file`;
- ServiceAccount tokens from TokenRequest, checked as TokenReview checks them (`tokens.py`):
  user `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts`,
  `system:serviceaccounts:<ns>`, `system:authenticated`.

A request without a token is anonymous (`system:anonymous`, group `system:unauthenticated`,
the real server's default `--anonymous-auth=true`); a token no authenticator takes is a 401.

Impersonation (`endpoints/filters/impersonation.go`): `Impersonate-User`, `Impersonate-Group`
(repeatable), `Impersonate-Uid` and `Impersonate-Extra-<key>` headers replace the caller's
identity, each one only if the caller may `impersonate` it (users, groups, serviceaccounts,
uids, userextras/<key>); a 403 names the first one refused. The impersonated user gets
`system:authenticated` (and the ServiceAccount groups, for a ServiceAccount's name).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .errors import ApiError
from .tokens import TokenAuthority, TokenRejected

ADMIN_USER = "kubernetes-admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def privileged(self) -> bool:
        """In `system:masters`: the API server allows it everything, before and without RBAC."""
        return MASTERS in self.groups

    def as_review_fields(self) -> dict[str, Any]:
        """The user's part of a SubjectAccessReview spec."""
        spec: dict[str, Any] = {"user": self.name, "groups": list(self.groups)}
        if self.uid:
            spec["uid"] = self.uid
        if self.extra:
            spec["extra"] = {key: list(values) for key, values in self.extra.items()}
        return spec


ADMIN = User(ADMIN_USER, (MASTERS, AUTHENTICATED))
ANONYMOUS_USER = User(ANONYMOUS, (UNAUTHENTICATED,))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)


def split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:<ns>:<name>`, else None."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, name = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    return (namespace, name) if namespace and name and ":" not in name else None


class Authenticator:
    """Bearer token → `User`. `service_account` looks a ServiceAccount up (None if missing)."""

    def __init__(
        self, admin_token: str, tokens: TokenAuthority, service_account: Callable[[str, str], dict[str, Any] | None],
        secret: Callable[[str, str], dict[str, Any] | None] | None = None,
    ):
        self._admin_token = admin_token
        self._tokens = tokens
        self._service_account = service_account
        self._secret = secret  # a legacy token's Secret (None: legacy tokens are refused)
        self._lock = threading.Lock()
        self._static: dict[str, User] = {}

    def add_user(self, name: str, groups: list[str] | tuple[str, ...] = (), token: str | None = None) -> str:
        """Register a static user (with `system:authenticated` added, as the token file does); its token."""
        if not isinstance(name, str) or not name:
            raise ValueError("a user needs a name")
        if isinstance(groups, str) or not all(isinstance(group, str) and group for group in groups):
            raise ValueError("groups must be a list of group names")
        token = token or f"emu-user-{secrets.token_urlsafe(24)}"
        all_groups = tuple(dict.fromkeys([*groups, AUTHENTICATED]))
        with self._lock:
            self._static[token] = User(name, all_groups, uid=f"static-{name}")
        return token

    def clear_users(self) -> None:
        with self._lock:
            self._static.clear()

    def authenticate(self, authorization: str | None) -> User:
        """The user of an `Authorization` header; anonymous without one; raises a 401 ApiError."""
        if not authorization:
            return ANONYMOUS_USER
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if secrets.compare_digest(token.encode(), self._admin_token.encode()):
            return ADMIN
        with self._lock:
            static = self._static.get(token)
        if static is not None:
            return static
        return self._service_account_user(token)

    def _service_account_user(self, token: str) -> User:
        try:
            authenticated = self._tokens.verify(token, [], self._service_account, self._secret)
        except TokenRejected:
            raise unauthorized() from None
        claims = authenticated.claims
        namespace, name, uid = authenticated.account
        extra = {"authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"]} if claims.get("jti") else {}
        return User(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}", service_account_groups(namespace),
                    uid=uid, extra=extra)  # fmt: skip


@dataclass(frozen=True)
class ImpersonationRequest:
    """One thing the caller asks to act as, and the `impersonate` check it needs."""

    resource: str  # users, groups, serviceaccounts, uids, userextras
    name: str
    namespace: str = ""
    subresource: str = ""


def impersonation_requests(headers: list[tuple[str, str]]) -> tuple[User | None, list[ImpersonationRequest]]:
    """The identity the `Impersonate-*` headers ask for (None: no impersonation) and the checks
    it needs, in the real filter's order. Raises a 400 for groups or extras without a user."""
    username = None
    groups: list[str] = []
    uid = ""
    extra: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered == "impersonate-user":
            username = value
        elif lowered == "impersonate-group":
            groups.append(value)
        elif lowered == "impersonate-uid":
            uid = value
        elif lowered.startswith("impersonate-extra-"):
            extra.setdefault(unquote(lowered[len("impersonate-extra-") :]), []).append(value)
    if username is None:
        if groups or extra or uid:
            raise ApiError(400, "BadRequest", "impersonating groups, a uid or extras needs Impersonate-User too")
        return None, []
    checks: list[ImpersonationRequest] = []
    account = split_service_account(username)
    if account is not None:
        checks.append(ImpersonationRequest("serviceaccounts", account[1], namespace=account[0]))
    else:
        checks.append(ImpersonationRequest("users", username))
    checks += [ImpersonationRequest("groups", group) for group in groups]
    for key, values in extra.items():
        checks += [ImpersonationRequest("userextras", value, subresource=key) for value in values]
    if uid:
        checks.append(ImpersonationRequest("uids", uid))
    all_groups = list(groups)
    if account is not None:
        all_groups += [g for g in service_account_groups(account[0]) if g != AUTHENTICATED]
    if username == ANONYMOUS:
        all_groups.append(UNAUTHENTICATED)
    else:
        all_groups.append(AUTHENTICATED)
    return User(username, tuple(dict.fromkeys(all_groups)), uid=uid, extra=extra), checks
