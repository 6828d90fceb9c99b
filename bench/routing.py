"""Routing: what tenancy costs a request. Requests per second and SQL statements per request of

- routed:   GET /api/v1/tenants/<slug>/members (tenants.api.views.MemberListView): TenantPathMiddleware
            resolves the tenant (in-process cache) and selects its schema, TenantScopedMixin checks
            the caller's membership and the tenant's state;
- baseline: GET /bench/members/<slug> (bench.baseline_urls): the same authentication, membership
            query, queryset, serializer and pagination, in the public schema, no tenancy.

Both go through the whole middleware stack (Django's WSGI handler, called directly) under the same
URLconf, signed in with the same session, for a tenant provisioned by Pier's own path with 21
members (one page). Rounds alternate between the two paths (and which goes first), so that any
drift hits both; each path's figure is its median over the rounds, and the ratio of the two is
also given per pair of adjacent rounds (median), which cancels slower drift. Statements are counted in
separate requests (capturing them slows the cursor), with CaptureQueriesContext on the connection.
"""

from __future__ import annotations

import gc
import json
import time
import uuid

from django.test.utils import override_settings

from bench import baseline_urls
from bench.common import (
    PREFIX, WsgiClient, capture_statements, cleanup_leftovers, create_tenant_with_members, heading,
    is_set_search_path, make_user, make_users, p50, p95, remove_tenants, remove_users, table,
)

MEMBERS = 20  # plus the owner
WARMUP = 100
ROUNDS = 15
REQUESTS = 200
STATEMENT_SAMPLES = 20


def _burst(client: WsgiClient, path: str, count: int) -> list[float]:
    """`count` requests; the seconds each took."""
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        status, body = client.get(path)
        durations.append(time.perf_counter() - start)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body[:300]!r}")
    return durations


def _statements(client: WsgiClient, path: str) -> tuple[float, float, list[str]]:
    """Statements per request (all, and without django-tenants' SET search_path), and one
    request's statements for the listing."""
    per_request = [capture_statements(lambda: client.get(path)) for _ in range(STATEMENT_SAMPLES)]
    total = sum(len(s) for s in per_request) / len(per_request)
    without_set = sum(sum(not is_set_search_path(q) for q in s) for s in per_request) / len(per_request)
    return total, without_set, per_request[-1]


def run(rounds: int = ROUNDS, requests: int = REQUESTS) -> dict:
    heading(f"routing: members list, routed vs no tenancy, {rounds} rounds x {requests} requests")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    slug = f"{PREFIX}route-{run_id}"
    owner = make_user(f"{PREFIX}route-{run_id}-owner")
    members = make_users(f"{PREFIX}route-{run_id}", MEMBERS)
    clients: list[WsgiClient] = []
    try:
        tenant = create_tenant_with_members(slug, owner, members)
        baseline_urls.TENANTS[slug] = tenant
        paths = {"routed": f"/api/v1/tenants/{slug}/members", "baseline": f"/bench/members/{slug}"}
        with override_settings(ROOT_URLCONF="bench.baseline_urls"):
            client = WsgiClient(owner)
            clients.append(client)
            # Sanity: both paths answer the same page.
            bodies = {key: json.loads(client.get(p)[1]) for key, p in paths.items()}
            assert bodies["routed"] == bodies["baseline"], "the two paths answer differently"
            assert bodies["routed"]["count"] == MEMBERS + 1, bodies["routed"]
            for p in paths.values():
                _burst(client, p, WARMUP)
            rates: dict[str, list[float]] = {key: [] for key in paths}
            latencies: dict[str, list[float]] = {key: [] for key in paths}
            order = list(paths)
            for i in range(rounds):
                for key in order if i % 2 == 0 else order[::-1]:
                    gc.collect()
                    durations = _burst(client, paths[key], requests)
                    rates[key].append(requests / sum(durations))
                    latencies[key].extend(durations)
            statements = {key: _statements(client, p) for key, p in paths.items()}
    finally:
        for client in clients:
            client.logout()
        baseline_urls.TENANTS.pop(slug, None)
        remove_tenants([slug])
        remove_users([owner.username, *(m.username for m in members)])

    rps = {key: p50(v) for key, v in rates.items()}
    ratio = rps["routed"] / rps["baseline"]
    paired = p50([r / b for r, b in zip(rates["routed"], rates["baseline"])])
    extra = statements["routed"][0] - statements["baseline"][0]
    print(table(
        ["path", "req/s (median)", "min", "max", "p50 ms", "p95 ms", "statements/req", "w/o SET search_path"],
        [
            [f"{key}: GET {paths[key]}", f"{rps[key]:.0f}", f"{min(rates[key]):.0f}", f"{max(rates[key]):.0f}",
             f"{p50(latencies[key]) * 1000:.2f}", f"{p95(latencies[key]) * 1000:.2f}",
             f"{statements[key][0]:.1f}", f"{statements[key][1]:.1f}"]
            for key in paths
        ],
    ))
    for key in paths:
        print(f"\nstatements of one {key} request:")
        for sql in statements[key][2]:
            print(f"  {sql if len(sql) <= 110 else sql[:107] + '...'}")
    print(f"\nrouted / baseline throughput = {ratio:.3f} (goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}); "
          f"median of the per-round ratios: {paired:.3f}")
    print(f"statements: routed {statements['routed'][0]:.1f} vs baseline {statements['baseline'][0]:.1f} "
          f"(goal <= baseline + 1: {'met' if extra <= 1 else 'NOT met'})")
    return {
        "rps": rps,
        "ratio": ratio,
        "paired_ratio": paired,
        "statements": {key: value[0] for key, value in statements.items()},
        "statements_without_set": {key: value[1] for key, value in statements.items()},
        "latency_ms": {key: p50(v) * 1000 for key, v in latencies.items()},
        "rounds": rounds,
        "requests": requests,
    }
