"""ollamasim: a faithful Ollama simulator (native /api and the OpenAI /v1 layer) for development, tests,
demos and benchmarks. It copies Ollama's behaviour as found in Ollama's source (github.com/ollama/ollama,
v0.33.0-rc2, commit fb30760); module docstrings and comments name the upstream files they follow.

Run it:
    python -m ollamasim --host 127.0.0.1 --port 11434 [--config sim.toml]
        [--num-parallel N] [--max-queue N] [--max-loaded-models N] [--keep-alive 5m] [--gpu-memory 24GiB]
        [--num-ctx N] [--tokens-per-second F] [--time-to-first-token-ms F] [--load-seconds-per-gib F]
        [--chunk-style head|legacy] [--no-fast-path] [--version-string X] [--log-level INFO] [--access-log]
It prints one line once listening: "ollamasim 0.32.15 listening on http://127.0.0.1:11434 (...)".
Without --config it serves a demo catalogue (llama3.2:3b, qwen2.5-coder:1.5b, qwen3:0.6b, all-minilm).

Config (TOML; every key optional; flags override the file):
    [server]
    version = "0.32.15"          # /api/version, and the behaviours that depend on it (below)
    num_parallel = 1             # OLLAMA_NUM_PARALLEL: slots per model (embedding models always get 1)
    max_queue = 512              # OLLAMA_MAX_QUEUE: requests waiting for a load before 503
    max_loaded_models = 0        # 0 = auto = 3 x gpu_count
    keep_alive = "5m"            # OLLAMA_KEEP_ALIVE: Go duration or seconds; negative = forever
    load_timeout = "5m"          # OLLAMA_LOAD_TIMEOUT (a stall timeout; only a stalled load hits it)
    gpu_memory = "24GiB"         # VRAM budget: runner = weights + num_ctx x num_parallel x kv_bytes_per_token
    num_ctx = 0                  # OLLAMA_CONTEXT_LENGTH; 0 = Ollama's default (VRAM tiers, see below)
    kv_bytes_per_token = 131072
    tokens_per_second = 40.0     # per request; 0 = no pacing
    time_to_first_token_ms = 150.0
    prompt_tokens_per_second = 0.0   # extra prompt time per prompt token; 0 = none
    load_seconds_per_gib = 0.5   # load latency proportional to runner size
    pull_seconds_per_gib = 0.2
    response_tokens = [20, 120]  # natural reply length range (num_predict cuts it shorter)
    chunk_style = "head"         # OpenAI streaming: "head" (v0.32.6+) or "legacy"
    fast_path = true             # v0.11.5+: loaded models bypass the pending queue

    [[models]]                   # without any [[models]] the demo catalogue is used; `models = []` is empty
    name = "llama3.2:3b"
    size = 2019393189            # bytes of weights (or "2GiB")
    family = "llama"
    parameter_size = "3.2B"
    quantization_level = "Q4_K_M"
    capabilities = ["completion", "tools"]   # completion tools insert embedding vision thinking
    context_length = 131072      # training context: num_ctx is clamped to it
    embedding_length = 3072
    # optional: parent = "other:tag" (shares its weights, so its runner), parameters = {num_ctx = 8192},
    # template, system, license, modified_at, kv_bytes_per_token, tokens_per_second,
    # time_to_first_token_ms, num_parallel, load_seconds, and the faults below.

    [[pullable]]                 # what /api/pull can fetch (same keys as [[models]])
    name = "tinyllama:1.1b"
    size = 637700138

Fault injection, three ways:
  * per model in the config: fail_after_tokens = N (an error line after N tokens; 0 = HTTP 500 before
    any byte), stall_after_tokens = N (stop sending, hold the slot until the client leaves),
    error_message = "...", load_error = "..." (the load fails with 500), load_stalls = true (the load
    never progresses, so it fails after load_timeout);
  * at run time: POST /sim/faults {"model": "m", "fail_after_tokens": 3} (also tokens_per_second,
    time_to_first_token_ms, load_seconds; a null value removes a key, {"clear": true} removes all);
    GET /sim/faults lists them. A load in progress follows load_seconds, so a test can hold a load
    open (load_seconds = 3600) and release it (load_seconds = 0) without timing margins;
  * per request: options {"sim_fail_after_tokens": N, "sim_stall_after_tokens": N} (Ollama ignores
    unknown options, so a gateway passes them through; /v1 cannot carry them).

Inspection: GET /sim/stats (per-model counters, gauges and their peaks, loaded runners including one
still loading, pending queue, effective config) and POST /sim/reset (zero counters; {"unload": true}
also unloads every model, one still loading once it is ready; {"faults": true} also clears runtime
faults).

Version-dependent behaviour follows `version` (ollamasim/versions.py; "0.30.0-rc3" counts as 0.30.0):
  * from v0.30.0 (llama-server runners): a model still loading is not in the scheduler's loaded set, so
    requests for it queue as pending loads and count against max_queue, /api/ps does not list it and a
    keep_alive: 0 unload does nothing; `shift` is a launch option, so a different value reloads; an
    over-long prompt is refused by llama-server (truncate: false) or with Ollama's own 400 (no context
    shift); /api/tags details carry context_length and embedding_length. Before: the loading runner is
    listed and shared, shift never reloads, and the Ollama runner cuts or refuses the prompt.
  * default num_ctx: from v0.15.5 by total VRAM (gpu_memory): 4096 below 23 GiB, 32768 below 47 GiB,
    262144 from 47 GiB (Ollama's thresholds sit a GiB under 24/48 because GPUs report a little less);
    4096 from v0.6.7; 2048 before. An explicit num_ctx in [server] wins, as OLLAMA_CONTEXT_LENGTH does.
  * fast_path and chunk_style are separate knobs, not derived from the version.

Known deviations from Ollama (keep this list true when the simulator changes):
  * Tokens come from a stand-in tokenizer (words and punctuation) and a stand-in chat template (4 tokens
    per message, 64 per image), so prompt_eval_count, where a prompt stops fitting and where it is cut
    differ from a real model's. When a prompt is cut, every model is taken to add a BOS token.
  * Output is deterministic generated text, tool calls and JSON of the right shape, and synthetic
    logprobs; nothing is a model's real answer. Thinking, tool calls and structured output are planned
    whole, not parsed from a template (no harmony, no two-pass structured output for thinking models).
  * Memory: a runner is weights + num_ctx x num_parallel x kv_bytes_per_token, plus 768 MiB / 2 GiB for an
    explicit num_batch of 1024 / 2048. Ollama predicts from the GGUF and picks num_batch automatically
    (512/1024/2048 by context and headroom, with the same surcharge); here an unset num_batch stays 512.
    VRAM is one pool (gpu_memory): no per-GPU placement, OLLAMA_SCHED_SPREAD, main_gpu placement or
    OLLAMA_GPU_OVERHEAD; gpu_count only sets the automatic max_loaded_models.
  * No out-of-memory paths: no retry with a smaller automatic num_ctx, no evict-all retry, no runtime
    OOM expiry, and no wait for VRAM to be freed after an unload.
  * Loads take size x load_seconds_per_gib (or load_seconds) and only stall when told to; needsReload's
    ping of a loaded runner, adapters and projectors are not simulated. use_mmap is unset unless a
    request sets it, where Ollama may derive it, so an explicit use_mmap may reload here and not there.
  * Before v0.30.0 Ollama's pending loop moved on while a runner finished loading in the background;
    here the loop waits for every load to finish, whatever the version.
  * Other version differences are not modelled: num_parallel defaults to 1 and max_queue to 512 for
    every version (older releases chose 4 or 2 slots automatically, and a queue of 10 with 500s).
  * Scheduler races of Ollama's two goroutines (duplicate expiry events, the 10 ms re-expiry poll) are
    absent: a busy victim unloads exactly when its last request ends.
  * /api/embed truncates to num_ctx without Ollama's num_batch retry; images are accepted as base64 but
    never looked at (vision models still get at least 2048 context).
  * /api/create only derives from an installed model (`from` with `parameters`, `system` or `template`);
    creating from uploaded files is refused, and an unknown `from` fails as a pull of it would.
  * Not served: /api/push, /api/blobs, /v1/responses, /v1/messages, /v1/audio, cloud
    (`:cloud`) and remote models; /api/pull only fails with "file does not exist".
  * The HTTP server is aiohttp: headers beyond Content-Type (Date, chunking, Content-Length) differ from
    Go's net/http, and messages for malformed JSON approximate Go's decoder.
"""
