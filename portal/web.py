"""The web process: daphne with Gatehouse's guards at the HTTP layer. Run `python -m portal.web -b HOST -p PORT`.

Twisted, under daphne, reads a request's whole body (into a temporary file when it is large) before
daphne hands the request to the ASGI application; by then an over-limit or unauthenticated upload has
already cost its bandwidth and disk. So the checks that must happen before the body is read live here,
where the headers are complete and the body has not been read yet:

- a `Content-Length` over MAX_REQUEST_BODY_BYTES on an API path is answered 413 at once (file uploads
  have their own limit, batches/limits.py);
- a chunked body (no length) on an API path is cut off with 413 once it passes the limit;
- a body on an API path is not read until the caller's key is verified (settings.API_AUTHENTICATOR;
  usually one dict lookup in apiaccess/auth.py's cache): a missing or bad key is answered 401 at once;
- a request line or header block over 16 KiB, or more than 500 header lines (Twisted's limits), gets a
  JSON 431, any other malformed request head a JSON 400, both with `x-request-id`, instead of a bare
  400, a reset or daphne's HTML page.

The listen backlog (WEB_LISTEN_BACKLOG) and the idle timeout for connections that send nothing
(WEB_IDLE_TIMEOUT_SECONDS) are set here too; daphne's own defaults are 50 and 12 hours.

On SIGTERM (a deploy, `docker compose stop`, a Kubernetes rollout) or Ctrl-C, daphne cancels every
request it is answering at once, cutting streams mid-answer. DrainingServer first stops listening, so
new connections go to the other web processes, and lets the HTTP requests in flight finish, for up to
WEB_DRAIN_SECONDS, before daphne cancels what is left; the Redis writes of those (their slots, limits
and usage records) are made before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import defer
from twisted.web import http

log = logging.getLogger(__name__)

API_PREFIXES = (b"/v1/", b"/api/", b"/ollama/")
LINGER_SECONDS = 2  # nginx's lingering_timeout is 5 s; a client that is still sending gets a reset after it
HEADER_LIMIT_BYTES = http.HTTPChannel.totalHeadersSize  # 16384: request line plus all header lines


def _error_bytes(status: int, reason: str, message: str, code: str | None, *, ollama: bool = False,
                 anthropic: bool = False) -> bytes:
    """A whole HTTP/1.1 response carrying an OpenAI error object (Ollama's `{"error": message}` under
    /ollama/, Anthropic's error object on its Messages API paths); the connection closes after it."""
    from inference.anthropic_api.errors import error_body
    from inference.web.middleware import new_request_id

    request_id = new_request_id()
    error = message if ollama else {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    payload = {**error_body(status, message), "request_id": request_id} if anthropic else {"error": error}
    body = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"x-request-id: {request_id}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _Headers:
    """What an API authenticator reads from a request (apiaccess/auth.py reads `headers` only)."""

    def __init__(self, request: http.Request, path: str) -> None:
        from django.utils.datastructures import CaseInsensitiveMapping

        self.headers = CaseInsensitiveMapping({
            name.decode("latin-1"): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        })
        self.path = path
        self.method = request.channel._command.decode("latin-1")
        self.scheme = "https" if request.isSecure() else "http"  # for links in the answer (common/siteurl.py)


class GuardedRequest(WebRequest):
    """daphne's request, refusing bodies it should not read before reading them (module docstring)."""

    _refused = False
    _received = 0
    _verifying: asyncio.Future | None = None
    _process_when_verified = False
    _api_path = b""

    def gotLength(self, length):
        from batches.limits import request_body_limit

        channel = self.channel
        path = (channel._path or b"").split(b"?", 1)[0]
        if not path.startswith(API_PREFIXES) or length == 0:
            return super().gotLength(length)
        self._api_path = path  # the channel forgets it once the whole body has arrived
        limit = request_body_limit(path.decode("latin-1"))
        if length is not None and length > limit:
            return self.refuse(413, "Payload Too Large",
                               f"Request body too large: the limit is {limit} bytes.", "request_too_large")
        caller = _Headers(self, path.decode("latin-1"))
        # Never spool more than the limit, whatever the client claims.
        super().gotLength(length)
        self._verify(caller)

    def _verify(self, caller: _Headers) -> None:
        from common.apierrors import ApiError
        from inference.caller import authenticate

        transport = self.channel.transport
        transport.pauseProducing()  # read no body until the key is known to be good

        async def verify():
            try:
                await authenticate(caller)
            except ApiError as error:
                if error.status == 401:
                    self.refuse(401, "Unauthorized", error.message, error.code)
                    return
            except Exception:
                # Redis or the database is down: the view will answer this properly (503), so let
                # the request through rather than invent an answer here.
                log.warning("the web edge could not verify a key; the view will", exc_info=True)
            if self._refused:
                return
            transport.resumeProducing()
            if self._process_when_verified:
                self._process_when_verified = False
                super(GuardedRequest, self).process()

        self._verifying = asyncio.ensure_future(verify())

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        from batches.limits import request_body_limit

        limit = request_body_limit(self._api_path.decode("latin-1"))
        if self._received > limit:
            self.refuse(413, "Payload Too Large", f"Request body too large: the limit is {limit} bytes.",
                        "request_too_large")
            return
        super().handleContentChunk(data)

    def process(self):
        if self._refused:
            return None
        if self._verifying is not None and not self._verifying.done():
            self._process_when_verified = True  # the whole body came with the headers
            return None
        return super().process()

    def refuse(self, status: int, reason: str, message: str, code: str | None) -> None:
        from inference.anthropic_api.errors import is_anthropic_path

        self._refused = True
        self.content = http._getContentFile(0)
        channel = self.channel
        channel.transport.write(_error_bytes(status, reason, message, code,
                                             ollama=self._api_path.startswith(b"/ollama/"),
                                             anthropic=is_anthropic_path(self._api_path.decode("latin-1"))))
        # Closing a socket with unread input makes the kernel send a reset, which can destroy the answer
        # before the client reads it. So read and drop what is in flight for a moment, then close.
        channel.transport.resumeProducing()
        channel.callLater(LINGER_SECONDS, channel.loseConnection)

    def basic_error(self, status, status_text, body):
        # daphne's own HTML error pages (invalid header names, an application that crashed) as JSON.
        from inference.web.middleware import new_request_id

        payload = json.dumps({"error": {"message": f"{status_text.decode('ascii')}: {body}",
                                        "type": "invalid_request_error" if status < 500 else "server_error",
                                        "param": None, "code": None}}).encode()
        self.handle_reply({"type": "http.response.start", "status": status,
                           "headers": [(b"Content-Type", b"application/json"),
                                       (b"x-request-id", new_request_id().encode())]})
        self.handle_reply({"type": "http.response.body", "body": payload})


class GuardedChannel(http.HTTPChannel):
    """Malformed or oversized request heads get a JSON error with x-request-id, not a bare 400 or reset."""

    def _respondToBadRequestAndDisconnect(self):
        # Twisted calls this for every bad head: too many bytes, too many header lines, or malformed.
        if self._receivedHeaderSize > self.totalHeadersSize:
            self.lineLengthExceeded(b"")
        elif self._receivedHeaderCount > self.maxHeaders:
            self._refuse_head(_error_bytes(
                431, "Request Header Fields Too Large",
                f"The request has more than {self.maxHeaders} header fields.", "request_header_too_large"))
        else:
            self._refuse_head(_error_bytes(400, "Bad Request", "Malformed HTTP request line or headers.", None))

    def lineLengthExceeded(self, line):
        self._refuse_head(_error_bytes(
            431, "Request Header Fields Too Large",
            f"The request line and headers are larger than {HEADER_LIMIT_BYTES} bytes.", "request_header_too_large"))

    def _refuse_head(self, answer: bytes) -> None:
        """Answer, then read and drop what the client still sends for a moment before closing: closing
        with unread input makes the kernel send a reset, which can destroy the answer unread (a client
        sending 20,000 header lines is still sending when the 501st is refused)."""
        if getattr(self, "_head_refused", False):
            return
        self._head_refused = True
        self.transport.write(answer)
        self.clearLineBuffer()  # parse nothing more of what has arrived
        self.dataReceived = lambda data: None  # nor of what arrives
        self.transport.resumeProducing()
        self.callLater(LINGER_SECONDS, self.loseConnection)


class GuardedHTTPFactory(HTTPFactory):
    def __init__(self, server):
        super().__init__(server)
        from django.conf import settings

        self.timeOut = settings.WEB_IDLE_TIMEOUT_SECONDS

    def protocol(self):
        return http._GenericHTTPChannelProtocol(GuardedChannel())

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GuardedRequest
        return protocol


FLUSH_SECONDS = 5.0  # for the Redis writes of the requests cancelled at the end of a drain


class DrainingServer(daphne_server.Server):
    """daphne's server, which drains before it stops (module docstring)."""

    DRAIN_POLL_SECONDS = 0.2

    def run(self):
        self.ports = []  # what it listens on, to stop listening when told to stop
        super().run()

    def listen_success(self, port):
        self.ports.append(port)
        super().listen_success(port)

    def requests_in_flight(self) -> int:
        """HTTP requests whose application has not finished; websockets (the live dashboard) do not count."""
        return sum(1 for protocol, details in self.connections.items()
                   if isinstance(protocol, WebRequest) and details.get("application_instance") is not None
                   and not details["application_instance"].done())

    def kill_all_applications(self):
        from django.conf import settings

        from inference.accounting import outbox

        for port in self.ports:
            port.stopListening()
        deadline = time.monotonic() + settings.WEB_DRAIN_SECONDS
        stopped = defer.Deferred()
        log.warning("stopping: no new connections; %d request(s) in flight may finish within %g s",
                    self.requests_in_flight(), settings.WEB_DRAIN_SECONDS)

        def check() -> None:
            if self.requests_in_flight() and time.monotonic() < deadline:
                daphne_server.reactor.callLater(self.DRAIN_POLL_SECONDS, check)  # daphne's asyncio reactor
                return
            killed = super(DrainingServer, self).kill_all_applications()
            # The cancelled requests' slot releases, settlements and usage records, made before exiting.
            killed.addBoth(lambda _: defer.Deferred.fromFuture(asyncio.ensure_future(outbox.flush(FLUSH_SECONDS))))
            killed.chainDeferred(stopped)

        check()
        return stopped


def endpoint(host: str, port: int, backlog: int) -> str:
    """A Twisted endpoint string; it is the only way to give daphne a listen backlog."""
    interface = host.strip("[]").replace(":", r"\:")
    return f"tcp:port={port}:interface={interface}:backlog={backlog}"


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.conf import settings

    django.setup(set_prefix=False)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-b", "--bind", action="append", help="an address to listen on; repeat for more (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=8000)
    ours, rest = parser.parse_known_args(argv)
    if not any(arg.endswith(":application") or ":" in arg and not arg.startswith("-") for arg in rest):
        rest.append("portal.asgi:application")
    daphne_server.HTTPFactory = GuardedHTTPFactory
    CommandLineInterface.server_class = DrainingServer
    endpoints = [arg for host in ours.bind or ["127.0.0.1"]
                 for arg in ("-e", endpoint(host, ours.port, settings.WEB_LISTEN_BACKLOG))]
    CommandLineInterface().run([*endpoints, *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
