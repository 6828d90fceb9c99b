"""The API's JSON parsers: DRF's, with the input guard's checks (portal/input_guard.py).

- the body is at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413 beyond);
- nesting is at most MAX_JSON_DEPTH levels, counted on the raw bytes before parsing, so a body
  nested 100,000 deep is refused without recursion (Python's parser would raise RecursionError);
- no key or string value holds a NUL (PostgreSQL text and jsonb cannot store it) or a lone
  surrogate (UTF-8 cannot encode it); the refusal names the field path.

The input guard middleware already refuses such bodies for every request; the parser applies the
same checks to what it parses itself, so the API never depends on the middleware's order.
`MergePatchJSONParser` is the same parser for `application/merge-patch+json` (RFC 7396).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings
from rest_framework.utils import json

from portal.errors import InvalidInput, PierError
from portal.input_guard import json_depth_exceeds, json_depth_reason, json_unstorable


class BodyTooLarge(PierError):
    status = 413
    code = "too_large"


class PierJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = (stream.read(limit + 1) if limit is not None else stream.read()) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge(f"body: larger than the limit of {limit} bytes.", details={"body": ["Too large."]})
        if json_depth_exceeds(raw):
            raise InvalidInput(f"body: {json_depth_reason()}.", details={"body": [json_depth_reason()]})
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            strict = json.strict_constant if api_settings.STRICT_JSON else None
            data = json.loads(raw.decode(encoding), parse_constant=strict)
        except (ValueError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
            raise ParseError(f"JSON parse error - {exc}")
        found = json_unstorable(data)
        if found:
            path, reason = found
            raise InvalidInput(f"{path}: {reason}.", details={path: [reason]})
        return data


class MergePatchJSONParser(PierJSONParser):
    """JSON merge patch bodies (RFC 7396); what merging means is the view's business."""

    media_type = "application/merge-patch+json"
