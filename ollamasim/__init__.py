"""ollamasim: a faithful Ollama simulator (native /api and the OpenAI /v1 layer) for development, tests,
demos and benchmarks. The behaviour it copies is described in /work/shared/reference/ollama.md.

Run it:
    python -m ollamasim --host 127.0.0.1 --port 11434 [--config sim.toml]
        [--num-parallel N] [--max-queue N] [--max-loaded-models N] [--keep-alive 5m] [--gpu-memory 24GiB]
        [--num-ctx N] [--tokens-per-second F] [--time-to-first-token-ms F] [--load-seconds-per-gib F]
        [--chunk-style head|legacy] [--no-fast-path] [--version-string X] [--log-level INFO] [--access-log]
It prints one line once listening: "ollamasim 0.32.15 listening on http://127.0.0.1:11434 (...)".
Without --config it serves a demo catalogue (llama3.2:3b, qwen2.5-coder:1.5b, qwen3:0.6b, all-minilm).

Config (TOML; every key optional; flags override the file):
    [server]
    version = "0.32.15"          # /api/version
    num_parallel = 1             # OLLAMA_NUM_PARALLEL: slots per model (embedding models always get 1)
    max_queue = 512              # OLLAMA_MAX_QUEUE: requests waiting for a load before 503
    max_loaded_models = 0        # 0 = auto = 3 x gpu_count
    keep_alive = "5m"            # OLLAMA_KEEP_ALIVE: Go duration or seconds; negative = forever
    load_timeout = "5m"          # OLLAMA_LOAD_TIMEOUT (a stall timeout; only a stalled load hits it)
    gpu_memory = "24GiB"         # VRAM budget: runner = weights + num_ctx x num_parallel x kv_bytes_per_token
    num_ctx = 4096               # default context length
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
    GET /sim/faults lists them;
  * per request: options {"sim_fail_after_tokens": N, "sim_stall_after_tokens": N} (Ollama ignores
    unknown options, so a gateway passes them through; /v1 cannot carry them).

Inspection: GET /sim/stats (per-model counters, gauges and their peaks, loaded runners, pending queue,
effective config) and POST /sim/reset (zero counters; {"unload": true} also unloads every model,
{"faults": true} also clears runtime faults).
"""
