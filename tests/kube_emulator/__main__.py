"""Run the emulator as its own process: `python -m kube_emulator --port 0 --kubeconfig PATH`.

Prints the URL on the first line of stdout, writes the kubeconfig (if asked) and then the
ready file (if asked, containing the URL), and serves until SIGTERM or SIGINT. Processes
that need a cluster read the kubeconfig; processes that steer it use the URL's `/_emulator/`
endpoints. The ready file is written last and atomically, so it is the signal to wait for.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .emulator import KubeEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kube_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the emulator here")
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    parser.add_argument("--namespace-deletion-delay", type=float, default=0.2, metavar="SECONDS")
    parser.add_argument(
        "--max-token-expiration-seconds", type=int, metavar="SECONDS",
        help="shorten longer TokenRequests to this (kube-apiserver's --service-account-max-token-expiration)",
    )  # fmt: skip
    parser.add_argument(
        "--watch-history", type=int, default=1000, metavar="EVENTS",
        help="changes kept per resource type for watches to resume from (older: 410 Expired)",
    )  # fmt: skip
    parser.add_argument(
        "--watch-bookmark-interval", type=float, default=60.0, metavar="SECONDS",
        help="how often watches with allowWatchBookmarks=true get a BOOKMARK",
    )  # fmt: skip
    parser.add_argument(
        "--authorization", choices=("on", "off"), default="on",
        help="on (the default): authenticate every request and authorize it by RBAC; off: allow everything",
    )  # fmt: skip
    parser.add_argument("--nodes", type=int, default=2, help="ready worker nodes to seed (default 2)")
    parser.add_argument("--pod-start-delay", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--pod-run-seconds", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--job-backoff-seconds", type=float, default=10.0, metavar="SECONDS")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    try:
        emulator = KubeEmulator(
            host=args.host,
            port=args.port,
            namespace_deletion_delay=args.namespace_deletion_delay,
            max_token_expiration_seconds=args.max_token_expiration_seconds,
            watch_history=args.watch_history,
            watch_bookmark_interval=args.watch_bookmark_interval,
            authorization=args.authorization == "on",
            nodes=args.nodes,
            pod_start_delay=args.pod_start_delay,
            pod_run_seconds=args.pod_run_seconds,
            job_backoff_seconds=args.job_backoff_seconds,
        )
    except ValueError as error:
        parser.error(str(error))
    emulator.start()
    try:
        print(emulator.url, flush=True)
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig)
        if args.ready_file:
            partial = args.ready_file.with_name(args.ready_file.name + ".partial")
            partial.write_text(emulator.url + "\n")
            partial.replace(args.ready_file)
        stopping.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
