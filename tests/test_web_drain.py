"""A web process told to stop (SIGTERM: a deploy, `docker compose stop`, a Kubernetes rollout) stops
taking connections at once, lets the streams it is answering finish, and only cancels what still runs
after WEB_DRAIN_SECONDS; then it exits. daphne by itself cuts every stream at once."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from tests.support.processes import eventually, port_open
from tests.support.stack import Stack, sim_config

MODEL = "drain:latest"  # answers of 30 tokens in 3 s
SLOW = "drain-slow:latest"  # answers of 30 tokens in 30 s
DRAIN_SECONDS = 6


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    config = sim_config([MODEL, SLOW], tokens_per_second=10, reply_tokens=30)
    config["models"][1]["tokens_per_second"] = 1
    with django_db_blocker.unblock():
        world = Stack({"gpu": config}, env={"WEB_DRAIN_SECONDS": str(DRAIN_SECONDS)})
    yield world
    with django_db_blocker.unblock():
        world.stop()


class Stream(threading.Thread):
    """A streamed chat completion read to its end (or until the server cuts it) in the background."""

    def __init__(self, stack: Stack, web: int, model: str) -> None:
        super().__init__()
        self.stack, self.web, self.model = stack, web, model
        self.started = threading.Event()
        self.text, self.done, self.error, self.finish_reason = "", False, None, None

    def run(self) -> None:
        body = {"model": self.model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        try:
            with httpx.stream("POST", self.stack.url(self.web) + "/chat/completions", json=body,
                              headers=self.stack.headers(), timeout=60) as response:
                for line in response.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: "):
                        for choice in json.loads(line[6:]).get("choices", []):
                            self.text += choice["delta"].get("content") or ""
                            self.finish_reason = choice.get("finish_reason") or self.finish_reason
                            self.started.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.started.set()


def _stop(stack: Stack, web: int, model: str) -> tuple[Stream, float]:
    """A stream from `model` on the web process `web`, and SIGTERM to that process once it has begun."""
    stream = Stream(stack, web, model)
    stream.start()
    assert stream.started.wait(30) and stream.text, stream.error
    stack.webs[web].proc.send_signal(signal.SIGTERM)
    return stream, time.monotonic()


def test_a_stopping_web_process_refuses_new_connections_and_lets_its_streams_finish(stack):
    stack.chat(MODEL, max_tokens=1)  # loaded
    web = stack.start_web()
    port = stack.webs[web].port
    stream, stopped_at = _stop(stack, web, MODEL)
    eventually(lambda: not port_open(port), what="the listening port closed", timeout=2, interval=0.05)
    assert stream.is_alive(), "the stream ended as soon as the process was told to stop"
    stream.join(30)
    # The whole answer, to its natural end, then [DONE].
    assert stream.done and stream.error is None and stream.finish_reason == "stop", (stream.text, stream.error)
    eventually(lambda: stack.webs[web].proc.poll() is not None, what="the web process exited", timeout=10)
    assert time.monotonic() - stopped_at < DRAIN_SECONDS + 5
    eventually(lambda: stack.running(MODEL) == 0, what="its slot came back")


def test_a_stream_longer_than_the_drain_is_cut_when_it_runs_out(stack):
    stack.chat(SLOW, max_tokens=1)
    web = stack.start_web()
    stream, stopped_at = _stop(stack, web, SLOW)
    eventually(lambda: stack.webs[web].proc.poll() is not None, what="the web process exited",
               timeout=DRAIN_SECONDS + 10)
    waited = time.monotonic() - stopped_at
    assert DRAIN_SECONDS - 1 <= waited < DRAIN_SECONDS + 5, waited
    stream.join(10)
    assert not stream.done and stream.finish_reason is None  # cut, not finished
    # The cut stream's slot is not released by the process that stopped: its lease runs out, and the
    # model's next request reaps it (as after a kill -9).
    lease_s = 15
    eventually(lambda: stack.chat(SLOW, max_tokens=1).status_code == 200 and stack.running(SLOW) == 0,
               what="its slot came back once its lease ran out", timeout=lease_s + 20, interval=1)
