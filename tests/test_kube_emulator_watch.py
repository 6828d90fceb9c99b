"""Contract tests of the emulator's watch (tests/kube_emulator/watch.py).

Watches are what a controller or an informer lives on: list, then watch from the list's
resourceVersion, and trust that no change falls between the two; resume from the last
resourceVersion seen; list again on 410. Each test pins one behaviour of the real API server's
watch (the watch cache in `k8s.io/apiserver/pkg/storage/cacher`), observed through the official
client's `kubernetes.watch.Watch` on the typed list functions, or the dynamic client.

Events arrive on their own schedule, so no test times anything: a watch either reads an exact
number of events (with a generous `timeout_seconds` so a missing event fails the test instead of
hanging it), or runs in a thread that the test waits on with `wait_until`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import urllib3
from kube_emulator import KubeEmulator
from kube_emulator.emulator import TOKEN  # the kubeconfig's admin token
from kubecontract import *
from kubecontract import AUTHORIZATION, AUTHORIZATION_IDS, NAMESPACE_DELETION_DELAY, config_map, failure, wait_until
from kubernetes import client, config, watch
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient

TESTS = Path(__file__).resolve().parent
BOOKMARK_INTERVAL = 0.2  # seconds; a real server sends one about every minute
HISTORY = 50  # changes per resource type a watch can resume across
PATIENCE = 30  # timeout_seconds for watches that must see an exact number of events


@pytest.fixture(scope="module", params=AUTHORIZATION, ids=AUTHORIZATION_IDS)
def emulator(request):
    emu = KubeEmulator(
        authorization=request.param,
        namespace_deletion_delay=NAMESPACE_DELETION_DELAY,
        watch_bookmark_interval=BOOKMARK_INTERVAL,
        watch_history=HISTORY,
    ).start()
    yield emu
    emu.stop()


# --- helpers -----------------------------------------------------------------------------------


def take(stream, count: int) -> list[dict]:
    """The first `count` events of a Watch stream, then the watch is closed."""
    events = []
    for event in stream:
        events.append(event)
        if len(events) == count:
            break
    return events


def seen(events) -> list[tuple[str, str]]:
    return [(event["type"], event["raw_object"]["metadata"].get("name")) for event in events]


def rv(obj) -> int:
    return int(obj.metadata.resource_version)


def raw_watch(emulator, path: str) -> tuple[object, list[dict]]:
    """GET a watch URL with urllib; the response and every event line until the stream ends."""
    request = urllib.request.Request(emulator.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        body = response.read()
    return response, [json.loads(line) for line in body.splitlines() if line]


def raw_watch_events(core, ns, **kwargs) -> tuple[object, list[dict]]:
    """A config map watch through the official client, read to its end as raw JSON lines."""
    response = core.list_namespaced_config_map(ns, watch=True, _preload_content=False, **kwargs)
    try:
        return response, [json.loads(line) for line in response.data.splitlines() if line]
    finally:
        response.release_conn()


class Background:
    """A watch consumed in a thread: its events, and how it ended."""

    def __init__(self, stream):
        self.events: list[dict] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream) -> None:
        try:
            for event in stream:
                self.events.append(event)
        except BaseException as error:  # handed to the test's assertions
            self.error = error

    def names(self, kind: str = "ADDED") -> list[str]:
        return [event["raw_object"]["metadata"]["name"] for event in list(self.events) if event["type"] == kind]


def connection_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("kube-emulator-connection")}


# --- what a watch streams ----------------------------------------------------------------------


def test_watch_from_a_list_streams_each_change_after_it_in_order(core, ns):
    core.create_namespaced_config_map(ns, config_map("before"))
    listed = core.list_namespaced_config_map(ns)
    created = core.create_namespaced_config_map(ns, config_map("a", data={"k": "1"}))
    changed = core.patch_namespaced_config_map("a", ns, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("a", ns)

    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=PATIENCE,
        ),
        3,
    )
    assert seen(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    added, modified, deleted = (event["object"] for event in events)
    assert isinstance(added, client.V1ConfigMap)  # typed, like the list function's items
    assert (added.data, modified.data) == ({"k": "1"}, {"k": "2"})
    assert (rv(added), rv(modified)) == (rv(created), rv(changed))
    # A deletion carries the object as it was last stored, at the deletion's resourceVersion.
    assert deleted.data == {"k": "2"} and rv(deleted) > rv(modified)
    assert events[0]["raw_object"]["kind"] == "ConfigMap" and events[0]["raw_object"]["apiVersion"] == "v1"


def test_watch_without_resource_version_starts_with_the_current_objects(core, ns):
    for name in ("b", "a"):
        core.create_namespaced_config_map(ns, config_map(name))
    for version in (None, "0"):
        extra = {"resource_version": version} if version else {}
        events = take(
            watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=PATIENCE, **extra), 2
        )
        assert seen(events) == [("ADDED", "a"), ("ADDED", "b")]
    # Then the changes that follow, live.
    live = Background(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=PATIENCE))
    wait_until(lambda: live.names() == ["a", "b"])
    core.create_namespaced_config_map(ns, config_map("c"))
    core.delete_namespaced_config_map("a", ns)
    wait_until(lambda: live.names() == ["a", "b", "c"] and live.names("DELETED") == ["a"])


def test_watch_is_a_chunked_stream_of_json_lines_also_for_watch_1(emulator, core, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    response, events = raw_watch(emulator, f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=1")
    assert response.status == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.headers["Content-Type"] == "application/json"
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    assert set(events[0]) == {"type", "object"}


def test_watch_across_namespaces_and_of_cluster_scoped_kinds(core):
    listed = core.list_config_map_for_all_namespaces()
    namespaces = core.list_namespace()
    for namespace in ("w-a", "w-b"):
        core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_config_map(namespace, config_map("shared"))
    everywhere = take(
        watch.Watch().stream(
            core.list_config_map_for_all_namespaces,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=PATIENCE,
        ),
        2,
    )
    assert [(e["object"].metadata.namespace, e["object"].metadata.name) for e in everywhere] == [
        ("w-a", "shared"),
        ("w-b", "shared"),
    ]
    cluster_scoped = take(
        watch.Watch().stream(
            core.list_namespace, resource_version=namespaces.metadata.resource_version, timeout_seconds=PATIENCE
        ),
        2,
    )
    assert seen(cluster_scoped) == [("ADDED", "w-a"), ("ADDED", "w-b")]
    assert isinstance(cluster_scoped[0]["object"], client.V1Namespace)


def test_watch_is_scoped_to_its_namespace(core, ns):
    core.create_namespace({"metadata": {"name": "elsewhere"}})
    listed = core.list_namespaced_config_map(ns)
    core.create_namespaced_config_map("elsewhere", config_map("other"))
    core.create_namespaced_config_map(ns, config_map("mine"))
    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=PATIENCE,
        ),
        1,
    )
    assert seen(events) == [("ADDED", "mine")]


def test_label_selector_sends_leaving_as_deleted_and_entering_as_added(core, ns):
    core.create_namespaced_config_map(ns, config_map("a", labels={"tier": "web"}))
    core.create_namespaced_config_map(ns, config_map("b", labels={"tier": "db"}))
    listed = core.list_namespaced_config_map(ns, label_selector="tier=web")
    left = core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"tier": "db"}}})
    core.patch_namespaced_config_map("b", ns, {"metadata": {"labels": {"tier": "web"}}})
    core.patch_namespaced_config_map("b", ns, {"data": {"k": "v"}})
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "v"}})  # not web: not this watcher's business
    core.delete_namespaced_config_map("b", ns)

    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            label_selector="tier=web",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=PATIENCE,
        ),
        4,
    )
    assert seen(events) == [("DELETED", "a"), ("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "b")]
    gone = events[0]["object"]
    # What it was while it matched, at the resourceVersion of the change that made it leave.
    assert gone.metadata.labels == {"tier": "web"} and rv(gone) == rv(left)


def test_field_selector_filters_events(core, ns):
    listed = core.list_namespaced_config_map(ns)
    for name in ("a", "b", "c"):
        core.create_namespaced_config_map(ns, config_map(name))
    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            field_selector="metadata.name!=b",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=PATIENCE,
        ),
        2,
    )
    assert seen(events) == [("ADDED", "a"), ("ADDED", "c")]


def test_a_watcher_alone_sees_a_namespace_and_its_content_go(core, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    namespaces = core.list_namespace(field_selector=f"metadata.name={ns}")
    config_maps = core.list_namespaced_config_map(ns)
    gone = Background(
        watch.Watch().stream(
            core.list_namespace,
            field_selector=f"metadata.name={ns}",
            resource_version=namespaces.metadata.resource_version,
            timeout_seconds=PATIENCE,
        )
    )
    content = Background(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=config_maps.metadata.resource_version,
            timeout_seconds=PATIENCE,
        )
    )
    core.delete_namespace(ns)
    # No request comes after the delete: the namespace controller still does its work on time.
    wait_until(lambda: [e["type"] for e in gone.events] == ["MODIFIED", "DELETED"])
    assert gone.events[0]["object"].status.phase == "Terminating"
    wait_until(lambda: content.names("DELETED") == ["a"])


def test_a_finalizer_holds_the_deleted_event_until_it_is_removed(core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["pier.dev/cleanup"]}})
    listed = core.list_namespaced_config_map(ns)
    core.delete_namespaced_config_map("held", ns)
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=PATIENCE,
        ),
        2,
    )
    assert seen(events) == [("MODIFIED", "held"), ("DELETED", "held")]
    assert events[0]["object"].metadata.deletion_timestamp is not None


def test_watch_on_one_objects_url_watches_that_name(emulator, core, ns):
    listed = core.list_namespaced_config_map(ns)
    for name in ("a", "b"):
        core.create_namespaced_config_map(ns, config_map(name))
    path = f"/api/v1/namespaces/{ns}/configmaps/b?watch=true&timeoutSeconds=1"
    _, events = raw_watch(emulator, f"{path}&resourceVersion={listed.metadata.resource_version}")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_the_dynamic_client_watches_too(api_client, core, ns, tmp_path):
    dynamic = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    config_maps = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    core.create_namespaced_config_map(ns, config_map("a", data={"k": "v"}))
    events = take(config_maps.watch(namespace=ns, timeout=PATIENCE), 1)
    assert events[0]["type"] == "ADDED"
    assert events[0]["object"].metadata.name == "a" and events[0]["object"].data.k == "v"


def test_discovery_lists_watch_among_the_verbs(core):
    resources = {r.name: r for r in core.get_api_resources().resources}
    assert "watch" in resources["configmaps"].verbs and "watch" in resources["namespaces"].verbs


# --- list, then watch --------------------------------------------------------------------------


def test_every_list_carries_the_resource_version_to_watch_from(core, rbac, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    latest = rv(core.create_namespaced_config_map(ns, config_map("b")))
    lists = (
        core.list_namespaced_config_map(ns),
        core.list_config_map_for_all_namespaces(),
        core.list_namespace(),
        rbac.list_cluster_role(),
        core.list_namespaced_config_map(ns, label_selector="nothing=here"),
    )
    for listed in lists:
        assert int(listed.metadata.resource_version) == latest


def test_no_change_is_lost_between_a_list_and_a_watch_from_it(api_client, core, ns):
    writer_core = client.CoreV1Api(api_client)
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            name = f"c{len(written):04}"
            writer_core.create_namespaced_config_map(ns, config_map(name))
            written.append(name)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(written) >= 5)
        listed = core.list_namespaced_config_map(ns)  # while the writer goes on
        known = [cm.metadata.name for cm in listed.items]
        live = Background(
            watch.Watch().stream(
                core.list_namespaced_config_map,
                ns,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=PATIENCE,
            )
        )
        wait_until(lambda: len(written) >= len(known) + 20)  # some before the watch connects, some after
    finally:
        stop.set()
        writer.join()
    assert 0 < len(known) < len(written)
    wait_until(lambda: len(known) + len(live.events) >= len(written))
    assert {event["type"] for event in live.events} == {"ADDED"}
    assert sorted(known + live.names()) == written  # each object once: in the list or in the watch


# --- resuming and its limits -------------------------------------------------------------------


def test_a_resource_version_older_than_the_history_is_410_expired(emulator, core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    for index in range(HISTORY + 5):
        core.create_namespaced_config_map(ns, config_map(f"c{index}"))
    # On the wire: one in-band ERROR event with a Status, then the stream ends.
    response, events = raw_watch(emulator, f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={start}")
    assert response.status == 200
    assert [event["type"] for event in events] == ["ERROR"]
    status = events[0]["object"]
    assert (status["kind"], status["status"], status["code"], status["reason"]) == ("Status", "Failure", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {start} (")
    # The official client raises it (with timeout_seconds at once; without, after one retry).
    for extra in ({"timeout_seconds": PATIENCE}, {}):
        with pytest.raises(ApiException) as raised:
            take(watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=start, **extra), 1)
        assert raised.value.status == 410 and "too old resource version" in raised.value.reason


def test_the_history_is_kept_per_resource_type(core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, config_map("kept"))
    for index in range(HISTORY + 5):
        core.create_namespaced_secret(ns, {"metadata": {"name": f"s{index}"}})
    events = take(
        watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=PATIENCE), 1
    )
    assert seen(events) == [("ADDED", "kept")]


def test_a_resource_version_from_the_future_is_an_error_event(core, ns):
    future = rv(core.create_namespaced_config_map(ns, config_map("a"))) + 1000
    with pytest.raises(ApiException) as raised:
        take(
            watch.Watch().stream(
                core.list_namespaced_config_map, ns, resource_version=str(future), timeout_seconds=PATIENCE
            ),
            1,
        )
    assert raised.value.status == 504 and "Too large resource version" in raised.value.reason


# --- bookmarks and initial events --------------------------------------------------------------


def test_bookmarks_carry_only_a_resource_version_when_allowed(core, ns):
    latest = rv(core.create_namespaced_config_map(ns, config_map("a")))
    w = watch.Watch()
    events = take(
        w.stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=str(latest),
            allow_watch_bookmarks=True,
            timeout_seconds=PATIENCE,
        ),
        2,
    )
    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]  # periodic; nothing changed meanwhile
    bookmark = events[0]["raw_object"]
    assert bookmark == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": str(latest)}}
    assert w.resource_version == str(latest)  # what the client resumes from
    # Without allowWatchBookmarks, an idle watch sends nothing at all.
    _, idle = raw_watch_events(core, ns, resource_version=str(latest), timeout_seconds=1)
    assert idle == []


def test_a_bookmark_after_changes_moves_past_them(core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, config_map("a"))
    last = rv(core.create_namespaced_secret(ns, {"metadata": {"name": "s"}}))  # another type's write
    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=start,
            allow_watch_bookmarks=True,
            timeout_seconds=PATIENCE,
        ),
        2,
    )
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert int(events[1]["raw_object"]["metadata"]["resourceVersion"]) >= last


def test_send_initial_events_ends_them_with_an_annotated_bookmark(core, ns):
    for name in ("a", "b"):
        core.create_namespaced_config_map(ns, config_map(name))
    latest = core.list_namespaced_config_map(ns).metadata.resource_version
    events = take(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            send_initial_events=True,
            resource_version_match="NotOlderThan",
            allow_watch_bookmarks=True,
            timeout_seconds=PATIENCE,
        ),
        4,
    )
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK", "BOOKMARK"]
    end, periodic = events[2]["raw_object"], events[3]["raw_object"]
    assert end["metadata"] == {"resourceVersion": latest, "annotations": {"k8s.io/initial-events-end": "true"}}
    assert "annotations" not in periodic["metadata"]  # only the first one marks the end


def test_watch_options_are_validated_like_the_real_server(core, ns):
    code, body = failure(core.list_namespaced_config_map, ns, watch=True, send_initial_events=True)
    assert (code, body["reason"]) == (422, "Invalid")
    assert "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan" in body["message"]
    code, body = failure(core.list_namespaced_config_map, ns, watch=True, resource_version_match="NotOlderThan")
    assert code == 422
    assert "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided" in body["message"]
    code, body = failure(core.list_namespaced_config_map, ns, watch=True, label_selector="tier in web")
    assert (code, body["reason"]) == (400, "BadRequest")


# --- how watches end ---------------------------------------------------------------------------


def test_timeout_seconds_ends_the_stream_cleanly(core, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    response, events = raw_watch_events(core, ns, timeout_seconds=1)
    assert response.status == 200 and [e["type"] for e in events] == ["ADDED"]
    # The official client's loop simply ends; the connection serves the next call.
    assert seen(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1)) == [("ADDED", "a")]
    assert core.list_namespaced_config_map(ns).items[0].metadata.name == "a"


def test_a_client_closing_its_watch_frees_the_server_thread(emulator, core, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    before = connection_threads()
    api = emulator.api_client()  # a connection of its own
    w = watch.Watch()
    live = Background(w.stream(client.CoreV1Api(api).list_namespaced_config_map, ns))
    wait_until(lambda: live.names() == ["a"])  # streaming, and now idle
    assert len(connection_threads() - before) == 1
    w.stop()
    live.thread.join(PATIENCE)
    assert not live.thread.is_alive()
    wait_until(lambda: connection_threads() - before == set())
    api.close()


def test_stop_does_not_hang_on_open_watches():
    before = set(threading.enumerate())
    emu = KubeEmulator().start()
    core = client.CoreV1Api(emu.api_client())
    core.create_namespaced_config_map("default", config_map("a"))
    watches = [Background(watch.Watch().stream(core.list_namespaced_config_map, "default")) for _ in range(3)]
    wait_until(lambda: all(w.names() == ["a"] for w in watches))  # each is connected and waiting
    stopper = threading.Thread(target=emu.stop)
    stopper.start()
    stopper.join(PATIENCE)
    assert not stopper.is_alive(), "stop() hung on open watches"
    for live in watches:
        live.thread.join(PATIENCE)
        # The stream ended (or broke off) and the client found no server to watch again.
        assert isinstance(live.error, urllib3.exceptions.HTTPError)
    assert set(threading.enumerate()) - before == set()


def test_subprocess_mode_takes_watch_settings_and_exits_on_sigterm_with_a_watch_open(tmp_path):
    kubeconfig, ready = tmp_path / "config", tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "kube_emulator", "--port", "0", "--kubeconfig", str(kubeconfig),
         "--ready-file", str(ready), "--watch-bookmark-interval", "0.1", "--watch-history", "10"],
        cwd=TESTS,  # the emulator lives beside the tests, outside Pier's packages
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_until(ready.exists, timeout=10)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for index in range(11):
            core.create_namespaced_config_map("default", config_map(f"c{index}"))
        with pytest.raises(ApiException) as raised:  # history of 10
            take(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=start), 1)
        assert raised.value.status == 410
        live = Background(
            watch.Watch().stream(core.list_namespaced_config_map, "default", allow_watch_bookmarks=True)
        )
        wait_until(lambda: any(event["type"] == "BOOKMARK" for event in list(live.events)))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=PATIENCE) == 0
    live.thread.join(PATIENCE)
    api.close()


def test_reset_ends_open_watches_and_nothing_resumes_across_it(emulator, core, ns):
    core.create_namespaced_config_map(ns, config_map("a"))
    bounded = Background(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=PATIENCE))
    resuming = Background(watch.Watch().stream(core.list_namespaced_config_map, ns))
    wait_until(lambda: bounded.names() == ["a"] and resuming.names() == ["a"])
    emulator.reset()
    bounded.thread.join(PATIENCE)
    resuming.thread.join(PATIENCE)
    assert not bounded.thread.is_alive() and bounded.error is None  # ended, as at its timeout
    # A client that watches again from where it was gets 410, and lists the fresh cluster.
    assert isinstance(resuming.error, ApiException) and resuming.error.status == 410
    assert failure(core.read_namespace, ns)[0] == 404


# --- faults and counts -------------------------------------------------------------------------


def test_faults_apply_to_watch_as_its_own_verb(emulator, core, ns):
    emulator.inject_fault(verb="watch", resource="configmaps", status=503, times=1)
    assert core.list_namespaced_config_map(ns).items == []  # a list is not a watch
    with pytest.raises(ApiException) as raised:
        take(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=PATIENCE), 1)
    assert raised.value.status == 503
    assert raw_watch_events(core, ns, timeout_seconds=1)[1] == []  # the fault is spent
    assert emulator.request_count(verb="watch", resource="configmaps") == 2
    assert emulator.request_count(verb="list", resource="configmaps") == 1
    emulator.inject_fault(verb="watch", resource="configmaps", drop=True)
    with pytest.raises(urllib3.exceptions.MaxRetryError) as dropped:
        take(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=PATIENCE), 1)
    assert isinstance(dropped.value.reason, urllib3.exceptions.ProtocolError)


def test_watch_history_and_bookmark_interval_must_make_sense():
    with pytest.raises(ValueError):
        KubeEmulator(watch_history=0)
    with pytest.raises(ValueError):
        KubeEmulator(watch_bookmark_interval=0)
