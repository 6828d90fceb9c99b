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


# Secrets shorter than 32 bytes are refused at start, naming the variable. A production start
# (DEBUG off) with everything else valid, so only the secret under test can be refused.
_PRODUCTION = {"SECRET_KEY": "s" * 60, "PIER_KEY_PEPPER": "p" * 40, "ALLOWED_HOSTS": "pier.apps.example.com"}


def test_a_short_key_pepper_is_refused_at_start():
    result = _manage("check", **{**_PRODUCTION, "PIER_KEY_PEPPER": "p" * 31})
    assert result.returncode != 0
    assert "ImproperlyConfigured: PIER_KEY_PEPPER is 31 bytes long; it must be at least 32 bytes" in result.stderr


def test_a_short_key_pepper_is_refused_in_debug_too():
    # An explicit pepper is what hashes the keys, whatever the mode.
    result = _manage("check", DEBUG="1", PIER_KEY_PEPPER="x")
    assert result.returncode != 0
    assert "PIER_KEY_PEPPER is 1 bytes long" in result.stderr


def test_secret_lengths_are_counted_in_bytes_and_32_is_enough():
    # 16 characters of two bytes each: 32 bytes.
    result = _manage("check", **{**_PRODUCTION, "PIER_KEY_PEPPER": "é" * 16, "SECRET_KEY": "k" * 32})
    assert result.returncode == 0, result.stderr[-2000:]
    result = _manage("check", **{**_PRODUCTION, "PIER_KEY_PEPPER": "é" * 15 + "x"})
    assert result.returncode != 0
    assert "PIER_KEY_PEPPER is 31 bytes long" in result.stderr


def test_a_short_secret_key_is_refused_when_debug_is_off():
    result = _manage("check", **{**_PRODUCTION, "SECRET_KEY": "k" * 31})
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is 31 bytes long; it must be at least 32 bytes" in result.stderr
    # A developer's run may use any key.
    result = _manage("check", DEBUG="1", SECRET_KEY="short")
    assert result.returncode == 0, result.stderr[-2000:]


def test_debug_off_without_a_broker_refuses_to_start():
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DEBUG", "PIER_TESTING")}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env={**env, **_PRODUCTION})
    assert result.returncode != 0
    assert "CELERY_BROKER_URL must be set when DEBUG is off" in result.stderr
