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
    for folder in ("broker/queue", "broker/control", "broker/processed", "cache"):
        (STATE / folder).mkdir(parents=True, exist_ok=True)
    pg = _database(env, STATE / "pgdata", "pier")
    children: list[subprocess.Popen] = []
    try:
        log("migrating the public schema and every tenant schema")
        _manage("migrate_schemas", "--shared", "--noinput", "-v", "0", env=env)
        _manage("migrate_tenants", "-v", "0", env=env)
        _manage("ensure_staff", env=env)
        _manage("collectstatic", "--noinput", "-v", "0", env=env)
        host, port = env.get("PIER_HOST", "127.0.0.1"), env.get("PIER_PORT", "8000")
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


def test(pytest_args: list[str]) -> int:
    env = dict(os.environ)
    ensure_chromium(env)
    env["PIER_TESTING"] = "1"
    state = Path(env.setdefault("PIER_STATE_DIR", str(STATE / "test")))
    # Messages and cache entries of an earlier run name rows of a database that no longer exists.
    shutil.rmtree(state, ignore_errors=True)
    for folder in ("broker/queue", "broker/control", "broker/processed", "cache"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    env.setdefault("CACHE_URL", f"file://{state / 'cache'}")
    pg = _database(env, STATE / "pgdata-test", "pier")
    try:
        code = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=ROOT).returncode
    finally:
        if pg:
            pg.stop()
    if code == 5:
        log("pytest collected no tests: that is a failure")
        return 1
    return code


def bench(args: list[str]) -> int:
    """Run the benchmarks in bench/ against the embedded PostgreSQL (or DATABASE_URL)."""
    env = dict(os.environ)
    env["PIER_TESTING"] = "1"  # local settings; the benchmarks make their own database objects
    state = Path(env.setdefault("PIER_STATE_DIR", str(STATE / "bench")))
    for folder in ("broker/queue", "broker/control", "broker/processed", "cache"):
        (state / folder).mkdir(parents=True, exist_ok=True)
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
