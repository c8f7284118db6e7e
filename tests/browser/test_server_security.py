"""The test server is not a door into the machine: it and its kernels listen on loopback only,
every request without the token is refused, and the token never reaches the test output."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).parent
TCP_LISTEN = "0A"  # state column of /proc/net/tcp{,6}
ZMQ_CHANNELS = 5  # a kernel listens for shell, iopub, stdin, control and heartbeat


def listening_sockets() -> dict[int, tuple[str, int]]:
    """{socket inode: (local address, port)} of every listening TCP socket (IPv4 and IPv6)."""
    out = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != TCP_LISTEN:
                continue
            hex_addr, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_addr)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out[int(cols[9])] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process has exited
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")
def test_server_and_its_kernel_listen_on_loopback_only(lab_server):
    before = set(lab_server.kernel_pids())
    status, _, body = lab_server.get("/api/kernels", method="POST", body={"name": "python3"})
    assert status == 201, body
    kernel_id = json.loads(body)["id"]
    try:
        listening: dict[int, tuple[str, int]] = {}
        kernel_ports = 0
        deadline = time.monotonic() + 60
        while kernel_ports < ZMQ_CHANNELS and time.monotonic() < deadline:
            time.sleep(0.25)  # the kernel binds its ZMQ ports once it has started
            new = set(lab_server.kernel_pids()) - before
            sockets = listening_sockets()
            mine = set().union(*(socket_inodes(p) for p in new)) if new else set()
            kernel_ports = len(mine & set(sockets))
        assert kernel_ports >= ZMQ_CHANNELS, f"the new kernel listens on {kernel_ports} ports"
        pids = [lab_server.proc.pid, *lab_server.kernel_pids()]
        ours = set().union(*(socket_inodes(p) for p in pids))
        listening = {ino: addr for ino, addr in listening_sockets().items() if ino in ours}
        assert any(port == lab_server.port for _, port in listening.values()), (
            "the server's own port is not among its listening sockets")
        exposed = {a for a in listening.values() if a[0] not in ("127.0.0.1", "::1")}
        assert not exposed, f"listening beyond loopback: {sorted(exposed)}"
    finally:
        lab_server.get(f"/api/kernels/{kernel_id}", method="DELETE")


def test_server_port_is_closed_on_the_machines_outward_address(lab_server):
    addr = outward_address()
    if addr is None or addr.startswith("127."):
        pytest.skip("this machine has no non-loopback address to try")
    with pytest.raises(OSError):
        socket.create_connection((addr, lab_server.port), timeout=5).close()


@pytest.mark.parametrize("path", ["/api/contents", "/api/contents/03_dashboards.ipynb",
                                  "/api/kernels", "/api/kernelspecs", "/api/sessions",
                                  "/api/status"])
def test_api_requests_without_or_with_a_wrong_token_are_refused(lab_server, path):
    assert lab_server.get(path)[0] == 200  # with the token: the refusals below are about it
    assert lab_server.get(path, token=None)[0] == 403
    wrong = secrets.token_hex(len(lab_server.token) // 2)
    assert lab_server.get(path, token=wrong)[0] == 403
    assert lab_server.get(f"{path}?token={wrong}", token=None)[0] == 403


@pytest.mark.parametrize("path", ["/lab", "/lab/tree/03_dashboards.ipynb",
                                  "/files/03_dashboards.ipynb"])
def test_pages_without_the_token_redirect_to_login(lab_server, path):
    status, headers, _ = lab_server.get(path, token=None)
    assert status == 302 and headers["location"].startswith("/login"), (status, headers)


def test_the_token_never_appears_in_test_output(tmp_path):
    """Runs tests/browser/leak_probe.py in a child pytest with a known token and every output
    switch on (-s: no capture, -l: locals in tracebacks, -rA: all reports); its tests use the
    token (API requests, the browser's login) and then fail on purpose."""
    token = secrets.token_hex(24)
    env = dict(os.environ, PLAML_LAB_TOKEN=token, PLAML_LEAK_PROBE="1",
               PLAML_BROWSER_ARTIFACTS=str(tmp_path / "artifacts"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-l", "-rA", "--tb=long", "-p", "no:cacheprovider",
         str(HERE / "leak_probe.py")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    leaked = token in output  # (a bool: pytest's report of this test must not show it either)
    shown = output.replace(token, "<TOKEN>")[-4000:]
    # the probe ran: its tests failed at their deliberate asserts, after using the token
    assert "PROBE-API-FAILED" in output, shown
    assert "PROBE-BROWSER-FAILED" in output or "SKIPPED" in output, shown
    where = [ln.replace(token, "<TOKEN>")[:300] for ln in output.splitlines() if token in ln]
    assert not leaked, "the token was printed, in:\n" + "\n".join(where[:10])
