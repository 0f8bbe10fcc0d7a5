"""Node.js for the tests: `node` with the packages locked in tests/node installed (`npm ci` when one
is missing or stale). `make test` installs them before the suite runs (scripts/ensure-test-deps.sh); this
covers a pytest run on its own."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def locked_versions() -> dict[str, str]:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    direct = lock["packages"][""]["dependencies"]
    return {name: lock["packages"][f"node_modules/{name}"]["version"] for name in direct}


def installed_version(name: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / name / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


def node_with_packages() -> str:
    """The `node` executable, after making sure every locked package is installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for these tests: apt-get install nodejs npm")
    wanted = locked_versions()
    if any(installed_version(name) != version for name, version in wanted.items()):
        result = subprocess.run([npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed:\n{result.stdout}\n{result.stderr}")
    missing = {name for name, version in wanted.items() if installed_version(name) != version}
    if missing:
        raise RuntimeError(f"npm ci did not install {sorted(missing)}")
    return node
