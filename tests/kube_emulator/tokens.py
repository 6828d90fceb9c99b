"""Service-account tokens: TokenRequest (`serviceaccounts/token`) and TokenReview.

What a client observes follows the real API server (`pkg/registry/core/serviceaccount/storage/
token.go`, `pkg/serviceaccount/{jwt,claims}.go`, `pkg/registry/authentication/tokenreview`):

- TokenRequest: admission first (404 for a missing namespace, 403 in a terminating one), then
  the ServiceAccount (404), then validation: `expirationSeconds` defaults to 3600 when omitted,
  and must be between 600 and 2^32 (422 Invalid otherwise). The server may then shorten it, to
  `--service-account-max-token-expiration` (here `max_expiration_seconds`), and answers the
  expiration it granted, in `spec.expirationSeconds` and `status.expirationTimestamp`. Empty
  audiences default to the API server's own.
- The token is a JWT shaped like the real one: header `{"alg": "RS256", "kid": ...}`, claims
  iss, sub (`system:serviceaccount:<ns>:<name>`), aud, exp, iat, nbf, jti and `kubernetes.io`
  (namespace, serviceaccount name and uid). It is signed with HMAC-SHA256 under a random key of
  this emulator, not RS256: only this emulator can verify it, which is all a test double needs.
- TokenReview answers `authenticated` with the user (username, the ServiceAccount's uid,
  groups, the credential id) and the audiences both sides accept; otherwise `error`, with the
  real server's messages. A token dies with its ServiceAccount: deleted, or deleted and
  re-created under the same name (a new uid), it no longer authenticates. Expiry allows the
  real server's one minute of leeway (go-jose's DefaultLeeway).

- Legacy tokens (`kubernetes.io/service-account-token` Secrets, filled by the token controller
  in `serviceaccounts.py`): issuer `kubernetes/serviceaccount`, the flat `kubernetes.io/
  serviceaccount/...` claims, no expiry. They authenticate while their Secret exists and holds
  that very token and the ServiceAccount exists with the uid they name (the real server's
  legacy validator, `pkg/serviceaccount/legacy.go`).

Bound tokens (`spec.boundObjectRef`) and attestations are refused as unsupported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import errors
from .clock import Clock, rfc3339
from .errors import ApiError
from .registry import Registry, ResourceType, Subresource
from .store import Store
from .validation import dns1123_subdomain, invalid

Obj = dict[str, Any]

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
ISSUER = "https://kubernetes.default.svc.cluster.local"  # kubeadm's and kind's default
LEGACY_ISSUER = "kubernetes/serviceaccount"  # Secret-based tokens
LEGACY_CLAIM = "kubernetes.io/serviceaccount/"

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
LEEWAY_SECONDS = 60  # go-jose's jwt.DefaultLeeway, applied to exp, nbf and iat

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
INVALID_BEARER_TOKEN = "invalid bearer token"


class TokenRejected(Exception):
    """Why a token does not authenticate: the TokenReview's `status.error`."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    issued_at: int  # seconds since the epoch
    expires_at: int


@dataclass(frozen=True)
class Authenticated:
    claims: Obj
    audiences: list[str]  # the requested audiences the token is for

    @property
    def legacy(self) -> bool:
        return self.claims.get("iss") == LEGACY_ISSUER

    @property
    def account(self) -> tuple[str, str, str]:
        """(namespace, name, uid) of the ServiceAccount the token is for."""
        if self.legacy:
            return tuple(str(self.claims.get(LEGACY_CLAIM + key) or "")  # type: ignore[return-value]
                         for key in ("namespace", "service-account.name", "service-account.uid"))
        private = self.claims.get("kubernetes.io") or {}
        reference = private.get("serviceaccount") or {}
        return str(private.get("namespace") or ""), str(reference.get("name") or ""), str(reference.get("uid") or "")

    @property
    def secret_name(self) -> str:
        return str(self.claims.get(LEGACY_CLAIM + "secret.name") or "") if self.legacy else ""


