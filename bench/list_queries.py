"""List queries: SQL statements per request of the routed members list at several page sizes.

GET /api/v1/tenants/<slug>/members?page_size=N for a tenant with 120 members (provisioned by
Pier's own path), through the whole Django stack, statements counted with CaptureQueriesContext.
The count should not depend on N: the page's users come with their memberships (select_related),
not one query per row.
"""

from __future__ import annotations

import json
import uuid

from bench.common import (
    PREFIX, WsgiClient, capture_statements, cleanup_leftovers, create_tenant_with_members, heading,
    is_set_search_path, make_user, make_users, remove_tenants, remove_users, table,
)

MEMBERS = 119  # plus the owner: 120, more than the largest page below but one
PAGE_SIZES = (10, 50, 100)


def run() -> dict:
    heading(f"list_queries: members list statements per request by page size ({MEMBERS + 1} members)")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    slug = f"{PREFIX}list-{run_id}"
    owner = make_user(f"{PREFIX}list-{run_id}-owner")
    members = make_users(f"{PREFIX}list-{run_id}", MEMBERS)
    client = None
    rows = []
    counts: dict[int, int] = {}
    try:
        create_tenant_with_members(slug, owner, members)
        client = WsgiClient(owner)
        path = f"/api/v1/tenants/{slug}/members"
        for size in PAGE_SIZES:
            client.get(path, f"page_size={size}")  # warm: nothing cached differs between sizes
            result = {}

            def call():
                result["status"], result["body"] = client.get(path, f"page_size={size}")

            statements = capture_statements(call)
            assert result["status"] == 200, result
            page = json.loads(result["body"])
            assert len(page["results"]) == min(size, MEMBERS + 1), (size, len(page["results"]))
            counts[size] = len(statements)
            rows.append([size, len(page["results"]), len(statements),
                         sum(not is_set_search_path(q) for q in statements)])
    finally:
        if client is not None:
            client.logout()
        remove_tenants([slug])
        remove_users([owner.username, *(m.username for m in members)])

    print(table(["page_size", "rows", "statements/req", "w/o SET search_path"], rows))
    constant = len(set(counts.values())) == 1
    print(f"\nstatements independent of page size: {'yes' if constant else 'NO'}")
    return {"counts": counts, "constant": constant}
