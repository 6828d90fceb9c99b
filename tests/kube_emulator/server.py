"""The HTTP side: a threading HTTP/1.1 server tuned for the official client.

- HTTP/1.1 keep-alive: the client reuses connections from a urllib3 pool, so a connection
  serves many requests and every response carries a Content-Length.
- Latency: `BaseHTTPRequestHandler` writes the headers and the body separately; on a socket
  without TCP_NODELAY the second write waits for the client's delayed ACK, and every request
  takes ~40 ms (measured: 44 ms median per GET). Accepted sockets get TCP_NODELAY, and each
  response is buffered into one write (which also saves a syscall); either alone removes the
  stall, both keep multi-write responses fast too. A GET takes well under a millisecond.
- Watches stream: a 200 with `Transfer-Encoding: chunked`, one chunk per event line, flushed
  at once. When the stream has nothing to send it checks whether the client hung up (the socket
  reads as closed) and, if so, ends it, which frees the thread.
- `stop()` leaves no thread behind: open streams are closed, idle keep-alive connections are
  shut down so that their handler threads return, and `server_close()` joins them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import errors
from .api import KubeApi, Request, Response, Stream

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pier-kube-emulator"
    sys_version = ""
    wbufsize = 64 * 1024  # headers and body leave in one send, flushed after each request
    server: EmulatorHTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            content_type=self.headers.get("Content-Type", ""),
            body=body,
            user_agent=self.headers.get("User-Agent", ""),
            headers=tuple(self.headers.items()),
        )
        try:
            response = self.server.app.handle(request)
        except Exception:
            # A bug in the emulator: loud in the log, a real-looking 500 for the client.
            logger.exception("Kubernetes API emulator failed on %s %s", self.command, self.path)
            response = Response.error(errors.internal_error("unexpected error in the Kubernetes API emulator"))
        if response.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if response.stream is not None:
            self._send_stream(response)
            return
        if isinstance(response.body, bytes):
            payload = response.body
        else:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _send_stream(self, response: Response) -> None:
        """A chunked body (a watch, a followed log), each chunk flushed as it comes; None from the
        stream means nothing to send yet, a moment to check that the client is still there."""
        stream = response.stream
        assert stream is not None
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.server.track_stream(stream)
        try:
            self.wfile.flush()
            for chunk in stream:
                if chunk is None:
                    if self._client_gone():
                        self.close_connection = True
                        return
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")  # the stream ended: the connection can serve again
        except OSError:  # the client went away mid-write
            self.close_connection = True
        finally:
            stream.close()
            self.server.forget_stream(stream)

    def _client_gone(self) -> bool:
        """True once the client closed the connection (it sends nothing while it watches)."""
        poller = select.poll()  # not select(): it fails on descriptors past 1024
        poller.register(self.connection, select.POLLIN)
        try:
            return bool(poller.poll(0)) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, tracked so that `server_close` can join them all.

    (ThreadingMixIn only joins non-daemon threads; non-daemon ones would keep the interpreter
    alive at exit if an emulator is left running, so the tracking is done here.)
    """

    def __init__(self, address: tuple[str, int], app: KubeApi):
        self.app = app
        self._connections: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._streams: set[Stream] = set()
        self._closing = False
        self._tracking_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._tracking_lock:
            self._connections.add(connection)
        return connection, address

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"kube-emulator-connection-{client_address[1]}",
            daemon=True,
        )
        with self._tracking_lock:
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()] + [thread]
        thread.start()

    def track_stream(self, stream: Stream) -> None:
        """An open stream, closed by `server_close`; one opened while closing is closed at once."""
        with self._tracking_lock:
            closing = self._closing
            if not closing:
                self._streams.add(stream)
        if closing:
            stream.close()

    def forget_stream(self, stream: Stream) -> None:
        with self._tracking_lock:
            self._streams.discard(stream)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._tracking_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket, wake every handler thread and wait for all of them.

        Call after `shutdown()`, so that no connection is accepted meanwhile. Streams (watches)
        are closed, and handler threads idle on a keep-alive connection see it shut down and return.
        """
        super().server_close()
        with self._tracking_lock:
            self._closing = True
            connections, threads, streams = list(self._connections), list(self._handler_threads), list(self._streams)
        for stream in streams:
            stream.close()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join()

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up mid-request are routine (dropped-connection faults, test teardown).
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)
