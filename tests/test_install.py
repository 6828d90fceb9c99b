"""Installs that work outside the test suite's own venv.

- The lock files pin every dependency pyproject.toml declares, within its ranges.
- Pier installed from requirements/runtime.lock (no test extras) into a clean virtualenv, from a
  wheel, runs a Celery worker against Redis that really provisions a tenant, and its web
  process answers /readyz (database and broker).
- Started the standard Django way (runserver, `celery -A portal worker`, `celery -A portal beat`)
  without the launcher and without CELERY_BROKER_URL, in a state folder that does not exist yet:
  creating a tenant answers 202, the worker provisions it, beat starts and its periodic task runs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import PASSWORD, ROOT, _free_port, get, stop_worker, wait_for
from tenants import services
from tenants.models import Tenant

LOCKS = ROOT / "requirements"


def _pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2]
            for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), re.MULTILINE)}


def _hashed_pins(lock: Path) -> list[str]:
    """Every pinned requirement with at least one sha256 hash (what --require-hashes needs)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    return [b.split()[0] for b in blocks if re.match(r"[A-Za-z0-9._-]+==", b) and "--hash=sha256:" in b]


def _declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (project["optional-dependencies"][extra] if extra else project["dependencies"])]


@pytest.mark.parametrize("lock, extras", [("runtime.lock", []), ("test.lock", ["test"])])
def test_lock_files_pin_every_declared_dependency_with_hashes(lock, extras):
    """A dependency added to pyproject.toml without `make lock` fails here (and the install
    from the lock would miss it)."""
    pins = _pins(LOCKS / lock)
    declared = _declared() + [r for extra in extras for r in _declared(extra)]
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {requirement.name}=={pins[name]}, outside pyproject's {requirement.specifier}: run `make lock`")
    assert len(_hashed_pins(LOCKS / lock)) == len(pins), f"every pin in {lock} needs its hashes"
    # Test-only packages stay out of the runtime lock.
    if not extras:
        for requirement in _declared("test"):
            assert canonicalize_name(requirement.name) not in pins


# --- A clean virtualenv from the runtime lock ---------------------------------------------------


def _pip_env() -> dict[str, str]:
    """PyPI only, as on a fresh machine: no local indexes or wheel folders from this machine's pip
    configuration (the pip cache is still used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_INDEX_URL"] = "https://pypi.org/simple"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if os.environ.get("PIP_CERT"):
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _build_wheel(dest: Path, env: dict[str, str] | None = None) -> Path:
    """Pier's wheel, built from a copy of the source files (tracked, or new and not ignored):
    setuptools packages whatever an earlier build left in the checkout's build/ folder, e.g. a
    migration renamed since, which would then run twice."""
    src = dest / "src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): everything but build output
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build", "*.egg-info", ".venv", ".pier", ".uv",
                                                                 "__pycache__"))
    for name in listed.stdout.splitlines() if listed.returncode == 0 else ():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dest / "dist"), str(src)], env=env)
    (wheel,) = (dest / "dist").glob("pier-*.whl")
    return wheel


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory):
    """Pier's wheel (built once) and the runtime lock, installed into a new virtualenv."""
    base = tmp_path_factory.mktemp("install")
    env = _pip_env()
    wheel = _build_wheel(base, env)
    # A bare venv, filled by this suite's pip (`pip --python`): no time spent putting pip in it.
    _run([sys.executable, "-m", "venv", "--without-pip", str(base / "venv")])
    python = base / "venv" / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile"]
    _run([*pip, "--require-hashes", "-r", str(LOCKS / "runtime.lock")], env=env)
    _run([*pip, "--no-deps", str(wheel)], env=env)
    return python


