#!/usr/bin/env bash
# What `make test` needs besides Python packages: Debian's redis-server (the suite starts its own),
# nodejs and npm (the JavaScript SDK tests), chromium (the browser tests), caddy (checks
# deploy/Caddyfile), iproute2 (`ss`, the web process's listen backlog), python3-venv (to create .venv),
# and the Node packages locked in tests/node (among them Codex CLI and Claude Code, whose binaries
# tests/test_coding_agent_clis.py runs: about 800 MB installed). As root with apt-get, install what is
# missing (one `apt-get update`, only then); otherwise stop with one line saying what to install. When
# everything is there it only looks, and says nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v caddy >/dev/null || missing+=(caddy)
command -v ss >/dev/null || missing+=(iproute2)
if [ ! -x .venv/bin/python ] && ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing Debian packages the tests need: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v apt-get >/dev/null; then
        echo "make test needs Debian packages that are missing. Run: sudo apt-get install ${missing[*]}   then run make test again." >&2
        exit 1
    else
        echo "make test needs these (Debian package names): ${missing[*]}. Install them, then run make test again." >&2
        exit 1
    fi
fi

# The locked Node packages (tests/node/package-lock.json), installed when one is missing or stale. Claude
# Code's postinstall script puts its native binary in place: tests/node/package.json allows it.
if ! node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("tests/node/package-lock.json", "utf8"));
    for (const name of Object.keys(lock.packages[""].dependencies)) {
        const manifest = "tests/node/node_modules/" + name + "/package.json";
        const wanted = lock.packages["node_modules/" + name].version;
        if (!fs.existsSync(manifest) || JSON.parse(fs.readFileSync(manifest, "utf8")).version !== wanted) process.exit(1);
    }' 2>/dev/null; then
    echo "Installing the Node packages locked in tests/node/package-lock.json (npm ci)..."
    npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null
fi
