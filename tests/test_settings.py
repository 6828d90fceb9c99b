"""Production settings are safe by default and refuse to start without a secret."""

import os
import subprocess
import sys

from conftest import ROOT


def _manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "PIER_TESTING", "SECRET_KEY")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_check_deploy_is_clean_with_debug_off():
    result = _manage("check", "--deploy", "--fail-level", "WARNING",
                     SECRET_KEY="x" * 20 + "-a-long-random-production-secret-0123456789",
                     PIER_KEY_PEPPER="p" * 40,
                     ALLOWED_HOSTS="pier.apps.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_off_without_a_secret_key_refuses_to_start():
    result = _manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_debug_off_without_a_shared_cache_refuses_to_start():
    env = {k: v for k, v in os.environ.items() if k != "CACHE_URL"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env={**{k: v for k, v in env.items() if k not in ("DEBUG", "PIER_TESTING")},
                                 "SECRET_KEY": "y" * 60, "PIER_KEY_PEPPER": "p" * 40})
    assert result.returncode != 0
    assert "CACHE_URL must be set when DEBUG is off" in result.stderr
