"""The real llama.cpp server the suite can run (tests/support/llama.py): it starts on a free port, serves
SmolLM2-135M-Instruct under its alias through the OpenAI SDK, serves embeddings when asked, and is gone
after stop. Answers are checked for their shape only: what a 135M model says is not the point."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from tests.support.llama import LlamaServer, LlamaUnavailable, fetch
from tests.support.processes import REPO, alive, group_members, port_open


def test_it_serves_a_real_chat_completion_through_the_openai_sdk_and_is_gone_after_stop():
    with LlamaServer(alias="smollm2", ctx_size=2048, parallel=2) as llama:
        assert httpx.get(llama.url + "/health").status_code == 200
        listed = httpx.get(llama.url + "/v1/models").json()["data"]
        assert [entry["id"] for entry in listed] == ["smollm2"]
        assert listed[0]["meta"]["n_ctx_train"] > 0 and listed[0]["meta"]["n_embd"] == 576

        client = openai.OpenAI(base_url=llama.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        # ignore_eos makes it produce exactly max_tokens tokens, so the reply is never empty by chance.
        reply = client.chat.completions.create(model="smollm2", max_tokens=4, temperature=0,
                                               messages=[{"role": "user", "content": "Say hello."}],
                                               extra_body={"ignore_eos": True})
        message = reply.choices[0].message
        assert message.role == "assistant" and isinstance(message.content, str) and message.content
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == 4 and reply.usage.prompt_tokens > 0
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        # Without --embeddings the route exists but refuses: the embeddings server below is a separate one.
        assert httpx.post(llama.url + "/v1/embeddings", json={"input": "x"}).status_code == 501
        assert "llamacpp:requests_processing" in llama.metrics()
        pid = llama.proc.pid
    assert not alive(pid) and not group_members(pid)
    assert not port_open(llama.port)


def test_the_embeddings_server_gives_vectors_even_for_inputs_longer_than_llamas_default_batch():
    with LlamaServer(embeddings=True, ctx_size=2048, parallel=1) as embedder:
        client = openai.OpenAI(base_url=embedder.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        # 601 tokens: past llama-server's default batch of 512, which would refuse it.
        long_input = "hello " * 600
        result = client.embeddings.create(model="smollm2", input=["a cat", "a dog", long_input])
        vectors = [item.embedding for item in result.data]
        assert len(vectors) == 3 and all(len(vector) == 576 for vector in vectors)
        assert all(any(value != 0 for value in vector) for vector in vectors)
        assert result.usage.prompt_tokens > 512


def test_a_binary_this_cpu_cannot_run_fails_with_one_line_saying_so(tmp_path, monkeypatch):
    """What an older CPU does to the prebuilt server (SIGILL), played by a stand-in that dies the same way."""
    root = tmp_path / "llama"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "llama-server").write_text("#!/bin/sh\nulimit -c 0\nkill -ILL $$\n")  # no core file
    (root / "bin" / "llama-server").chmod(0o755)
    fetch.model(root).write_bytes(b"")
    (root / fetch.MARKER).write_text(fetch.PINS)
    monkeypatch.setenv("GATEHOUSE_LLAMA_DIR", str(root))
    with pytest.raises(LlamaUnavailable) as failure:
        LlamaServer()
    message = str(failure.value)
    assert "SIGILL" in message and "AVX2" in message and "\n" not in message


def test_the_fetch_script_does_nothing_and_says_nothing_once_cached():
    fetch.ensure()  # cached already by the tests above, or by `make test`
    result = subprocess.run([sys.executable, "scripts/fetch-llama.py", "--print-dir"], cwd=REPO,
                            capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == str(fetch.cache_dir())
    assert not str(fetch.cache_dir()).startswith(str(REPO))  # nothing big lands in the repository
