"""`/openapi/v2` and `/openapi/v3`: present, and empty of schemas.

Clients probe these: kubectl asks for the v3 index and then v2 before a client-side apply, to
find the patch strategy of a kind, and falls back to the kinds compiled into it when the server
has no schema for one. So both answer, as a real server's documents would be shaped, but carry
no definitions: the v2 document is JSON only (a client asking for protobuf alone gets 406 Not
Acceptable and moves on, as from an older server), and the v3 index lists no group-versions.
Schemas are not emulated: a client that validates against them (kubectl apply --validate=true)
gets nothing to validate with.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError


def document(parts: list[str], accept: str, git_version: str) -> Any | None:
    """The answer for `/openapi/...` path parts; None if the path is not an OpenAPI one."""
    if parts == ["openapi", "v2"]:
        if accept and not any(kind in accept for kind in ("application/json", "*/*")):
            raise ApiError(406, "NotAcceptable", f"only the following media types are accepted: application/json", {})
        return {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": git_version},
            "paths": {},
            "definitions": {},
        }
    if parts == ["openapi", "v3"]:
        return {"paths": {}}
    return None
