"""Snippets for code: curl and the OpenAI SDKs for Python, JavaScript and LangChain. Each runs as it is
against a live server in tests/test_connect_snippets.py."""

from __future__ import annotations

import json
import shlex
from textwrap import dedent

from apiaccess.connect.shared import Client, ConnectModels, Snippet, q


def curl(base: str, key: str, models: ConnectModels) -> str:
    body = json.dumps({"model": models.chat, "messages": [{"role": "user", "content": "Say hello"}]})
    return dedent(f"""\
        curl {shlex.quote(base + "/models")} \\
          -H "Authorization: Bearer {key}"

        curl {shlex.quote(base + "/chat/completions")} \\
          -H "Authorization: Bearer {key}" \\
          -H "Content-Type: application/json" \\
          -d {shlex.quote(body)}
        """)


def python_sdk(base: str, key: str, models: ConnectModels) -> str:
    text = dedent(f"""\
        from openai import OpenAI

        client = OpenAI(base_url={q(base)}, api_key={q(key)})

        reply = client.chat.completions.create(
            model={q(models.chat)},
            messages=[{{"role": "user", "content": "Say hello"}}],
        )
        print(reply.choices[0].message.content)

        stream = client.chat.completions.create(
            model={q(models.chat)},
            messages=[{{"role": "user", "content": "Count to five"}}],
            stream=True,
        )
        for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
        """)
    if models.embedding:
        text += dedent(f"""
            vectors = client.embeddings.create(model={q(models.embedding)}, input=["first text", "second text"])
            print(len(vectors.data), "vectors of", len(vectors.data[0].embedding), "numbers")
            """)
    return text


def javascript_sdk(base: str, key: str, models: ConnectModels) -> str:
    text = dedent(f"""\
        import OpenAI from "openai";

        const client = new OpenAI({{ baseURL: {q(base)}, apiKey: {q(key)} }});

        const reply = await client.chat.completions.create({{
          model: {q(models.chat)},
          messages: [{{ role: "user", content: "Say hello" }}],
        }});
        console.log(reply.choices[0].message.content);

        const stream = await client.chat.completions.create({{
          model: {q(models.chat)},
          messages: [{{ role: "user", content: "Count to five" }}],
          stream: true,
        }});
        for await (const chunk of stream) {{
          process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
        }}
        console.log();
        """)
    if models.embedding:
        text += dedent(f"""
            const vectors = await client.embeddings.create({{
              model: {q(models.embedding)},
              input: ["first text", "second text"],
            }});
            console.log(vectors.data.length, "vectors of", vectors.data[0].embedding.length, "numbers");
            """)
    return text


def langchain(base: str, key: str, models: ConnectModels) -> str:
    imports = "ChatOpenAI, OpenAIEmbeddings" if models.embedding else "ChatOpenAI"
    text = dedent(f"""\
        from langchain_openai import {imports}

        llm = ChatOpenAI(base_url={q(base)}, api_key={q(key)}, model={q(models.chat)})
        print(llm.invoke("Say hello").content)
        """)
    if models.embedding:
        text += dedent(f"""
            embeddings = OpenAIEmbeddings(
                base_url={q(base)},
                api_key={q(key)},
                model={q(models.embedding)},
                # Send text as it is: without this line LangChain downloads a tokenizer (fails offline).
                check_embedding_ctx_length=False,
            )
            print(len(embeddings.embed_query("hello")), "numbers")
            """)
    return text


def clients(base: str, key: str, models: ConnectModels) -> tuple[Client, ...]:
    return (
        Client("curl", "curl", "The quickest check that your key and the base URL work.", (
            Snippet("curl", "curl", "shell", "Paste into a terminal.", curl(base, key, models)),)),
        Client("python", "Python", "OpenAI's official SDK for Python.", (
            Snippet("python", "Python (OpenAI SDK)", "python", "pip install openai, then run it with python.",
                    python_sdk(base, key, models)),)),
        Client("javascript", "JavaScript", "OpenAI's official SDK for Node.js.", (
            Snippet("javascript", "JavaScript (OpenAI SDK)", "javascript",
                    "npm install openai, save as hello.mjs, run node hello.mjs.", javascript_sdk(base, key, models)),)),
        Client("langchain", "LangChain", "LangChain's OpenAI integration, for chains and agents in Python.", (
            Snippet("langchain", "LangChain", "python", "pip install langchain-openai, then run it with python.",
                    langchain(base, key, models)),)),
    )
