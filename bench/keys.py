"""Access keys: what authenticating with a key costs a request, against a browser's session.

The same request, GET /api/v1/tenants/<slug>/projects/<project> (the project detail, the API view
tenants.projects.api.views.ProjectDetailView), for the same project, two ways:

- key:     `Authorization: Bearer <token>`, no cookie: tenants.projects.authentication checks the
           token locally (its peppered HMAC-SHA256 hash, looked up in the tenant's schema) and
           writes the key's last_used_at at most once a minute; the key's project role comes
           from the key, with no tenant membership or group lookups;
- session: the session cookie of the tenant's owner (django.test.Client.force_login): the session
           row and the user are read, then the membership and the groups, as for a browser.

Both go through the whole Django stack (Django's WSGI handler called directly, as in
bench/routing.py), in interleaved rounds (alternating which goes first); each path's figure is
its median over the rounds, and the difference in ms per request is also given per pair of
adjacent rounds (median). The key is issued by Pier's own path, tenants.projects.services.key_create
(ServiceAccount, RoleBinding and TokenRequest against the Kubernetes API emulator, started in
this process as in bench/projects.py), for a project created by the service and reconciled once
in-process, in a tenant provisioned by Pier's path.

last_used_at: the first request of a key in a minute writes it (one autocommitted UPDATE), the
others read only. Statements are counted both ways, the write is timed separately (requests
right after last_used_at was set back by more than a minute), and the timed rounds start right
after a write, so they are all steady state: last_used_at is checked unchanged after them.
Statements are counted in separate requests (capturing slows the cursor), with
CaptureQueriesContext on the connection; the figure is the median over the samples (a request that
finds the connection older than DB_CONN_MAX_AGE reconnects and sets its search_path again, once a
minute, for either path).

The hash alone (token_hash) is timed with timeit, on the token the emulator issued and on a token
of a real cluster's length (its header and claims, with an RS256 signature's 342 characters).
"""

from __future__ import annotations

import gc
import json
import time
import timeit
import uuid
from datetime import timedelta

from bench.common import (
    PREFIX, WsgiClient, capture_statements, cleanup_leftovers, create_tenant, emulated_cluster, heading,
    is_set_search_path, make_user, no_reconcile_enqueue, p50, p95, quiet_reconciler, remove_tenants, remove_users,
    table,
)

PROJECT = "site"
KEY_NAME = "bench-ci"
WARMUP = 50
ROUNDS = 11
REQUESTS = 100
STATEMENT_SAMPLES = 20
WRITE_SAMPLES = 11  # requests that write last_used_at, each after setting it back (the first one captured)
HASH_NUMBER = 20_000
HASH_REPEAT = 7
RS256_SIGNATURE_CHARS = 342  # base64url of a 2048-bit RSA signature, as a real cluster signs


class BearerClient(WsgiClient):
    """WsgiClient's request, with `Authorization: Bearer <token>` and no cookie (as curl or a CI job)."""

    def __init__(self, token: str):
        from django.core.handlers.wsgi import WSGIHandler

        self.credentials = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        self.handler = WSGIHandler()

    def logout(self) -> None:
        pass


def _burst(client, path: str, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        status, body = client.get(path)
        durations.append(time.perf_counter() - start)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body[:300]!r}")
    return durations


def _is_update(sql: str) -> bool:
    return sql.lstrip().upper().startswith("UPDATE")


def _captured(client, path: str) -> list[str]:
    result = {}

    def call():
        result["status"], result["body"] = client.get(path)

    statements = capture_statements(call)
    assert result["status"] == 200, (result["status"], result["body"][:300])
    return statements


def _statements(client, path: str) -> dict:
    """Statements per request: the median (what a request costs; a sample that reconnected, once
    the connection is DB_CONN_MAX_AGE old, adds a SET search_path), the mean, the median without
    SET search_path, UPDATEs in all the samples, and one typical request's statements."""
    per_request = [_captured(client, path) for _ in range(STATEMENT_SAMPLES)]
    median = p50([len(s) for s in per_request])
    return {
        "median": median,
        "mean": sum(len(s) for s in per_request) / len(per_request),
        "without_set": p50([sum(not is_set_search_path(q) for q in s) for s in per_request]),
        "updates": sum(_is_update(q) for s in per_request for q in s),
        "sample": next(s for s in reversed(per_request) if len(s) == median),
    }


def _hash_us(token: str) -> float:
    """token_hash per call in µs: the best of HASH_REPEAT timeit runs of HASH_NUMBER calls."""
    from tenants.projects.authentication import token_hash

    runs = timeit.repeat(lambda: token_hash(token), number=HASH_NUMBER, repeat=HASH_REPEAT)
    return min(runs) / HASH_NUMBER * 1e6


