"""Fixtures of the browser tests: a JupyterLab server of the project's own environment and
Debian's Chromium driven by Playwright (its Python driver only; no browser download).

The server listens on 127.0.0.1 and a free port, in a temporary root holding an output-free copy
of notebooks/03_dashboards.ipynb, with a random token read from a 0600 file
(JUPYTER_TOKEN_FILE): a token on the command line would be readable by every user of the
machine through `ps`. Its log goes to a file in that root and is shown only redacted. The
browser signs in through the login form, so no URL it visits (and no Playwright error message,
which quotes URLs) holds the token.

Chromium missing: the browser tests are skipped with the reason, unless CI is set, where they
fail (CI must run them: .ci/run installs chromium).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "03_dashboards.ipynb"
# Debian's package `chromium` (PLAML_CHROMIUM: another build, or a missing path in tests)
CHROMIUM = Path(os.environ.get("PLAML_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  # containers often mount a 64 MB /dev/shm, too small for a renderer
                  "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("PLAML_BROWSER_ARTIFACTS",
                                ROOT / "tests" / "artifacts" / "browser"))
SERVER_START_S = 90.0  # a cold start of JupyterLab on a busy 2-core machine: ~5 s

# JupyterLab user settings for the test server: every cell attached to the DOM (the default
# 'contentVisibility' windowing skips rendering cells out of view), no news / update toasts
# (which would also reach out to the network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                   "checkForUpdates": False,
                                                   "doNotDisturbMode": True},
}


def redact(text: str, token: str) -> str:
    """`text` with every occurrence of the token replaced (server logs print URLs with it)."""
    return text.replace(token, "<token>") if token else text


@dataclass
class LabServer:
    """A running JupyterLab. `url` has no token; `get` talks to it with or without one."""

    port: int
    root: Path
    log: Path
    runtime: Path
    proc: subprocess.Popen = field(repr=False)
    _token: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The secret; only for signing in (never put it into a URL or a message)."""
        return self._token

    def get(self, path: str, token: str | None = "valid", method: str = "GET",
            body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request, redirects not followed. token: 'valid'
        (Authorization header with the server's token), None (no credentials) or a string."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = "token " + (self._token if token == "valid" else token)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return redact(text[-chars:], self._token)

    def kernel_pids(self) -> list[int]:
        """Processes whose command line names this server's runtime folder: its kernels (which
        jupyter_client starts in sessions of their own, out of the server's process group)."""
        pids, needle = [], str(self.runtime).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if needle in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server (a notebook kernel holds torch: ~1 GB)."""
        try:
            status, _, body = self.get("/api/kernels")
            if status == 200:
                for k in json.loads(body):
                    self.get(f"/api/kernels/{k['id']}", method="DELETE")
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        """Shut down the kernels and the server; SIGKILL whatever is left after 15 s."""
        kernels = self.kernel_pids()
        if self.proc.poll() is None:
            self.shutdown_kernels()
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in kernels:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def output_free_copy(src: Path, dst: Path) -> None:
    """The notebook without its saved outputs: whatever renders in the browser then comes from
    this run's kernel, not from a snapshot saved in the file."""
    nb = json.loads(src.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    dst.write_text(json.dumps(nb, indent=1))


def start_lab(base: Path, token: str | None = None) -> LabServer:
    """JupyterLab from this Python environment on 127.0.0.1:<free port>, root `base`/root,
    ready (GET /api/status answers 200) when returned."""
    token = token or os.environ.get("PLAML_LAB_TOKEN") or secrets.token_hex(24)
    root, runtime = base / "root", base / "runtime"
    settings, config = base / "settings", base / "config"
    for d in (root, runtime, settings, config):
        d.mkdir(parents=True, exist_ok=True)
    output_free_copy(NOTEBOOK, root / NOTEBOOK.name)
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin.replace(':', '/')}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token_file = base / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "PLAML_LAB_TOKEN")}
    env.update(
        CI="true",  # the notebooks' SMOKE settings: quick preset, a few-step run (seconds)
        JUPYTER_TOKEN_FILE=str(token_file),
        # a clean Jupyter: no user config, connection files (they hold kernel keys) in `base`
        JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(runtime),
        IPYTHONDIR=str(base / "ipython"), MPLBACKEND="Agg",
    )
    last_error = ""
    for attempt in range(3):  # the free port may be taken between our probe and the bind
        port = free_port()
        log = base / f"server-{attempt}.log"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
               "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly",
               "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run-all command
               f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={base / 'workspaces'}"]
        if os.geteuid() == 0:  # CI containers run as root; JupyterLab refuses that otherwise
            cmd.append("--allow-root")
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        server = LabServer(port, root, log, runtime, proc, token)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if server.get("/api/status")[0] == 200:
                    return server
            except OSError:
                pass
            time.sleep(0.25)
        last_error = server.log_tail()
        server.stop()
        if "already in use" not in last_error.lower():
            break
    raise RuntimeError(f"JupyterLab did not start on 127.0.0.1; log tail:\n"
                       f"{last_error}")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """One JupyterLab for the session; stopped (kernels included) in every outcome."""
    server = start_lab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server
    finally:
        server.stop()


def _missing(what: str, how: str):
    """Skip (local machine) or fail (CI) a browser test whose tool is missing."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what} is missing: {how} (.ci/run does this)", pytrace=False)
    pytest.skip(f"{what} is missing: {how}")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium under Playwright's driver, closed after the module (the rest of
    `make test` runs without it)."""
    if not CHROMIUM.exists():
        _missing(str(CHROMIUM), "apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package", "pip install -e '.[dev]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (emptied of earlier browser_*.png at the start of a session)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("browser_*.png"):
        old.unlink()
    return ARTIFACTS



@pytest.fixture(scope="session")
def sign_in(lab_server):
    """sign_in(page, next_path): log in through JupyterLab's login form (the token goes into
    the password field, the session into a cookie) and land on `next_path`; no URL the page
    visits then carries the token (Playwright quotes URLs in its errors)."""
    def _sign_in(page, next_path: str) -> None:
        page.goto(f"{lab_server.url}/login?next={next_path}")
        page.fill("#password_input", lab_server.token)
        page.click("#login_submit")
        # JupyterLab's page loads several MB of scripts: generous on a busy 2-core machine
        page.wait_for_url(f"{lab_server.url}{next_path}*", timeout=90_000)
    return _sign_in
