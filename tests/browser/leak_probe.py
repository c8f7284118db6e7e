"""Not collected by itself (no test_ prefix): test_server_security runs it in a child pytest
with a known token (PLAML_LAB_TOKEN) and checks that nothing it prints holds that token. Both
tests use the token and then fail on purpose, so pytest prints its fullest failure reports."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("PLAML_LEAK_PROBE") != "1",
                                reason="run by test_the_token_never_appears_in_test_output")


def test_probe_api_then_fail(lab_server):
    status, headers, body = lab_server.get("/api/contents")
    print("server log (as tests show it):", lab_server.log_tail())
    print("server:", lab_server)
    assert status == -1, f"PROBE-API-FAILED {lab_server} {status} {headers} {body[:200]!r}"


def test_probe_browser_then_fail(browser, sign_in):
    page = browser.new_page()
    try:
        sign_in(page, "/lab")
        print("page url:", page.url)
        page.wait_for_url("**/never-reached", timeout=1500)  # Playwright quotes the URLs it saw
    except Exception as e:  # noqa: BLE001 - the probe wants the message printed
        raise AssertionError(f"PROBE-BROWSER-FAILED {e}") from e
    finally:
        page.close()
