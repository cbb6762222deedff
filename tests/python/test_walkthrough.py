"""Walks docs/serve-your-own-mesh.md from an empty directory, block by block, as a reader
would: every ```sh block runs in order with bash in one scratch directory, with the built
`meshgate` and this venv's python first on PATH. The one long-running block (`meshgate
serve`) runs in the background until it prints `listening on`; the port the guide uses is
swapped for a free one. If the guide drifts from what meshgate does, this fails.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import threading

from conftest import REPO, _binary

GUIDE = REPO / "docs" / "serve-your-own-mesh.md"
GUIDE_ADDRESS = "127.0.0.1:50061"


def _blocks():
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)


def _free_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_the_guide_serves_a_mesh_from_an_empty_directory(tmp_path):
    blocks = _blocks()
    assert len(blocks) >= 8, "the guide's steps are sh blocks"
    address = _free_address()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        [str(pathlib.Path(_binary()).parent), str(pathlib.Path(sys.executable).parent), env["PATH"]]
    )
    for variable in ("MESHGATE_SERVER", "MESHGATE_USER", "MESHGATE_PASSWORD", "MESHGATE_TOKEN", "MESHGATE_MASTER_KEY"):
        env.pop(variable, None)
    assert not any(tmp_path.iterdir()), "an empty directory"

    server = None
    outputs = []
    try:
        for block in blocks:
            block = block.replace(GUIDE_ADDRESS, address)
            if block.strip().startswith("meshgate serve"):
                server = subprocess.Popen(
                    ["bash", "-c", "exec " + block.strip()],
                    cwd=tmp_path, env=env, text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )
                lines = []
                listening = threading.Event()

                def read():
                    for line in server.stdout:
                        lines.append(line)
                        if line.startswith("listening on"):
                            listening.set()

                threading.Thread(target=read, daemon=True).start()
                assert listening.wait(timeout=120), "serve did not start:\n" + "".join(lines)
                assert f"listening on {address}" in "".join(lines)
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
            )
            assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout + result.stderr)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    assert server is not None, "the guide serves the mesh"
    everything = "\n".join(outputs)
    # keygen wrote a key only its owner reads; check found nothing to warn about.
    key = tmp_path / "secrets" / "master.key"
    assert len(key.read_text().strip()) == 64
    assert key.stat().st_mode & 0o077 == 0
    assert "0 warning(s)" in everything
    # The CLI's query and product page, as the analyst: EMEA only, e-mails masked.
    assert re.search(r"\|\s*EMEA\s*\|\s*2\s*\|\s*420\.25\s*\|", everything), everything
    assert "AMER" not in everything.split("GROUP BY region")[-1]
    assert "customer_email" in everything and "mask(email)" in everything
