// Drive a Gatehouse server with the official Node `openai` SDK (the major version Continue pins) and
// report what a Node user would see, as one JSON object on stdout. tests/test_node_sdk.py runs it.
//
// Usage: node client.mjs '<job json>'   (or the job on stdin)
// Job: {base_url, api_key, bad_key, chat_model, embed_model, seed, prompt, embed_inputs, tool_prompt}
//
// Each step catches its own failure and reports it as {error: {...}}, so one broken behaviour does
// not hide the others; the exit code is non-zero only when the job itself cannot be read.

import OpenAI from "openai";
import { VERSION } from "openai/version";

async function readJob() {
  if (process.argv[2]) return JSON.parse(process.argv[2]);
  let text = "";
  for await (const piece of process.stdin) text += piece;
  return JSON.parse(text);
}

function describeError(err) {
  return {
    class: err?.constructor?.name ?? typeof err,
    message: String(err?.message ?? err),
    status: err?.status ?? null,
    is_api_error: err instanceof OpenAI.APIError,
    is_authentication_error: err instanceof OpenAI.AuthenticationError,
    body: err?.error ?? null,
    request_id: err?.requestID ?? null,
  };
}

async function step(fn) {
  try {
    return await fn();
  } catch (err) {
    return { error: describeError(err) };
  }
}

// The request bodies the SDK actually sent, so the test can see e.g. the implicit base64.
const sent = [];
function recordingFetch(url, init) {
  let body = null;
  if (typeof init?.body === "string") {
    try {
      body = JSON.parse(init.body);
    } catch {
      body = init.body;
    }
  }
  sent.push({ url: String(url), method: init?.method ?? "GET", body });
  return fetch(url, init);
}

function makeClient(job, apiKey) {
  return new OpenAI({
    apiKey,
    baseURL: job.base_url,
    maxRetries: 0,
    timeout: 60_000,
    fetch: recordingFetch,
  });
}

function chatBody(job) {
  return {
    model: job.chat_model,
    messages: [
      { role: "system", content: "You are a concise assistant." },
      { role: "user", content: job.prompt },
    ],
    seed: job.seed,
    temperature: 0,
    max_tokens: 48,
  };
}

// (a0) the same question without streaming, to compare the streamed text with.
async function plainChat(client, job) {
  const completion = await client.chat.completions.create(chatBody(job));
  const choice = completion.choices[0];
  return {
    content: choice.message.content,
    role: choice.message.role,
    finish_reason: choice.finish_reason,
    usage: completion.usage ?? null,
  };
}