class TokenAuthority:
    """The cluster's service-account token issuer and authenticator (its signing key and flags)."""

    def __init__(self, clock: Clock, *, max_expiration_seconds: int | None = None):
        if max_expiration_seconds is not None and (
            isinstance(max_expiration_seconds, bool)
            or not isinstance(max_expiration_seconds, int)
            or not 3600 <= max_expiration_seconds <= MAX_EXPIRATION_SECONDS
        ):
            # kube-apiserver refuses to start with such a --service-account-max-token-expiration.
            raise ValueError("max_token_expiration_seconds must be between 1 hour and 2^32 seconds (or None)")
        self.max_expiration_seconds = max_expiration_seconds
        self.issuer = ISSUER
        self.api_audiences = [ISSUER]
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._key_id = _b64(hashlib.sha256(b"key id:" + self._key).digest())

    def granted_expiration(self, requested: int) -> int:
        if self.max_expiration_seconds is not None:
            return min(requested, self.max_expiration_seconds)
        return requested

    def issue(self, account: Obj, audiences: list[str], expiration_seconds: int) -> IssuedToken:
        metadata = account["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        now = int(self._clock.time())
        claims = {
            "aud": audiences,
            "exp": now + expiration_seconds,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": metadata["uid"]}},
            "nbf": now,
            "sub": service_account_username(namespace, name),
        }
        header = {"alg": "RS256", "kid": self._key_id}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        return IssuedToken(f"{signing_input}.{_b64(self._sign(signing_input))}", now, now + expiration_seconds)

    def issue_legacy(self, account: Obj, secret_name: str) -> str:
        """The token the token controller writes into a `kubernetes.io/service-account-token`
        Secret of the account's namespace: no expiry, valid while the Secret holds it."""
        metadata = account["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        claims = {
            "iss": LEGACY_ISSUER,
            LEGACY_CLAIM + "namespace": namespace,
            LEGACY_CLAIM + "secret.name": secret_name,
            LEGACY_CLAIM + "service-account.name": name,
            LEGACY_CLAIM + "service-account.uid": metadata["uid"],
            "sub": service_account_username(namespace, name),
        }
        header = {"alg": "RS256", "kid": self._key_id}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        return f"{signing_input}.{_b64(self._sign(signing_input))}"

    def verify(self, token: str, audiences: list[str], account_of: Callable[[str, str], Obj | None],
               secret_of: Callable[[str, str], Obj | None] | None = None) -> Authenticated:
        """Everything the service-account authenticator checks, lookups included (a legacy
        token's Secret through `secret_of`; without it, legacy tokens are refused). Raises
        `TokenRejected`."""
        authenticated = self.authenticate(token, audiences)
        namespace, name, _ = authenticated.account
        if authenticated.legacy:
            secret = secret_of(namespace, authenticated.secret_name) if secret_of and namespace else None
            stored = ((secret or {}).get("data") or {}).get("token") or ""
            if secret is None or (secret["metadata"].get("deletionTimestamp")):
                raise _rejected("token has been invalidated")
            try:
                held = base64.b64decode(stored, validate=True)
            except (binascii.Error, ValueError):
                held = b""
            if not hmac.compare_digest(held, token.encode()):
                raise _rejected("token does not match server's copy")
        self.check_service_account(authenticated, account_of(namespace, name) if namespace and name else None)
        return authenticated

    def authenticate(self, token: str, audiences: list[str]) -> Authenticated:
        """The checks of the JWT authenticator, in its order, short of the ServiceAccount lookup
        (the caller's, with `check_service_account`). Raises `TokenRejected`."""
        claims = self._unverified_claims(token)
        if claims is None or claims.get("iss") not in (self.issuer, LEGACY_ISSUER):
            raise TokenRejected(INVALID_BEARER_TOKEN)  # not a token of this issuer: no authenticator takes it
        header_part, payload_part, signature_part = token.split(".")
        header = _decode_json(header_part)
        if not isinstance(header, dict):
            raise TokenRejected(INVALID_BEARER_TOKEN)  # not a JWS after all
        if header.get("kid") not in (None, "", self._key_id):
            raise _rejected("invalid signature, no keys found")
        signature = _decode_b64(signature_part)
        if signature is None or not hmac.compare_digest(signature, self._sign(f"{header_part}.{payload_part}")):
            raise _rejected("go-jose/go-jose: error in cryptographic primitive")
        token_audiences = claims.get("aud") or self.api_audiences
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        requested = audiences or self.api_audiences
        accepted = [audience for audience in requested if audience in token_audiences]
        if not accepted:
            raise _rejected(
                f"token audiences {_go_quoted(token_audiences)} is invalid for the target audiences "
                f"{_go_quoted(requested)}"
            )
        now = self._clock.time()
        if _number(claims, "nbf") is not None and now + LEEWAY_SECONDS < _number(claims, "nbf"):
            raise _rejected("service account token is not valid yet")
        if _number(claims, "exp") is not None and now - LEEWAY_SECONDS > _number(claims, "exp"):
            raise _rejected("service account token has expired")
        if _number(claims, "iat") is not None and now + LEEWAY_SECONDS < _number(claims, "iat"):
            raise _rejected("service account token is issued in the future")
        return Authenticated(claims, accepted)

    def check_service_account(self, authenticated: Authenticated, account: Obj | None) -> None:
        """The token's ServiceAccount must still exist, with the uid it was issued for."""
        namespace, name, uid = authenticated.account
        if account is None:
            raise _rejected("service account token has been invalidated")
        metadata = account["metadata"]
        deleted = metadata.get("deletionTimestamp")
        if deleted and _epoch(deleted) < self._clock.time() - LEEWAY_SECONDS:
            raise _rejected(f"service account {namespace}/{name} has been deleted")
        if metadata["uid"] != uid:
            raise _rejected(f"service account UID ({metadata['uid']}) does not match claim ({uid})")

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()

    @staticmethod
    def _unverified_claims(token: str) -> Obj | None:
        """The payload of a compact JWS, unverified; None if the token is not one."""
        parts = token.split(".")
        if len(parts) != 3 or token.lstrip().startswith("{"):
            return None
        claims = _decode_json(parts[1])
        return claims if isinstance(claims, dict) else None


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


# --- the served endpoints --------------------------------------------------------------------


class TokenRequestHandler:
    """`POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`."""

    KIND = "TokenRequest"

    def __init__(self, store: Store, service_accounts: ResourceType, authority: TokenAuthority):
        self._store = store
        self._service_accounts = service_accounts
        self._authority = authority

    def create(self, namespace: str, name: str, body: Any) -> Obj:
        request = _decode(body, self.KIND)
        metadata = request["metadata"]
        for field, expected in (("name", name), ("namespace", namespace)):
            if metadata.get(field) not in (None, "", expected):
                detail = f"must match the service account {field} if specified"
                problem = invalid(f"metadata.{field}", metadata[field], detail)
                raise errors.invalid(GROUP, self.KIND, name, [problem])
        self._store.admit_create(self._service_accounts, namespace, name)
        account = self._store.get(self._service_accounts, namespace, name)
        spec = _spec(request)
        for unsupported in ("boundObjectRef", "attestations"):
            if spec.get(unsupported):
                raise errors.unsupported_feature(f"spec.{unsupported} of a TokenRequest")
        audiences = _strings(spec, "audiences") or list(self._authority.api_audiences)
        requested = spec.get("expirationSeconds")
        if requested is None:
            requested = DEFAULT_EXPIRATION_SECONDS
        elif isinstance(requested, bool) or not isinstance(requested, int):
            raise errors.bad_request("spec.expirationSeconds must be an integer")
        for out_of_range, limit in (
            (requested < MIN_EXPIRATION_SECONDS, "less than 10 minutes"),
            (requested > MAX_EXPIRATION_SECONDS, "larger than 2^32 seconds"),
        ):
            if out_of_range:  # validated after the lookup, and reported without a name, as the real server does
                problem = invalid("spec.expirationSeconds", requested, f"may not specify a duration {limit}")
                raise errors.invalid(GROUP, self.KIND, "", [problem])
        granted = self._authority.granted_expiration(requested)
        issued = self._authority.issue(account, audiences, granted)
        return {
            "kind": self.KIND,
            "apiVersion": API_VERSION,
            "metadata": {
                **metadata, "name": name, "namespace": namespace, "creationTimestamp": rfc3339(issued.issued_at),
            },
            "spec": {"audiences": audiences, "expirationSeconds": granted, "boundObjectRef": None},
            "status": {"token": issued.token, "expirationTimestamp": rfc3339(issued.expires_at)},
        }


class TokenReviewHandler:
    """`POST /apis/authentication.k8s.io/v1/tokenreviews`: nothing is stored."""

    KIND = "TokenReview"

    def __init__(self, store: Store, service_accounts: ResourceType, authority: TokenAuthority,
                 secrets: ResourceType | None = None):
        self._store = store
        self._service_accounts = service_accounts
        self._secrets = secrets
        self._authority = authority

    def create(self, namespace: str, name: str, body: Any) -> Obj:
        review = _decode(body, self.KIND)
        spec = _spec(review)
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        return {
            "kind": self.KIND,
            "apiVersion": API_VERSION,
            "metadata": review["metadata"],
            "spec": spec,
            "status": self._review(token, _strings(spec, "audiences")),
        }

    def _review(self, token: str, audiences: list[str]) -> Obj:
        try:
            authenticated = self._authority.verify(token, audiences, self._lookup(self._service_accounts),
                                                   self._lookup(self._secrets) if self._secrets else None)
        except TokenRejected as rejection:
            # `authenticated: false` is omitted and `user` is empty but present, as Go encodes them.
            return {"user": {}, "error": str(rejection)}
        claims = authenticated.claims
        namespace, name, uid = authenticated.account
        user: Obj = {
            "username": service_account_username(namespace, name),
            "uid": uid,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        }
        if claims.get("jti"):
            user["extra"] = {CREDENTIAL_ID: [f"JTI={claims['jti']}"]}
        return {"authenticated": True, "user": user, "audiences": authenticated.audiences}

    def _lookup(self, resource: ResourceType) -> Callable[[str, str], Obj | None]:
        def get(namespace: str, name: str) -> Obj | None:
            if not namespace or not name:
                return None
            try:
                return self._store.get(resource, namespace, name)
            except ApiError as error:
                if error.code in (404, 422):  # gone, or a name that cannot exist
                    return None
                raise

        return get


def register_token_api(registry: Registry, store: Store, authority: TokenAuthority) -> None:
    """Serve `serviceaccounts/token` and `tokenreviews` on this registry, backed by `store`."""
    service_accounts = registry.get("", "v1", "serviceaccounts")
    if service_accounts is None:
        raise ValueError("the registry lacks serviceaccounts")
    registry.register_subresource(
        Subresource(
            service_accounts, "token", GROUP, "v1", TokenRequestHandler.KIND,
            handler=TokenRequestHandler(store, service_accounts, authority),
        )
    )  # fmt: skip
    registry.register(
        ResourceType(
            GROUP, "v1", TokenReviewHandler.KIND, "tokenreviews", False, dns1123_subdomain,
            verbs=("create",),
            handler=TokenReviewHandler(store, service_accounts, authority, registry.get("", "v1", "secrets")),
        )
    )  # fmt: skip


# --- encoding --------------------------------------------------------------------------------


def _decode(body: Any, kind: str) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request is not a {kind} object")
    obj = dict(body)
    api_version, body_kind = obj.pop("apiVersion", None), obj.pop("kind", None)
    if api_version not in (None, "", API_VERSION):
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({API_VERSION})"
        )
    if body_kind not in (None, "", kind):
        raise errors.bad_request(f"the kind in the data ({body_kind}) does not match the expected kind ({kind})")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise errors.bad_request("metadata must be an object")
    obj["metadata"] = metadata
    return obj


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.bad_request("spec must be an object")
    return {key: value for key, value in spec.items() if value is not None}


def _strings(spec: Obj, field: str) -> list[str]:
    values = spec.get(field) or []
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise errors.bad_request(f"spec.{field} must be a list of strings")
    return list(values)


def _rejected(reason: str) -> TokenRejected:
    # The service-account authenticator's error, as the union of authenticators reports it.
    return TokenRejected(f"[{INVALID_BEARER_TOKEN}, {reason}]")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode_b64(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return None


def _decode_json(part: str) -> Any:
    data = _decode_b64(part)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _number(claims: Obj, name: str) -> float | None:
    value = claims.get(name)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def _go_quoted(values: list[str]) -> str:
    """Go's `%q` of a []string: `["a" "b"]`."""
    return "[" + " ".join(json.dumps(value) for value in values) + "]"
