#!/usr/bin/env python3
"""Pier's reference session runner: the program in the runner container of a session's Job.

It reads the session from its mounted file, clones the session's repositories into the
workspace, asks an OpenAI-compatible endpoint for one chat completion, prints the answer, and
ends its stdout with the result line Pier's controller reads. runner/README.md holds the
contract; this file implements it with the standard library only (Python 3.11).

Every line printed before the result line starts with "pier-runner: " or "| ", so only the
last line can be JSON: an answer that contains a result-shaped line cannot pass for the result,
even when the runner is killed right after printing it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

RESULT_KEY = "pier.dev/result"
DEFAULT_SESSION_FILE = "/etc/pier/session/session.json"
DEFAULT_WORKSPACE = "/workspace"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT_SECONDS = 600
# Seconds of the session's timeout kept back from the model call, so that a slow endpoint
# still leaves time to report the failure before the Job's deadline stops the pod.
REPORT_RESERVE_SECONDS = 5
SUMMARY_LIMIT = 4000
EXCERPT_LIMIT = 200  # of an error body or git's stderr, in a message
MESSAGE_LIMIT = 500

EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_GIT = 3
EXIT_MODEL = 4
EXIT_TERMINATED = 128 + signal.SIGTERM


class RunnerError(Exception):
    """A failure to report: its message becomes the result line's, its code the exit code."""

    def __init__(self, message: str, *, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM arrived (the Job's deadline, a deleted session). A BaseException so that no
    `except Exception` on the way swallows it."""


class Output:
    """Everything the runner prints goes through here, with every secret it knows replaced."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def add_secret(self, value: str | None) -> None:
        if not value:
            return
        for form in {value, urllib.parse.quote(value, safe=""), urllib.parse.quote(value)}:
            if form not in self.secrets:
                self.secrets.append(form)
        self.secrets.sort(key=len, reverse=True)  # the longest first: a form may contain another

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def log(self, line: str) -> None:
        _write(self.redact(f"pier-runner: {line}"))

    def answer(self, text: str) -> None:
        for line in self.redact(text).splitlines() or [""]:
            _write(f"| {line}")

    def result(self, body: dict[str, Any]) -> None:
        for key in ("summary", "message"):
            if key in body:
                body[key] = self.redact(body[key])
        if "summary" in body:
            body["summary"] = body["summary"][:SUMMARY_LIMIT]
        # ASCII-only: no raw U+2028 or similar that a reader's splitlines() would cut the line at.
        _write(json.dumps({RESULT_KEY: body}, ensure_ascii=True, separators=(",", ":")))


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- The session ----------------------------------------------------------------------------


def read_session(path: str) -> dict[str, Any]:
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RunnerError(f"cannot read the session file {path}: {error.strerror or error}", exit_code=EXIT_CONFIG)
    except UnicodeDecodeError:
        raise RunnerError(f"the session file {path} is not UTF-8 text", exit_code=EXIT_CONFIG)
    try:
        session = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RunnerError(f"the session file {path} is not valid JSON: {error}", exit_code=EXIT_CONFIG)
    if not isinstance(session, dict) or not isinstance(session.get("spec"), dict):
        raise RunnerError(f"the session file {path} has no spec object", exit_code=EXIT_CONFIG)
    return session


def _config_error(message: str) -> NoReturn:
    raise RunnerError(f"session spec: {message}", exit_code=EXIT_CONFIG)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The fields the runner uses, checked; absent optional fields become None or []."""
    prompt = spec.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        _config_error("prompt must be a non-empty string")

    llm = spec.get("llm") or {}
    if not isinstance(llm, dict):
        _config_error("llm must be an object")
    model = llm.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        _config_error("llm.model must be a string")
    temperature = llm.get("temperature")
    if temperature is not None and not _is_number(temperature):
        _config_error("llm.temperature must be a number")
    max_tokens = llm.get("maxTokens")
    if max_tokens is not None and not _is_positive_int(max_tokens):
        _config_error("llm.maxTokens must be a positive integer")

    timeout = spec.get("timeoutSeconds")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_SECONDS
    elif not _is_positive_int(timeout):
        _config_error("timeoutSeconds must be a positive integer")

    repos = spec.get("repos") or []
    if not isinstance(repos, list):
        _config_error("repos must be a list")
    for index, repo in enumerate(repos):
        if not isinstance(repo, dict) or not isinstance(repo.get("url"), str) or not repo["url"].strip():
            _config_error(f"repos[{index}].url must be a non-empty string")
        branch = repo.get("branch")
        if branch is not None and (not isinstance(branch, str) or branch.startswith("-")):
            _config_error(f"repos[{index}].branch must be a branch name")

    env = spec.get("env") or []
    if not isinstance(env, list):
        _config_error("env must be a list")
    session_env = {entry["name"]: str(entry.get("value", "")) for entry in env
                   if isinstance(entry, dict) and isinstance(entry.get("name"), str)}

    return {
        "prompt": prompt,
        "model": model,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout,
        "repos": [{"url": repo["url"].strip(), "branch": repo.get("branch") or None} for repo in repos],
        "env": session_env,
    }


def refuse_key_redirect(session_env: dict[str, str]) -> None:
    """The runner secret reaches the container after the session's own env (Pier lists it last in
    `envFrom`), so where both name a variable the secret's value is the one in effect. A session
    can still set OPENAI_BASE_URL where the secret does not, and have the secret's key sent to
    its own host; refused unless the key in effect is the session's own (it brings both, and the
    secret's key is not involved). Compared by value: naming OPENAI_API_KEY is not enough."""
    url, key = os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_KEY")
    url_is_the_sessions = "OPENAI_BASE_URL" in session_env and url == session_env["OPENAI_BASE_URL"]
    if url_is_the_sessions and key and key != session_env.get("OPENAI_API_KEY"):
        raise RunnerError(
            "the session's env sets OPENAI_BASE_URL and the API key in effect is the runner secret's: the "
            "runner secret's key is not sent to a URL the session chose",
            exit_code=EXIT_CONFIG,
        )


# --- Repositories ---------------------------------------------------------------------------


def without_userinfo(url: str) -> str:
    """The URL as it may be printed: any user:password@ in it dropped."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def with_token(url: str, *, username: str, token: str | None) -> str:
    """The URL git is given: the token injected into https URLs that carry no credentials."""
    parts = urllib.parse.urlsplit(url)
    if not token or parts.scheme != "https" or "@" in parts.netloc:
        return url
    userinfo = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(token, safe='')}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def directory_name(url: str, taken: set[str]) -> str:
    path = urllib.parse.urlsplit(url).path if "://" in url else url.rpartition(":")[2]
    base = path.rstrip("/").rpartition("/")[2].removesuffix(".git")
    base = re.sub(r"[^A-Za-z0-9._-]", "-", base).strip(".-") or "repo"
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(name)
    return name


def clone_repos(repos: list[dict[str, Any]], *, workspace: Path, deadline: float, out: Output) -> list[dict[str, str]]:
    if not repos:
        return []
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        taken = {entry.name for entry in workspace.iterdir()}
    except OSError as error:
        raise RunnerError(f"cannot use the workspace {workspace}: {error.strerror or error}", exit_code=EXIT_GIT)
    username = os.environ.get("GIT_USERNAME") or "x-access-token"
    token = os.environ.get("GIT_TOKEN") or None
    git_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # nobody is there to type a password
    cloned = []
    for repo in repos:
        shown = without_userinfo(repo["url"])
        target = workspace / directory_name(repo["url"], taken)
        command = ["git", "clone", "--quiet", "--depth", "1"]
        if repo["branch"]:
            command += ["--branch", repo["branch"]]
        command += ["--", with_token(repo["url"], username=username, token=token), str(target)]
        _git(command, env=git_env, deadline=deadline, out=out, what=f"git clone {shown}")
        # git keeps the URL it cloned from as the remote: leave none with the token on disk.
        _git(["git", "-C", str(target), "remote", "set-url", "origin", repo["url"]],
             env=git_env, deadline=deadline, out=out, what=f"git remote set-url for {shown}")
        branch_note = f" (branch {repo['branch']})" if repo["branch"] else ""
        out.log(f"cloned {shown}{branch_note} into {target}")
        cloned.append({"url": shown, "branch": repo["branch"] or "", "path": str(target)})
    return cloned


def _git(command: list[str], *, env: dict[str, str], deadline: float, out: Output, what: str) -> None:
    try:
        completed = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            timeout=max(1.0, deadline - time.monotonic()),
        )
    except FileNotFoundError:
        raise RunnerError("git is not installed in the runner image", exit_code=EXIT_GIT)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"{what} timed out (the session's timeoutSeconds)", exit_code=EXIT_GIT)
    if completed.returncode != 0:
        detail = one_line(out.redact(completed.stderr or completed.stdout or ""), EXCERPT_LIMIT) or "no output"
        raise RunnerError(f"{what} failed (exit {completed.returncode}): {detail}", exit_code=EXIT_GIT)


# --- The model endpoint ---------------------------------------------------------------------


def system_prompt(cloned: list[dict[str, str]]) -> str:
    if not cloned:
        return "You are running as a Pier agentic session. No repositories were cloned for this session."
    lines = ["You are running as a Pier agentic session. These repositories were cloned for it:"]
    for repo in cloned:
        branch = f" (branch {repo['branch']})" if repo["branch"] else ""
        lines.append(f"- {repo['url']}{branch} at {repo['path']}")
    return "\n".join(lines)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would resend the Authorization header to wherever it points (and turn the POST
    into a GET): treat it as the endpoint's error instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _on_deadline(signum, frame) -> NoReturn:
    raise TimeoutError


def ask_model(
    *, base_url: str, api_key: str | None, body: dict[str, Any], timeout: float, out: Output
) -> dict[str, Any]:
    url = f"{base_url}/chat/completions"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", "pier-runner/1")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    opener = urllib.request.build_opener(_NoRedirects)
    # The socket timeout bounds each read; the alarm bounds the whole exchange (an endpoint
    # that trickles bytes would otherwise never time out).
    previous = signal.signal(signal.SIGALRM, _on_deadline)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with opener.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        excerpt = one_line(out.redact(_read_quietly(error)), EXCERPT_LIMIT)
        raise RunnerError(
            f"the model endpoint answered HTTP {error.code} {error.reason}" + (f": {excerpt}" if excerpt else ""),
            exit_code=EXIT_MODEL,
        )
    except (TimeoutError, urllib.error.URLError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(error, TimeoutError) or isinstance(reason, TimeoutError):
            raise RunnerError(f"the model endpoint did not answer within {timeout:.0f} s", exit_code=EXIT_MODEL)
        raise RunnerError(f"cannot reach the model endpoint {url}: {reason}", exit_code=EXIT_MODEL)
    except (OSError, ValueError) as error:  # a connection reset mid-reply, a malformed URL
        raise RunnerError(f"talking to the model endpoint {url} failed: {error}", exit_code=EXIT_MODEL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    try:
        reply = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        excerpt = one_line(out.redact(raw.decode(errors="replace")), EXCERPT_LIMIT)
        raise RunnerError(f"the model endpoint's reply is not JSON: {excerpt}",
                          exit_code=EXIT_MODEL)
    if not isinstance(reply, dict):
        raise RunnerError("the model endpoint's reply is not a JSON object", exit_code=EXIT_MODEL)
    return reply


def _read_quietly(error: urllib.error.HTTPError) -> str:
    try:
        return error.read(4096).decode(errors="replace")
    except Exception:  # the body is only a hint for the message
        return ""


def answer_text(reply: dict[str, Any]) -> str:
    try:
        choice = reply["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise RunnerError("the model endpoint's reply has no choices[0].message.content", exit_code=EXIT_MODEL)
    if isinstance(content, list):  # content parts, as some compatible servers send
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        content = "".join(text for text in texts if isinstance(text, str))
    if not isinstance(content, str):
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        raise RunnerError(f"the model endpoint's reply has no text (finish_reason: {finish})", exit_code=EXIT_MODEL)
    return content


# --- The run --------------------------------------------------------------------------------


def run(out: Output) -> dict[str, Any]:
    started = time.monotonic()
    out.add_secret(os.environ.get("OPENAI_API_KEY"))
    out.add_secret(os.environ.get("GIT_TOKEN"))

    session_file = os.environ.get("PIER_SESSION_FILE") or DEFAULT_SESSION_FILE
    session = read_session(session_file)
    spec = parse_spec(session["spec"])
    metadata = session.get("metadata") if isinstance(session.get("metadata"), dict) else {}
    name = os.environ.get("PIER_SESSION_NAME") or metadata.get("name") or "(unnamed)"
    project = os.environ.get("PIER_PROJECT") or metadata.get("namespace") or "(unknown)"

    refuse_key_redirect(spec["env"])
    base_url = (os.environ.get("OPENAI_BASE_URL") or "").strip().rstrip("/")
    if not base_url:
        raise RunnerError("OPENAI_BASE_URL is not set: add it to the project's runner secret", exit_code=EXIT_CONFIG)
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise RunnerError("OPENAI_BASE_URL must be an http(s) URL, e.g. https://api.openai.com/v1",
                          exit_code=EXIT_CONFIG)

    out.log(f"session {name} (project {project}): model {spec['model']}")
    deadline = started + spec["timeout"]
    workspace = Path(os.environ.get("PIER_WORKSPACE") or DEFAULT_WORKSPACE)
    cloned = clone_repos(spec["repos"], workspace=workspace, deadline=deadline, out=out)

    body: dict[str, Any] = {
        "model": spec["model"],
        "messages": [
            {"role": "system", "content": system_prompt(cloned)},
            {"role": "user", "content": spec["prompt"]},
        ],
    }
    if spec["temperature"] is not None:
        body["temperature"] = spec["temperature"]
    if spec["max_tokens"] is not None:
        body["max_tokens"] = spec["max_tokens"]
    timeout = max(1.0, deadline - time.monotonic() - REPORT_RESERVE_SECONDS)
    out.log(f"asking {without_userinfo(base_url)}/chat/completions (timeout {timeout:.0f} s)")
    api_key = os.environ.get("OPENAI_API_KEY") or None
    reply = ask_model(base_url=base_url, api_key=api_key, body=body, timeout=timeout, out=out)
    text = answer_text(reply)

    out.log("answer:")
    out.answer(text)
    result: dict[str, Any] = {
        "outcome": "succeeded",
        "summary": text,
        "model": reply["model"] if isinstance(reply.get("model"), str) else spec["model"],
    }
    if isinstance(reply.get("usage"), dict):
        result["usage"] = reply["usage"]
    out.log(f"done in {time.monotonic() - started:.1f} s")
    return result


def _on_sigterm(signum, frame) -> NoReturn:
    raise Terminated


def main() -> int:
    # PID 1 in a container ignores SIGTERM unless it handles it: handle it, so that a stopped
    # session still ends with a result line instead of waiting for SIGKILL.
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    out = Output()
    try:
        out.result(run(out))
        return 0
    except RunnerError as error:
        message, code = str(error), error.exit_code
    except Terminated:
        message, code = "the runner was stopped (SIGTERM) before it finished", EXIT_TERMINATED
    except Exception as error:  # a bug in this runner: still end with a result line
        message, code = f"internal error: {type(error).__name__}: {error}", EXIT_INTERNAL
    message = one_line(out.redact(message))  # redacted before cut: a cut secret would not match
    out.log(f"failed: {message}")
    out.result({"outcome": "failed", "message": message})
    return code


if __name__ == "__main__":
    sys.exit(main())
