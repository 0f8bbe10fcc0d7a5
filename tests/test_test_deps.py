"""`make test` on a fresh machine: scripts/ensure-test-deps.sh installs the Debian packages the suite
needs when it may (as root, with apt-get: one `apt-get update`, only when something is missing), and
otherwise stops with one line saying exactly what to install. Run here with a PATH of its own, in
which some tools are missing and `id` and `apt-get` are stand-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import REPO

SCRIPT = REPO / "scripts" / "ensure-test-deps.sh"
PRESENT = ("dirname", "node", "npm", "ss")  # linked from the real system into the fake PATH


def fake_path(bin_dir: Path, *, uid: int, apt_get: bool = True) -> None:
    bin_dir.mkdir()
    for tool in PRESENT:
        os.symlink(shutil.which(tool), bin_dir / tool)
    write_tool(bin_dir / "id", f'[ "$1" = -u ] && echo {uid}')
    if apt_get:  # records its calls; "installing" a package puts a stand-in for its command on the PATH
        write_tool(bin_dir / "apt-get", f"""
echo "$*" >> {bin_dir}/apt-get.calls
if [ "$1" = install ]; then
    for pkg in "$@"; do
        case "$pkg" in -*) ;; *) printf '#!/bin/sh\\n' > {bin_dir}/"$pkg"; /bin/chmod +x {bin_dir}/"$pkg" ;; esac
    done
fi""")


def write_tool(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def run(bin_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def _needs_the_real_tools():
    missing = [tool for tool in PRESENT if shutil.which(tool) is None]
    assert not missing, f"make test installs {missing} before the suite runs"
    assert (REPO / ".venv" / "bin" / "python").exists()  # so python3-venv is not asked for


def test_without_root_it_stops_with_one_line_naming_the_packages(tmp_path):
    fake_path(tmp_path / "bin", uid=1000)
    result = run(tmp_path / "bin")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "make test needs Debian packages that are missing. Run: sudo apt-get install redis-server caddy"
        "   then run make test again."]
    assert not (tmp_path / "bin" / "apt-get.calls").exists()


def test_without_apt_get_it_names_what_to_install(tmp_path):
    fake_path(tmp_path / "bin", uid=0, apt_get=False)
    result = run(tmp_path / "bin")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "redis-server caddy" in result.stderr


def test_as_root_it_installs_what_is_missing_once_and_then_only_looks(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_path(bin_dir, uid=0)
    first = run(bin_dir)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Installing Debian packages the tests need: redis-server caddy\n"
    calls = (bin_dir / "apt-get.calls").read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq redis-server caddy"]
    again = run(bin_dir)
    assert again.returncode == 0 and again.stdout == again.stderr == ""
    assert (bin_dir / "apt-get.calls").read_text().splitlines() == calls  # no second update