def _real_length(token: str) -> str:
    """The emulator's token (HS256, 43-character signature) with a real cluster's RS256 signature length."""
    import base64
    import os

    header, payload, _ = token.split(".")
    signature = base64.urlsafe_b64encode(os.urandom(RS256_SIGNATURE_CHARS * 3 // 4 + 1)).decode().rstrip("=")
    return f"{header}.{payload}.{signature[:RS256_SIGNATURE_CHARS]}"


def _show(statements: list[str]) -> None:
    for sql in statements:
        print(f"  {sql if len(sql) <= 110 else sql[:107] + '...'}")


def run(rounds: int = ROUNDS, requests: int = REQUESTS) -> dict:
    from django.db import connection
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile
    from tenants.projects import services as project_services
    from tenants.projects.access import Access
    from tenants.projects.models import AccessKey, Project

    heading(f"keys: project detail, access key vs session, {rounds} rounds x {requests} requests")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    slug = f"{PREFIX}keys-{run_id}"
    owner = make_user(f"{PREFIX}keys-{run_id}-owner")
    clients: list = []
    wall = time.perf_counter()
    try:
        with emulated_cluster(), no_reconcile_enqueue(), quiet_reconciler():
            tenant = create_tenant(slug, owner)[0]
            assert tenant.status == "active", f"{slug}: provisioning ended {tenant.status}: {tenant.status_message}"
            with tenant_context(tenant):
                project = project_services.project_create(tenant=tenant, slug=PROJECT, acting_user=owner)
                outcomes = reconcile.run(project.pk)
                project.refresh_from_db()
                assert project.status == Project.Status.READY, (project.status, outcomes)
                key, token = project_services.key_create(tenant=tenant, project=project, name=KEY_NAME, role="view",
                                                         acting_user=owner, access=Access("admin", "bench"))
                assert key.last_used_at is None

            # Read and set back last_used_at by the table's qualified name: a tenant_context here
            # would make the next request set its search_path again (one more statement, not the key's).
            table_name = (f"{connection.ops.quote_name(tenant.schema_name)}."
                          f"{connection.ops.quote_name(AccessKey._meta.db_table)}")

            def last_used():
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT last_used_at FROM {table_name} WHERE id = %s", [key.pk])
                    return cursor.fetchone()[0]

            def set_back():
                """As if the key's last request were more than a minute ago."""
                with connection.cursor() as cursor:
                    cursor.execute(f"UPDATE {table_name} SET last_used_at = %s WHERE id = %s",
                                   [timezone.now() - timedelta(minutes=1, seconds=1), key.pk])

            path = f"/api/v1/tenants/{slug}/projects/{PROJECT}"
            session = WsgiClient(owner)
            clients.append(session)
            bearer = BearerClient(token)
            clients.append(bearer)
            clients_by_key = {"key": bearer, "session": session}

            # last_used_at: the key's very first request writes it, the next ones (same minute) do not.
            first = _captured(bearer, path)
            written = last_used()
            assert written is not None, "the first request with the key should set last_used_at"
            second = _captured(bearer, path)
            assert last_used() == written, "a second request within the minute should not write last_used_at"

            # Sanity: both ways answer the same project; each is authenticated the way it should be.
            bodies = {k: json.loads(c.get(path)[1]) for k, c in clients_by_key.items()}
            assert bodies["key"] == bodies["session"], "the two ways answer differently"
            assert bodies["key"]["slug"] == PROJECT, bodies["key"]
            sources = {k: json.loads(c.get(f"{path}/access")[1])["source"] for k, c in clients_by_key.items()}
            assert sources == {"key": f"access key {KEY_NAME}", "session": "organization owner"}, sources

            for c in clients_by_key.values():
                _burst(c, path, WARMUP)

            # The write once a minute: one request right after setting last_used_at back, timed.
            write_ms = []
            write_statements = []
            for i in range(WRITE_SAMPLES):
                set_back()
                gc.collect()
                if i == 0:
                    write_statements = _captured(bearer, path)
                    continue
                write_ms.append(_burst(bearer, path, 1)[0] * 1000)

            # Steady state: the last request wrote last_used_at, so none of the rounds should
            # (unless they outlast a minute: then the check below says how many did).
            set_back()
            bearer.get(path)
            before = last_used()
            rates: dict[str, list[float]] = {k: [] for k in clients_by_key}
            latencies: dict[str, list[float]] = {k: [] for k in clients_by_key}
            order = list(clients_by_key)
            timed = time.perf_counter()
            for i in range(rounds):
                for k in order if i % 2 == 0 else order[::-1]:
                    gc.collect()
                    durations = _burst(clients_by_key[k], path, requests)
                    rates[k].append(requests / sum(durations))
                    latencies[k].extend(durations)
            timed = time.perf_counter() - timed
            after = last_used()
            writes_in_rounds = 0 if after == before else max(1, round((after - before).total_seconds() / 60))
            statements = {k: _statements(c, path) for k, c in clients_by_key.items()}
            # The hash alone, on the issued token and on one of a real cluster's length.
            hashed = {len(token): _hash_us(token)}
            real = _real_length(token)
            hashed[len(real)] = _hash_us(real)
    finally:
        for c in clients:
            c.logout()
        remove_tenants([slug])
        remove_users([owner.username])
    wall = time.perf_counter() - wall

    rps = {k: p50(v) for k, v in rates.items()}
    latency_ms = {k: p50(v) * 1000 for k, v in latencies.items()}
    difference = latency_ms["key"] - latency_ms["session"]
    paired = p50([1000 / a - 1000 / b for a, b in zip(rates["key"], rates["session"])])
    first_updates = sum(_is_update(q) for q in first)
    second_updates = sum(_is_update(q) for q in second)
    write_updates = sum(_is_update(q) for q in write_statements)

    print(f"\nGET {path}, {rounds} interleaved rounds x {requests} requests ({timed:.1f} s, steady state: "
          f"last_used_at written {writes_in_rounds} times during the rounds)")
    print(table(
        ["auth", "req/s (median)", "min", "max", "p50 ms", "p95 ms", "statements/req", "mean",
         "w/o SET search_path", f"UPDATEs in {STATEMENT_SAMPLES}"],
        [[f"{k}: {'Authorization: Bearer <token>' if k == 'key' else 'session cookie (force_login)'}",
          f"{rps[k]:.0f}", f"{min(rates[k]):.0f}", f"{max(rates[k]):.0f}", f"{latency_ms[k]:.2f}",
          f"{p95(latencies[k]) * 1000:.2f}", f"{statements[k]['median']:g}", f"{statements[k]['mean']:.2f}",
          f"{statements[k]['without_set']:g}", statements[k]["updates"]] for k in clients_by_key],
    ))
    for k in clients_by_key:
        print(f"\nstatements of one {k} request (steady state):")
        _show(statements[k]["sample"])
    print(f"\nstatements of the request that writes last_used_at (once a minute per key): "
          f"{len(write_statements)} ({write_updates} UPDATE), p50 {p50(write_ms):.2f} ms over {len(write_ms)} "
          f"requests (steady state p50 {latency_ms['key']:.2f} ms)")
    _show([q for q in write_statements if _is_update(q)])
    print(f"the key's first request: {len(first)} statements ({first_updates} UPDATE); its second, same minute: "
          f"{len(second)} ({second_updates} UPDATE); steady state: {statements['key']['median']:g} "
          f"({statements['key']['updates']} UPDATE in {STATEMENT_SAMPLES} requests)")
    print(f"\nkey check cost per request (key p50 - session p50): {difference:+.3f} ms; median of the per-round "
          f"differences of mean ms/request: {paired:+.3f} ms; key / session throughput {rps['key'] / rps['session']:.3f}")
    print("token_hash (HMAC-SHA256, peppered): " + ", ".join(
        f"{us:.2f} µs for a {length}-character token" for length, us in hashed.items())
        + f" (best of {HASH_REPEAT} x {HASH_NUMBER:,} calls)")
    print(f"\nkeys benchmark: {wall:.1f} s in all (set-up and clean-up included)")
    real_length = max(hashed)
    return {
        "rps": rps,
        "latency_ms": latency_ms,
        "difference_ms": difference,
        "paired_difference_ms": paired,
        "statements": {k: v["median"] for k, v in statements.items()},
        "statements_mean": {k: v["mean"] for k, v in statements.items()},
        "statements_without_set": {k: v["without_set"] for k, v in statements.items()},
        "updates": {k: v["updates"] for k, v in statements.items()},
        "statement_samples": STATEMENT_SAMPLES,
        "write_statements": len(write_statements),
        "write_updates": write_updates,
        "write_ms": p50(write_ms),
        "writes_in_rounds": writes_in_rounds,
        "hash_us": hashed[real_length],
        "hash_token_chars": real_length,
        "hash_us_by_length": hashed,
        "rounds": rounds,
        "requests": requests,
    }
