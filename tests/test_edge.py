"""Hostile and odd input at the request edge (issue 8, "Request edge"): every answer is an OpenAI error
object with the right status and x-request-id, sent before the server reads what it should not read."""

from __future__ import annotations

import json
import socket
import subprocess

import httpx
import openai
import pytest

from tests.conftest import BROKEN_MODEL, CHAT_MODEL, CODE_MODEL, EMBED_MODEL
from tests.support.openai_errors import assert_openai_error

CHAT = {"model": CHAT_MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
LIMIT = 1024 * 1024  # the live server's MAX_REQUEST_BODY_BYTES (tests/conftest.py)


@pytest.fixture
def auth(world) -> dict:
    return {"Authorization": f"Bearer {world.alice_key}"}


def raw_exchange(port: int, head: bytes, body: bytes = b"", *, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send a request head (and maybe part of a body) on a raw socket; read one whole answer.

    A raw socket, because the point is what the server does before the body is complete: an HTTP
    client would insist on sending the body it announced first.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection without an answer: {data!r}"
            data += chunk
        head_bytes, rest = data.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        while len(rest) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "the answer was cut short"
            rest += chunk
    return int(lines[0].split()[1]), headers, rest


def post_head(length: int | None, key: str | None = None, path: str = "/v1/chat/completions") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- 1. lone surrogates ----------------------------------------------------------------------------

@pytest.mark.parametrize("path,body,param", [
    ("/chat/completions", {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "SURROGATE"}]},
     "messages.0.content"),
    ("/chat/completions", {**CHAT, "stop": ["ok", "SURROGATE"]}, "stop.1"),
    ("/completions", {"model": CODE_MODEL, "max_tokens": 2, "prompt": "SURROGATE"}, "prompt"),
    ("/embeddings", {"model": EMBED_MODEL, "input": ["fine", "SURROGATE"]}, "input.1"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(base_url, auth, path, body, param):
    raw = json.dumps(body).replace("SURROGATE", "a\\ud800b").encode()
    response = httpx.post(base_url + path, headers={**auth, "Content-Type": "application/json"}, content=raw)
    assert assert_openai_error(response, 400)["param"] == param


@pytest.mark.parametrize("path,body,param", [
    ("/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "SURROGATE"}]}, "messages.0.content"),
    ("/completions", {"model": CODE_MODEL, "max_tokens": 2, "prompt": "SURROGATE"}, "prompt"),
    ("/embeddings", {"model": EMBED_MODEL, "input": "SURROGATE"}, "input"),
])
def test_a_lone_surrogate_sent_as_raw_bytes_is_a_400_naming_the_field(base_url, auth, path, body, param):
    # U+D800 encoded as if it were a character (CESU-8, WTF-8): ED A0 80. Python's JSON decoder lets it
    # through as "\ud800", which then failed on its way to the node: a 500, after taking a queue slot.
    raw = json.dumps(body).encode().replace(b"SURROGATE", b"a\xed\xa0\x80b")
    response = httpx.post(base_url + path, headers={**auth, "Content-Type": "application/json"}, content=raw)
    error = assert_openai_error(response, 400)
    assert error["param"] == param and "surrogate" in error["message"]


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"])
def test_a_body_that_is_not_utf8_is_a_clear_400(base_url, auth, bad):
    raw = json.dumps({**CHAT, "messages": [{"role": "user", "content": "SPOT"}]}).encode().replace(b"SPOT", bad)
    response = httpx.post(base_url + "/chat/completions", headers={**auth, "Content-Type": "application/json"},
                          content=raw)
    assert "not valid UTF-8" in assert_openai_error(response, 400)["message"]


def test_a_surrogate_pair_is_ordinary_text(base_url, auth):
    raw = json.dumps({**CHAT, "messages": [{"role": "user", "content": "\U0001f600"}]}).encode()  # \ud83d\ude00
    assert b"\\ud83d" in raw
    assert httpx.post(base_url + "/chat/completions", headers={**auth, "Content-Type": "application/json"},
                      content=raw).status_code == 200


# -- 2. body limit and authentication before the body is read --------------------------------------

def test_an_over_limit_content_length_is_refused_before_any_body(gatehouse, world):
    answer = raw_exchange(gatehouse.port, post_head(999_999_999_999, world.alice_key))
    assert_openai_error(answer, 413, "request_too_large")


@pytest.mark.parametrize("key", [None, "sk-gh-" + "x" * 48])
def test_the_body_of_an_unauthenticated_request_is_not_waited_for(gatehouse, key):
    # Half a megabyte announced, nothing sent: the answer can only come before the body.
    answer = raw_exchange(gatehouse.port, post_head(LIMIT // 2, key))
    assert_openai_error(answer, 401, "invalid_api_key")


def test_a_chunked_body_is_cut_off_at_the_limit(gatehouse, world):
    # More than the limit in chunks, and the body never ends: only a count while it streams answers.
    piece = b"x" * 65536
    chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n") * (LIMIT // len(piece) + 2)
    answer = raw_exchange(gatehouse.port, post_head(None, world.alice_key), chunks)
    assert_openai_error(answer, 413, "request_too_large")


def test_a_good_key_still_gets_its_body_read(base_url, auth):
    big = "word " * (LIMIT // 8)  # ~640 KB: parsed in the parser process (inference/openai_api/parsing.py)
    response = httpx.post(base_url + "/chat/completions", headers=auth,
                          json={**CHAT, "messages": [{"role": "user", "content": big}]}, timeout=60)
    assert response.status_code in (200, 400), response.text  # 400 only for the context length
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "context_length_exceeded"


# -- 3. limits no real client reaches ----------------------------------------------------------------

@pytest.mark.parametrize("extra,param", [
    ({"messages": [{"role": "user", "content": "x"}] * 10_001}, "messages"),
    ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, "tools"),
    ({"stop": ["s"] * 65}, "stop"),
    ({"stop": "s" * 1001}, "stop"),
])
def test_bodies_beyond_any_real_client_are_a_clear_400(base_url, auth, extra, param):
    response = httpx.post(base_url + "/chat/completions", headers=auth, json={**CHAT, **extra})
    error = assert_openai_error(response, 400)
    assert error["param"] == param and "at most" in error["message"]


# -- 4. upstream error texts ---------------------------------------------------------------------------

def test_a_node_error_text_does_not_reach_the_client(base_url, auth, simulator):
    leaky = "error loading model /root/.ollama/models/blobs/sha256-0123abcd (node gpu7.internal 10.0.0.5)"
    simulator.set_faults(BROKEN_MODEL, fail_after_tokens=0, error_message=leaky)
    try:
        response = httpx.post(base_url + "/chat/completions", headers=auth, json={**CHAT, "model": BROKEN_MODEL})
    finally:
        simulator.set_faults(BROKEN_MODEL, fail_after_tokens=None, error_message=None)
    error = assert_openai_error(response, 502)
    for secret in ("/root", "sha256", "gpu7", "10.0.0.5", ".internal"):
        assert secret not in error["message"]
    assert response.headers["x-request-id"] in error["message"]  # something to quote in a bug report
    assert BROKEN_MODEL in error["message"]


def test_a_missing_capability_is_still_named(base_url, auth):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    response = httpx.post(base_url + "/chat/completions", headers=auth,
                          json={**CHAT, "model": CODE_MODEL, "tools": tools})
    error = assert_openai_error(response, 400, "unsupported_parameter")
    assert error["param"] == "tools" and "tools" in error["message"]


# -- 5. ALLOWED_HOSTS --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions", "/api/models"])
def test_a_host_not_allowed_is_a_json_400(gatehouse, auth, path):
    response = httpx.request("POST" if "chat" in path else "GET", gatehouse.url + path,
                             headers={**auth, "Host": "evil.example"}, json=CHAT if "chat" in path else None)
    assert_openai_error(response, 400, "invalid_host")


# -- 6. oversized and malformed request heads -------------------------------------------------------

def test_a_header_block_over_16_kib_is_a_json_431(gatehouse, world):
    head = (f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {world.alice_key}\r\n"
            + "".join(f"X-Filler-{i}: {'a' * 1000}\r\n" for i in range(20)) + "\r\n").encode()
    assert_openai_error(raw_exchange(gatehouse.port, head), 431, "request_header_too_large")


def test_one_header_line_over_16_kib_is_a_json_431(gatehouse):
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert_openai_error(raw_exchange(gatehouse.port, head), 431, "request_header_too_large")


def test_twenty_thousand_small_header_lines_are_a_json_431(gatehouse, world):
    # Each line is tiny, so the count (Twisted's 500 headers) is what gives out, not the 16 KiB.
    head = (f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {world.alice_key}\r\n"
            + "".join(f"X-{i}: a\r\n" for i in range(20_000)) + "\r\n").encode()
    error = assert_openai_error(raw_exchange(gatehouse.port, head), 431, "request_header_too_large")
    assert "header" in error["message"]


def test_a_malformed_header_is_a_json_400(gatehouse):
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Name: x\r\n\r\n"
    assert_openai_error(raw_exchange(gatehouse.port, head), 400)


# -- 7. HEAD -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/models", f"/models/{CHAT_MODEL}"])
def test_head_is_answered_as_get_without_a_body(base_url, auth, path):
    get = httpx.get(base_url + path, headers=auth)
    head = httpx.head(base_url + path, headers=auth)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["x-request-id"].startswith("req_")


# -- 8. a flat token array is one input ------------------------------------------------------------

def test_one_long_token_array_is_one_embedding_input(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    result = client.embeddings.create(model=EMBED_MODEL, input=[17] * 3000)
    assert len(result.data) == 1


def test_more_than_2048_inputs_are_still_refused(base_url, auth):
    response = httpx.post(base_url + "/embeddings", headers=auth, json={"model": EMBED_MODEL, "input": ["x"] * 2049})
    assert assert_openai_error(response, 400)["param"] == "input"


# -- 9. max_tokens beyond the context -------------------------------------------------------------

def test_an_absurd_max_tokens_is_clamped_to_the_context():
    from inference.engines.ollama_translate import chat_request_to_ollama
    from inference.openai_api.schemas import ChatCompletionRequest, parse_body

    req = parse_body(ChatCompletionRequest, json.dumps({**CHAT, "max_tokens": 10**12}).encode())
    sent = chat_request_to_ollama(req, ollama_model="m", num_ctx=8192, keep_alive=None)
    assert sent["options"]["num_predict"] == 8192


def test_an_absurd_max_tokens_still_gets_an_answer(base_url, auth):
    response = httpx.post(base_url + "/chat/completions", headers=auth,
                          json={**CHAT, "max_tokens": 10**12, "messages": [{"role": "user", "content": "hi"}],
                                "stop": ["."]})
    assert response.status_code == 200, response.text


def test_a_lone_surrogate_in_a_field_name_is_a_400_too(base_url, auth):
    # Found by tests/test_fuzz.py: the field name went back in the error message and broke its encoding.
    response = httpx.post(base_url + "/chat/completions", headers={**auth, "Content-Type": "application/json"},
                          content=b'{"\\ud800": null}')
    assert assert_openai_error(response, 400)["param"] == "\\ud800"


# -- the web process (portal/web.py) ----------------------------------------------------------------

def test_the_web_process_listens_with_a_backlog_for_bursts(gatehouse):
    # daphne's own backlog is 50: a burst of a few hundred connections got resets.
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{gatehouse.port}"], capture_output=True, text=True,
                               check=True).stdout.split()
    assert int(listening[2]) == 1024  # Send-Q of a listening socket is its backlog


@pytest.mark.asyncio
async def test_under_another_asgi_server_an_over_limit_length_is_refused_unread():
    """Servers such as uvicorn hand the body over only as the application reads it: portal/asgi.py
    answers 413 from the declared length and never asks for the body."""
    from portal.asgi import api_asgi_app

    sent: list[dict] = []

    async def receive():
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5),
             "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"999999999999")]}
    await api_asgi_app(scope, receive, send)
    assert sent[0]["status"] == 413
    headers = dict(sent[0]["headers"])
    assert headers[b"x-request-id"].startswith(b"req_")
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_too_large"