// (a) a streaming chat with include_usage, read chunk by chunk as user code would.
async function streamChat(client, job) {
  const stream = await client.chat.completions.create({
    ...chatBody(job),
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  const usageChunks = [];
  const roles = [];
  const finishReasons = [];
  let chunks = 0;
  let emptyChoiceChunks = 0;
  let lastHadUsage = false;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usageChunks.push({ usage: chunk.usage, choices: chunk.choices.length });
    lastHadUsage = Boolean(chunk.usage);
    if (chunk.choices.length === 0) emptyChoiceChunks += 1;
    for (const choice of chunk.choices) {
      if (choice.delta?.role) roles.push(choice.delta.role);
      if (choice.delta?.content) text += choice.delta.content;
      if (choice.finish_reason) finishReasons.push(choice.finish_reason);
    }
  }
  return {
    text,
    chunks,
    usage_chunks: usageChunks,
    roles,
    finish_reasons: finishReasons,
    empty_choice_chunks: emptyChoiceChunks,
    usage_chunk_is_last: lastHadUsage,
  };
}

// (b) the ChatCompletionStream helper: content events need role "assistant", and
// finalChatCompletion() throws on a missing role or finish_reason.
async function helperStream(client, job) {
  const stream = client.chat.completions.stream(chatBody(job));
  let contentEvents = "";
  stream.on("content", (delta) => {
    contentEvents += delta;
  });
  const final = await stream.finalChatCompletion();
  const choice = final.choices[0];
  return {
    role: choice.message.role,
    content: choice.message.content,
    finish_reason: choice.finish_reason,
    content_events: contentEvents,
    choices: final.choices.length,
  };
}

// (c) embeddings: the SDK's default (it asks for base64 and decodes it) and explicit floats.
async function embeddings(client, job) {
  const base = { model: job.embed_model, input: job.embed_inputs };
  const implicit = await client.embeddings.create(base);
  const explicit = await client.embeddings.create({ ...base, encoding_format: "float" });
  const vectors = (response) => response.data.map((item) => Array.from(item.embedding));
  return {
    default: vectors(implicit),
    default_indexes: implicit.data.map((item) => item.index),
    default_encoding_sent: sent.filter((r) => r.url.endsWith("/embeddings"))[0]?.body?.encoding_format ?? null,
    float: vectors(explicit),
    float_indexes: explicit.data.map((item) => item.index),
    model: implicit.model,
    usage: implicit.usage ?? null,
  };
}

// (d) what Continue's agent mode sends (packages/openai-adapters OpenAI.ts + modifyChatBody), read the
// way its adapter does: choices[0] only, tool-call deltas merged by index.
async function continueToolStream(client, job) {
  const stream = await client.chat.completions.create({
    messages: [
      { role: "system", content: "You are a coding agent. Use tools when they help." },
      { role: "user", content: job.tool_prompt },
    ],
    model: job.chat_model,
    max_tokens: 512,
    temperature: 0,
    top_p: 1,
    frequency_penalty: 0,
    presence_penalty: 0,
    stream: true,
    stop: ["<|eot_id|>", "<|start_header_id|>"],
    tools: [
      {
        type: "function",
        function: {
          name: "read_file",
          description: "Read the contents of a file in the workspace",
          parameters: {
            type: "object",
            properties: { filepath: { type: "string", description: "Path relative to the workspace root" } },
            required: ["filepath"],
          },
        },
      },
    ],
    tool_choice: "auto",
    parallel_tool_calls: false,
    stream_options: { include_usage: true },
  });
  const calls = [];
  const rawEntries = [];
  let text = "";
  let roles = 0;
  let usageChunks = 0;
  let finishReason = null;
  for await (const chunk of stream) {
    if (chunk.usage) usageChunks += 1;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta?.role) roles += 1;
    if (choice.delta?.content) text += choice.delta.content;
    if (choice.finish_reason) finishReason = choice.finish_reason;
    for (const entry of choice.delta?.tool_calls ?? []) {
      rawEntries.push(entry);
      const call = (calls[entry.index ?? 0] ??= { id: "", type: "", name: "", arguments: "" });
      if (entry.id) call.id = entry.id;
      if (entry.type) call.type = entry.type;
      if (entry.function?.name) call.name = entry.function.name;
      if (entry.function?.arguments) call.arguments += entry.function.arguments;
    }
  }
  return {
    text,
    roles,
    usage_chunks: usageChunks,
    finish_reason: finishReason,
    tool_calls: calls.filter(Boolean),
    raw_entries: rawEntries,
  };
}

// (e) a wrong key: the typed error class, its status and message.
async function wrongKey(job) {
  const client = makeClient(job, job.bad_key);
  try {
    await client.chat.completions.create({ ...chatBody(job), max_tokens: 4 });
    return { error: null };
  } catch (err) {
    return { error: describeError(err) };
  }
}

async function main() {
  let job;
  try {
    job = await readJob();
  } catch (err) {
    process.stderr.write(`client.mjs: cannot read the job: ${err}\n`);
    process.exit(2);
  }
  const client = makeClient(job, job.api_key);
  const result = {
    sdk_version: VERSION,
    node_version: process.version,
    plain_chat: await step(() => plainChat(client, job)),
    stream_chat: await step(() => streamChat(client, job)),
    helper_stream: await step(() => helperStream(client, job)),
    embeddings: await step(() => embeddings(client, job)),
    continue_tools: await step(() => continueToolStream(client, job)),
    wrong_key: await step(() => wrongKey(job)),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

await main();
