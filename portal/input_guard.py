"""The one place where hostile request input is refused before any view runs (HTML, API, admin).

PostgreSQL text cannot hold a NUL byte, UTF-8 cannot encode a lone surrogate, and every column
has a length: a value breaking one of these used to reach a query and end as a 500. This
middleware refuses, with a 400 that names the offending part:

- a NUL byte in the path, the query string, a cookie, Basic credentials or a form field (name
  or value), and a lone surrogate anywhere a decoded string appears;
- a path, a query or form value, or a URL parameter longer than its limit (a tenant slug is at
  most 41 characters, a username 150, …), and an integer URL parameter beyond PostgreSQL's bigint;
- a body Django itself refuses as too large or with too many fields (Pier's error page or the
  JSON error shape instead of Django's bare "Bad Request");
- a JSON body nested deeper than MAX_JSON_DEPTH (counted on the raw bytes, without recursion: a
  body nested 100,000 deep used to raise RecursionError), or with a NUL or a lone surrogate in a
  key or a string value, naming the field path (e.g. `config_overrides["quota.\\u0000"]`).
  Checked here for every request, whether or not its view reads the body, and by the API's
  parser (portal/parsers.py) with the same functions.

It also is the last net for database errors a view let escape (`process_exception`): a
DataError (a value the column cannot store) becomes a 400, an IntegrityError a 409, in the API's
error shape or on Pier's error page, never a debug page or a bare 500. The causes are fixed
where the values are validated; this only keeps a missed one from becoming a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError, IntegrityError

from portal.errors import error_response

logger = logging.getLogger(__name__)

# NUL, and the surrogate code points (which never appear in well-formed decoded text).
FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
MAX_PATH = 2048
MAX_VALUE = 10_000  # one query or form value (the longest Pier field, a description, is 2,000)
MAX_NAME = 200  # one query or form field name
BIGINT_MAX = 2**63 - 1
# URL parameters (portal/urls.py and the apps' urls.py), at most as long as what they name.
PARAM_LIMITS = {
    "tenant_slug": 41, "slug": 41, "project_slug": 63, "username": 150,
}
MAX_JSON_DEPTH = 32  # Pier's deepest body (config_overrides) nests 2 levels
# A JSON string token (skipped: brackets inside strings do not nest) or a bracket.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def describe(value: str, limit: int = 60) -> str:
    """A hostile value made printable (NUL and surrogates escaped) and short, for messages."""
    text = json.dumps(value[:limit])
    return text if len(value) <= limit else text[:-1] + '…"'


def problem(value: str, *, limit: int) -> str | None:
    """Why `value` cannot be accepted, or None."""
    found = FORBIDDEN.search(value)
    if found:
        char = found.group()
        return "contains a NUL character" if char == "\x00" else f"contains a lone surrogate (U+{ord(char):04X})"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    return None


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `raw` JSON nests arrays/objects deeper than `limit`. Iterative; stops at the first
    level past the limit."""
    depth = 0
    for token in _JSON_TOKENS.finditer(raw):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def _child_path(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not path and _PLAIN_KEY.match(key):
        return key
    return f"{path}[{describe(key, limit=100)}]"


def _char_reason(char: str, what: str) -> str:
    if char == "\x00":
        return f"the {what} contains a NUL character, which is not allowed"
    return f"the {what} contains a lone surrogate (U+{ord(char):04X}), which is not valid Unicode"


def json_unstorable(data) -> tuple[str, str] | None:
    """(field path, reason) for the first key or string value of parsed JSON holding a NUL or a
    lone surrogate. Iterative, so any depth is walked safely."""
    stack = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                child = _child_path(path, key)
                found = FORBIDDEN.search(key)
                if found:
                    return child, _char_reason(found.group(), "field name")
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((_child_path(path, i), item) for i, item in enumerate(value))
        elif isinstance(value, str):
            found = FORBIDDEN.search(value)
            if found:
                return path or "body", _char_reason(found.group(), "value")
    return None


def json_depth_reason() -> str:
    return f"nested deeper than the limit of {MAX_JSON_DEPTH} levels"


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _json_body_problem(request) -> tuple[str, str] | None:
    raw = request.body
    if json_depth_exceeds(raw):
        return "body", json_depth_reason()
    try:
        data = json.loads(raw.decode(request.encoding or settings.DEFAULT_CHARSET))
    except (ValueError, LookupError):
        return None  # malformed: the parser refuses it if the view reads the body
    return json_unstorable(data)


def _refuse(request, part: str, reason: str, status: int = 400):
    message = f"{part}: {reason}."
    return error_response(request, status=status, code="too_large" if status == 413 else "invalid_input",
                          message=message, title="Invalid input", details={part: [reason]})


def _basic_credentials(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None  # DRF refuses malformed credentials itself, with a 401


def _query_and_form(request):
    """(part name, value) for every field name and value of the query string and form body."""
    for label, data in (("query", request.GET), ("form", request.POST)):
        for name, values in data.lists():
            yield f"{label} field name {describe(name)}", name, MAX_NAME
            for value in values:
                yield f"{label} field {describe(name)}", value, MAX_VALUE


class InputGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refused = self._check(request)
        return refused or self.get_response(request)

    def _check(self, request):
        reason = problem(request.path, limit=MAX_PATH)
        if reason:
            return _refuse(request, "path", reason)
        for name, value in request.COOKIES.items():
            # A quoted cookie may carry \000 escapes; the session cookie is looked up in the database.
            reason = problem(name, limit=MAX_NAME) or problem(value, limit=4096)
            if reason:
                return _refuse(request, f"cookie {describe(name)}", reason)
        credentials = _basic_credentials(request)
        if credentials is not None:
            reason = problem(credentials, limit=1024)
            if reason:
                return _refuse(request, "Basic credentials", reason)
        try:
            if request.method in BODY_METHODS:
                # Read (at most DATA_UPLOAD_MAX_MEMORY_SIZE) before parsing the form, so the body
                # stays readable for the view: DRF then still answers a form sent to the API with
                # 415. Pier takes no file uploads.
                request.body  # noqa: B018
            for part, value, limit in _query_and_form(request):
                reason = problem(value, limit=limit)
                if reason:
                    return _refuse(request, part, reason)
            if request.method in BODY_METHODS and _is_json(request.content_type or ""):
                found = _json_body_problem(request)
                if found:
                    return _refuse(request, *found)
        except RequestDataTooBig:
            return _refuse(request, "body", f"larger than the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                           status=413)
        except SuspiciousOperation as exc:  # too many fields, malformed multipart
            return _refuse(request, "body", str(exc).rstrip(".") or "not accepted")
        return None

    def process_view(self, request, view_func, view_args, view_kwargs):
        """URL parameters, once resolved: a tenant slug of 100 characters is refused here, before
        any lookup, sign-in redirect or audit row has to deal with it."""
        for name, value in view_kwargs.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > BIGINT_MAX:
                return _refuse(request, f"URL parameter {name}", f"is larger than {BIGINT_MAX}")
            limit = PARAM_LIMITS.get(name)
            if limit is not None and isinstance(value, str) and len(value) > limit:
                return _refuse(request, f"URL parameter {name}", f"is longer than {limit} characters")
        return None

    def process_exception(self, request, exception):
        if isinstance(exception, DataError):
            logger.warning("A value could not be stored (%s %s): %s", request.method, request.path, exception)
            return error_response(
                request, status=400, code="invalid_input", title="Invalid input",
                message="A value is too long or contains characters that cannot be stored.",
            )
        if isinstance(exception, IntegrityError):
            logger.warning("A write conflicted (%s %s): %s", request.method, request.path, exception)
            return error_response(
                request, status=409, code="conflict", title="Conflict",
                message="This conflicts with the current state (another change came first). Reload and try again.",
            )
        return None
