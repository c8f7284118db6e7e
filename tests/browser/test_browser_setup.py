"""Without Chromium the browser tests skip with the reason on a developer machine and fail
under CI, which must run them (.ci/run installs chromium)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).parent


def run_without_chromium(ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PLAML_CHROMIUM"] = "/nonexistent/chromium"
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         str(HERE / "test_dashboards_browser.py"), "-k", "mask_ratio"],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=120)


def test_missing_chromium_skips_with_the_reason_outside_ci():
    proc = run_without_chromium(ci=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 skipped" in proc.stdout and "apt-get install -y chromium" in proc.stdout, (
        proc.stdout[-2000:])


def test_missing_chromium_fails_under_ci():
    proc = run_without_chromium(ci=True)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "1 error" in proc.stdout and "CI is set but /nonexistent/chromium is missing" in (
        proc.stdout), proc.stdout[-2000:]
