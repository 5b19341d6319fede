"""The page, Swagger UI and ReDoc work in headless Chromium under the service's
Content-Security-Policy, with nothing loaded from another site."""

from __future__ import annotations

import pytest

from coarse_loftr.api import loadtest

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.slow
def test_pages_run_under_the_content_security_policy(random_student_onnx):
    from playwright.sync_api import sync_playwright

    checks = {
        "/": "#overlay",  # the live tab's canvas
        "/docs": ".swagger-ui .opblock",  # Swagger UI rendered the operations
        "/redoc": "[data-section-id]",  # ReDoc rendered its sections
    }
    with loadtest.running_server(random_student_onnx) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            for path, selector in checks.items():
                page = browser.new_page()
                problems: list[str] = []
                page.on("console", lambda m, out=problems: m.type == "error" and out.append(m.text))
                page.on("pageerror", lambda e, out=problems: out.append(str(e)))
                foreign: list[str] = []
                page.on("request", lambda r, out=foreign: r.url.startswith(url) or out.append(r.url))
                page.goto(url + path)
                page.wait_for_selector(selector, timeout=20_000)
                page.wait_for_timeout(500)
                # ReDoc's footer links its vendor's logo from a CDN: the policy blocks it.
                blocked = [p for p in problems if "cdn.redoc.ly" not in p]
                assert not blocked, (path, blocked)
                assert all("cdn.redoc.ly" in f or f.startswith(("data:", "blob:")) for f in foreign), foreign
                page.close()
        finally:
            browser.close()