def _venv_env(worker_env: dict[str, str], state: Path) -> dict[str, str]:
    env = {k: v for k, v in worker_env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIER_STATE_DIR"] = str(state)
    env["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]  # the suite's Redis (make test starts it)
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    return env


@pytest.mark.install
def test_pier_from_the_runtime_lock_runs_a_worker_on_redis_and_a_web_process(clean_venv, worker_env, tmp_path,
                                                                             unique_slug):
    run_dir = tmp_path / "run"  # not the checkout: Pier is imported from the venv's site-packages
    run_dir.mkdir()
    env = _venv_env(worker_env, tmp_path / "state")
    where = _run([str(clean_venv), "-c", "import portal, kombu.transport.redis; print(portal.__file__)"],
                 cwd=run_dir, env=env).stdout
    assert str(clean_venv.parent.parent) in where, where
    no_test_extras = subprocess.run([str(clean_venv), "-c", "import pytest"], cwd=run_dir, env=env, capture_output=True)
    assert no_test_extras.returncode != 0, "the clean venv has the test extras"
    no_emulator = subprocess.run([str(clean_venv), "-c", "import kube_emulator"], cwd=run_dir, env=env,
                                 capture_output=True)
    assert no_emulator.returncode != 0, "the Kubernetes API emulator (a test double) was installed"

    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [str(clean_venv), "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "1",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    port = _free_port()
    web = subprocess.Popen([str(clean_venv), "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "1"], cwd=run_dir, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    slug = unique_slug("inst")
    try:
        wait_for(lambda: "ready." in log_path.read_text() or worker.poll() is not None, timeout=60,
                 message="the worker to start")
        assert worker.poll() is None, log_path.read_text()[-3000:]
        staff = get_user_model().objects.get(username="staff")
        with transaction.atomic():
            services.tenant_create(slug=slug, name="Installed", owner="bob", acting_user=staff)
        wait_for(lambda: Tenant.objects.filter(slug=slug, status="active").exists(), timeout=60,
                 message=f"the venv's worker to provision {slug}")
        assert "portal.controller.reconcile_object" in log_path.read_text()  # the kernel's task ran the job

        status, body = wait_for(lambda: (r := get(f"http://127.0.0.1:{port}/readyz"))[0] and r, timeout=30,
                                message="the venv's web process")
        assert status == 200, body
        assert json.loads(body)["checks"]["broker"]["ok"] is True
        # The pages work from the wheel too: templates and static files travel with it.
        status, body = get(f"http://127.0.0.1:{port}/login")
        assert status == 200 and b"Sign in" in body, body[:500]
        assert get(f"http://127.0.0.1:{port}/static/pier/pier.css")[0] == 200

        with transaction.atomic():
            services.tenant_delete(tenant=Tenant.objects.get(slug=slug), acting_user=staff)
        wait_for(lambda: not Tenant.objects.filter(slug=slug).exists(), timeout=60,
                 message=f"the venv's worker to delete {slug}")
    finally:
        stop_worker(worker)
        stop_worker(web)


# --- The standard Django way, without the launcher ----------------------------------------------


def _request(method: str, url: str, payload: dict | None, user: str) -> tuple[int, bytes]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


@pytest.mark.worker
def test_runserver_worker_and_beat_without_the_launcher_or_a_broker_url(worker_env, tmp_path, unique_slug):
    state = tmp_path / f"fresh-{uuid.uuid4().hex[:6]}"  # nothing made it: not the launcher, not a test
    assert not state.exists()
    env = {k: v for k, v in worker_env.items() if k != "CELERY_BROKER_URL"}
    env.update(PIER_STATE_DIR=str(state), PIER_RECONCILE_INTERVAL="1")
    port = _free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "beat", "web")}
    processes = {
        "worker": _spawn([sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO",
                          "--concurrency", "1", "--without-gossip", "--without-mingle"], env, logs["worker"]),
        "beat": _spawn([sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO"], env, logs["beat"]),
        "web": _spawn([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], env, logs["web"]),
    }
    slug = unique_slug("std")
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200 or processes["web"].poll() is not None,
                 timeout=60, message="runserver")
        status, body = _request("POST", f"http://127.0.0.1:{port}/api/v1/admin/tenants",
                                  {"slug": slug, "name": "Standard", "owner": "bob"}, "staff")
        assert status == 202, body[:2000]
        wait_for(lambda: Tenant.objects.filter(slug=slug, status="active").exists()
                 or processes["worker"].poll() is not None, timeout=60, message=f"the worker to provision {slug}")
        assert processes["worker"].poll() is None, logs["worker"].read_text()[-3000:]
        assert Tenant.objects.get(slug=slug).status == "active"
        # Beat keeps its schedule under PIER_STATE_DIR and its periodic task reaches the worker
        # through the same filesystem broker.
        wait_for(lambda: "tenants.tasks.resume_stuck_jobs" in logs["worker"].read_text()
                 or processes["beat"].poll() is not None, timeout=60, message="beat's periodic task to run")
        assert processes["beat"].poll() is None, logs["beat"].read_text()[-3000:]
        assert (state / "celerybeat-schedule").exists() or list(state.glob("celerybeat-schedule*"))
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited: {logs[name].read_text()[-3000:]}"

        status, body = _request("DELETE", f"http://127.0.0.1:{port}/api/v1/admin/tenants/{slug}", None, "staff")
        assert status == 202, body[:2000]
        wait_for(lambda: not Tenant.objects.filter(slug=slug).exists(), timeout=60,
                 message=f"the worker to delete {slug}")
    finally:
        for process in processes.values():
            stop_worker(process)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.worker
def test_beat_makes_the_folder_of_its_schedule_file(worker_env, tmp_path):
    """With a real broker nothing else makes PIER_STATE_DIR: beat makes it for its schedule."""
    state = tmp_path / "nowhere" / "state"
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/14"  # its messages stay off the suite's queue
    env = dict(worker_env, PIER_STATE_DIR=str(state), CELERY_BROKER_URL=redis_url, PIER_RECONCILE_INTERVAL="1")
    log_path = tmp_path / "beat.log"
    beat = _spawn([sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO"], env, log_path)
    try:
        wait_for(lambda: "Sending due task" in log_path.read_text() or beat.poll() is not None, timeout=60,
                 message="beat to send a periodic task")
        assert beat.poll() is None, log_path.read_text()[-3000:]
        assert list(state.glob("celerybeat-schedule*")), list(state.iterdir())
    finally:
        stop_worker(beat)
        import redis

        redis.Redis.from_url(redis_url).flushdb()


def test_an_unwritable_state_folder_is_refused_with_a_clear_message(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env["PIER_STATE_DIR"] = str(blocked / "state")
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "CELERY_BROKER_URL is not set" in result.stderr and "PIER_STATE_DIR" in result.stderr, result.stderr[-2000:]


def test_the_wheel_carries_every_template_and_static_file(tmp_path):
    """pyproject's data-files list folders by hand: a new folder left out would break the pages
    of an installed Pier."""
    import zipfile

    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    prefix = next(n for n in names if "/data/share/pier/" in n).split("/data/share/pier/")[0] + "/data/share/pier/"
    shipped = {n[len(prefix):] for n in names if n.startswith(prefix)}
    wanted = {str(p.relative_to(ROOT)) for folder in ("templates", "static") for p in (ROOT / folder).rglob("*")
              if p.is_file()}
    assert wanted - shipped == set()
    # The Kubernetes API emulator is a test double: nothing of it ships.
    assert not [n for n in names if "kube_emulator" in n or n.startswith("tests/")], sorted(names)[:20]
