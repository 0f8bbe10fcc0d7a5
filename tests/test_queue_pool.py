"""Several hundred requests at the same moment on one web process: each gets the queue's answer (200,
or 503 queue_full once the queue is full), never a 503 saying Redis is unreachable because the
process ran out of Redis connections in its pool.

How many Redis calls a process has in flight at once depends on how its event loop happens to batch
the burst, so the burst comes in several waves: each wave is BURST requests sent at the same moment
on connections opened beforehand, the next once every answer of the last one is in."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

MODEL = "pool-burst:latest"  # 4 slots, 8 waiting
BURST = 600
WAVES = 3


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    config = sim_config([MODEL], num_parallel=8, tokens_per_second=100, reply_tokens=30)
    with django_db_blocker.unblock():
        # One person sends the whole burst: the per-person limits must not be what refuses it.
        world = Stack({"gpu": config}, webs=1, env={"LIMIT_REQUESTS_PER_MINUTE": "0", "LIMIT_TOKENS_PER_MINUTE": "0"},
                      models={MODEL: {"concurrency": 4, "max_queue": 8}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def _decode(raw: bytes) -> tuple[int, dict | str]:
    """(status, JSON body or the raw text) of one HTTP/1.1 response read to the end of the connection."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, raw[:200].decode("latin-1")
    if any(line.lower() == "transfer-encoding: chunked" for line in lines[1:]):
        chunks, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            length = int(size.split(b";")[0] or b"0", 16)
            if length == 0:
                break
            chunks.append(rest[:length])
            rest = rest[length + 2:]
        body = b"".join(chunks)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body[:200].decode("latin-1")


async def _burst(port: int, key: str, count: int) -> list[tuple[int, dict | str]]:
    """Open `count` connections first, then send a request on every one of them at once."""
    payload = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
               ).encode() + payload
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(count)))
    for _, writer in connections:
        writer.write(request)
    await asyncio.gather(*(writer.drain() for _, writer in connections))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, dict | str]:
        try:
            async with asyncio.timeout(60):
                return _decode(await reader.read())
        except (TimeoutError, OSError) as exc:
            return 0, f"no answer: {type(exc).__name__}"
        finally:
            writer.close()

    return await asyncio.gather(*(answer(reader, writer) for reader, writer in connections))


def test_a_burst_of_hundreds_on_one_process_gets_only_queue_answers(stack):
    assert stack.chat(MODEL).status_code == 200  # loaded: 4 run at once, 8 wait
    eventually(lambda: stack.running(MODEL) == 0 and stack.waiting(MODEL) == 0, what="an idle queue", timeout=10)
    answers = []
    for _ in range(WAVES):
        answers += asyncio.run(_burst(stack.webs[0].port, stack.keys["ann"], BURST))

    def kind(status: int, body: dict | str) -> str:
        if status == 200:
            return "200"
        error = body.get("error") if isinstance(body, dict) else None
        if status == 503 and isinstance(error, dict) and error.get("code") == "queue_full":
            return "503 queue_full"
        message = error.get("message", "") if isinstance(error, dict) else str(body)
        return f"{status}: {message[:90]}"

    outcomes = Counter(kind(status, body) for status, body in answers)
    assert set(outcomes) <= {"200", "503 queue_full"}, f"{len(answers)} requests in {WAVES} waves: {dict(outcomes)}"
    assert outcomes["200"] >= 12 * WAVES, dict(outcomes)  # at least the 4 slots and the 8 places, each wave
    eventually(lambda: stack.running(MODEL) == 0 and stack.waiting(MODEL) == 0, what="every slot back", timeout=10)
