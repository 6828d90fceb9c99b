"""A simulated Pier session runner: what a runner pod does on the simulated cluster.

Pier starts an agentic session as a Job whose pod carries the label `pier.dev/session` and whose
container reads its session from the file named by `PIER_SESSION_FILE`, a key of a ConfigMap
mounted as a volume. When the simulated kubelet starts such a container (`kubelet.py`), it reads
that file from the stored ConfigMap, as the mount would show it (the env var's path against the
container's `volumeMounts`, their `subPath`, and the volume's `items`), and the container behaves
like Pier's reference runner, without a model:

- at start it writes its progress: `pier-runner (simulated): session <name>: model <model>`, one
  `would clone <url> (branch <branch>)` per repo, `prompt of <N> characters`, then the answer,
  `Simulated answer: <the first 200 characters of the prompt>` (one log line per line);
- when it ends, as the last log line, its result: `{"pier.dev/result": {"outcome": "succeeded",
  "summary": <the answer>, "model": <model>}}` for exit code 0, else `{"pier.dev/result":
  {"outcome": "failed", "message": <why>}}`. The result follows the exit code the container
  really ended with, so a test hook's or marker's code gets a failed result naming it.
- stopped while it runs (its pod deleted: a stopped session, the Job's deadline), it handles
  SIGTERM as the reference runner does: a failed result `the runner was stopped (SIGTERM)
  before it finished`, exit code 143 (not the kubelet's 137 for a killed container).

The prompt steers it: `fail` anywhere in it (any case) is a failed model call (exit 4, no
answer); `pier:exit=N` exits with N; `pier:sleep=SECONDS` is the run time (otherwise the
kubelet's default). A session file that is not there (an optional volume whose ConfigMap is
missing, a key the ConfigMap lacks) or not a JSON object exits 2 with a failed result saying so.
A non-optional volume whose ConfigMap is missing never gets here: the kubelet keeps the pod in
ContainerCreating (`FailedMount`) until it appears.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

SESSION_LABEL = "pier.dev/session"
SESSION_FILE_ENV = "PIER_SESSION_FILE"
RESULT_KEY = "pier.dev/result"
PREFIX = "pier-runner (simulated): "
DEFAULT_MODEL = "simulated"
ANSWER_CHARACTERS = 200
MODEL_FAILED_EXIT_CODE = 4  # the reference runner's code for "the model endpoint failed"
BAD_SESSION_EXIT_CODE = 2
STOPPED_EXIT_CODE = 143  # 128 + SIGTERM: the runner handles it and reports
STOPPED_MESSAGE = "the runner was stopped (SIGTERM) before it finished"
FAILURE_MESSAGE = "simulated failure: the prompt asked for one"

SLEEP_DIRECTIVE = re.compile(r"pier:sleep=(\d+(?:\.\d+)?)")
EXIT_DIRECTIVE = re.compile(r"pier:exit=(\d+)")


@dataclass(frozen=True)
class SimulatedRunner:
    """How one runner container behaves: the lines it writes as it starts, its exit code and run
    time (None: the kubelet's default), and the result line it writes as it ends."""

    progress_lines: tuple[str, ...]
    exit_code: int
    run_seconds: float | None
    summary: str = ""
    model: str = DEFAULT_MODEL
    failure_message: str = ""

    def result_line(self, exit_code: int) -> str:
        if exit_code == 0:
            result = {"outcome": "succeeded", "summary": self.summary, "model": self.model}
        elif exit_code == self.exit_code and self.failure_message:
            result = {"outcome": "failed", "message": self.failure_message}
        else:  # a test hook or a marker chose another code than the session did
            result = {"outcome": "failed", "message": f"simulated failure: exit code {exit_code}"}
        return json.dumps({RESULT_KEY: result}, ensure_ascii=False)

    def stopped_result_line(self) -> str:
        return json.dumps({RESULT_KEY: {"outcome": "failed", "message": STOPPED_MESSAGE}}, ensure_ascii=False)


def simulated_runner(
    pod: Obj, container: Obj, read_config_map: Callable[[str], Obj | None]
) -> SimulatedRunner | None:
    """The runner `container` of `pod` is, or None if it is not a session runner.
    `read_config_map(name)` is the stored ConfigMap of the pod's namespace, or None."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    path = _env_value(container, SESSION_FILE_ENV)
    if SESSION_LABEL not in labels or not path:
        return None
    text = session_file_text(pod, container, path, read_config_map)
    if text is None:
        return _unusable(f"session file not found: {path}")
    try:
        session = json.loads(text)
    except ValueError as error:
        return _unusable(f"session file is not valid JSON: {error}")
    if not isinstance(session, dict):
        return _unusable("session file is not a JSON object")
    return _from_session(session, labels[SESSION_LABEL])


def session_file_text(
    pod: Obj, container: Obj, path: str, read_config_map: Callable[[str], Obj | None]
) -> str | None:
    """The file at `path` as the container would see it, if a configMap volume holds it."""
    path = posixpath.normpath(path)
    mount, mount_path = None, ""
    for candidate in container.get("volumeMounts") or []:  # the innermost mount holding the path
        candidate_path = posixpath.normpath(candidate.get("mountPath") or "/")
        inside = path == candidate_path or path.startswith(candidate_path.rstrip("/") + "/")
        if inside and (mount is None or len(candidate_path) > len(mount_path)):
            mount, mount_path = candidate, candidate_path
    if mount is None:
        return None
    relative = "" if path == mount_path else posixpath.relpath(path, mount_path)
    sub_path = mount.get("subPath") or ""
    in_volume = posixpath.normpath(posixpath.join(sub_path, relative)) if sub_path or relative else ""
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    source = (volumes.get(mount.get("name")) or {}).get("configMap")
    if not isinstance(source, dict):
        return None
    items = source.get("items")
    if items:
        keys = [item.get("key") for item in items if posixpath.normpath(item.get("path") or "") == in_volume]
        key = keys[0] if keys else None
    else:
        key = in_volume if in_volume and "/" not in in_volume else None
    config_map = read_config_map(source.get("name") or "")
    if key is None or config_map is None:
        return None
    data = config_map.get("data") or {}
    if key in data:
        return data[key]
    binary = (config_map.get("binaryData") or {}).get(key)
    if binary is None:
        return None
    try:
        return base64.b64decode(binary).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None


def _from_session(session: Obj, label_name: str) -> SimulatedRunner:
    metadata = _mapping(session.get("metadata"))
    spec = _mapping(session.get("spec"))
    name = _text(metadata.get("name")) or label_name
    model = _text(_mapping(spec.get("llm")).get("model")) or DEFAULT_MODEL
    prompt = _text(spec.get("prompt"))
    lines = [f"{PREFIX}session {name}: model {model}"]
    for repo in spec.get("repos") if isinstance(spec.get("repos"), list) else []:
        repo = _mapping(repo)
        branch = _text(repo.get("branch"))
        which = f"branch {branch}" if branch else "default branch"
        lines.append(f"{PREFIX}would clone {_text(repo.get('url'))} ({which})")
    lines.append(f"{PREFIX}prompt of {len(prompt)} characters")
    sleep = SLEEP_DIRECTIVE.search(prompt)
    run_seconds = float(sleep.group(1)) if sleep else None
    answer = f"Simulated answer: {prompt[:ANSWER_CHARACTERS]}"
    exit_directive = EXIT_DIRECTIVE.search(prompt)
    if exit_directive and int(exit_directive.group(1)) <= 255:
        code = int(exit_directive.group(1))
        failure = f"simulated failure: exit code {code}" if code else ""
    elif "fail" in prompt.lower():
        code, failure = MODEL_FAILED_EXIT_CODE, FAILURE_MESSAGE
    else:
        code, failure = 0, ""
    if code == 0:
        lines += answer.splitlines() or [answer]
    return SimulatedRunner(tuple(lines), code, run_seconds, summary=answer, model=model, failure_message=failure)


def _unusable(message: str) -> SimulatedRunner:
    return SimulatedRunner((f"{PREFIX}{message}",), BAD_SESSION_EXIT_CODE, None, failure_message=message)


def _env_value(container: Obj, name: str) -> str:
    for variable in container.get("env") or []:
        if isinstance(variable, dict) and variable.get("name") == name:
            return _text(variable.get("value"))
    return ""


def _mapping(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
