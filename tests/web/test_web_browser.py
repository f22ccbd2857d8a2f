"""End to end in a real browser: Debian's chromium driven by Playwright against
a real uvicorn server on 127.0.0.1. Screenshots of the main pages go to
test-artifacts/ (gitignored).

Without chromium the tests are skipped on a developer machine and FAIL under
CI=true (where .ci/run installs it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from webenv import ORG_A, WebEnv, make_env, password_of

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("FACTBRIDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"


def _need_browser() -> None:
    missing = not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM))
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        message = f"chromium ({CHROMIUM}) or playwright is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": .ci/run must install them")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, port: int) -> Iterator[None]:
    """The app served by uvicorn on 127.0.0.1:port in a thread, for the length of the block."""
    import uvicorn

    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, WebEnv]]:
    _need_browser()
    port = _free_port()
    # the public URL of a published verdict comes from the settings, never from the Host header
    env = make_env(tmp_path_factory.mktemp("e2e"), storage_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'fb.db'}",
                   host="127.0.0.1", port=port)
    with serving(env.app, port):
        yield f"http://127.0.0.1:{port}", env
    env.close()
    env.services.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password_of(username))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_case_from_queue_to_published_claimreview_and_appeal(server: tuple[str, WebEnv], browser: Any, tmp_path: Path) -> None:
    base, env = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

    sign_in(page, base, "a-editor")
    assert page.locator("#queue .queue-item").count() >= 2
    shot(page, "01-dashboard")
    page.locator("#queue .queue-item").first.click()
    page.wait_for_url(f"{base}/posts/{env.ids[ORG_A]['post']}")
    assert "health claim" in page.inner_text("#checkworthiness")
    shot(page, "02-post")

    page.click("#open-case")
    page.wait_for_url(f"{base}/cases/case-*")
    case_url = page.url
    # evidence: a link (the script hides the file field for links), then a file
    page.select_option("#evidence-kind", "link")
    assert page.locator("input[name=file]").is_hidden()
    page.fill("input[name=url]", "https://who.example.int/5g")
    page.fill(".evidence-form textarea[name=text]", "WHO explainer")
    page.click("#add-evidence")
    page.wait_for_selector("li.ev-link")
    page.select_option("#evidence-kind", "file")
    upload = tmp_path / "screenshot.png"
    upload.write_bytes(PNG)
    page.set_input_files("input[name=file]", str(upload))
    page.click("#add-evidence")
    page.wait_for_selector("li.ev-file")

    page.select_option("#verdict-form select[name=rating]", "False")
    page.fill("#verdict-form input[name=headline]", "No, 5G towers do not spread viruses")
    page.fill("#verdict-form textarea[name=explanation]", "Radio waves cannot carry viruses; the WHO explains why.")
    page.click("#save-verdict")
    page.wait_for_selector(".rating")
    assert page.locator("#approve").count() == 0  # the drafter cannot approve
    page.click("header form button[type=submit]")  # sign out
    page.wait_for_url(f"{base}/login")

    sign_in(page, base, "a-reviewer")
    page.goto(case_url)
    page.click("#approve")
    page.wait_for_selector("#publish")
    page.click("#publish")
    page.wait_for_selector("#public-link")
    shot(page, "03-case")
    public_url = page.inner_text("#public-link")
    assert public_url.startswith(base)

    page.goto(public_url)
    raw = page.locator('script[type="application/ld+json"]').text_content()
    node = json.loads(raw)
    assert node["@context"] == "https://schema.org" and node["@type"] == "ClaimReview"
    assert node["url"] == public_url and node["claimReviewed"].startswith("5G towers")
    assert node["reviewRating"]["@type"] == "Rating" and node["reviewRating"]["alternateName"] == "False"
    assert node["author"] == {"@type": "Organization", "name": "Desk A <Vietnam>"}
    assert node["headline"] == "No, 5G towers do not spread viruses" and len(node["datePublished"]) == 10
    assert page.inner_text("#rating") == "False"
    shot(page, "04-public-factcheck")

    visitor = browser.new_context(viewport={"width": 1000, "height": 900}, locale="fr-FR")
    vpage = visitor.new_page()
    vpage.goto(public_url)
    assert "Contester ce verdict" in vpage.inner_text("#appeal")  # French from Accept-Language
    vpage.fill("textarea[name=reason]", "Le lien de l'OMS date de 2020.")
    vpage.click("#file-appeal")
    vpage.wait_for_selector("#thanks")
    shot(vpage, "05-appeal-filed")
    visitor.close()

    page.goto(f"{base}/appeals")
    assert "Le lien de l'OMS date de 2020." in page.inner_text("main")
    shot(page, "06-appeals")
    page.goto(f"{base}/narratives/{env.ids[ORG_A]['narrative']}?lang=km")
    assert page.locator("svg.chart polyline").count() == 1
    shot(page, "07-narrative-km")
    assert not console_errors, console_errors  # includes CSP violations
    context.close()
    assert env.web.audit.verify(ORG_A).ok


def test_public_report_in_the_browser(server: tuple[str, WebEnv], browser: Any) -> None:
    base, env = server
    context = browser.new_context(locale="vi-VN")
    page = context.new_page()
    page.goto(f"{base}/public/{ORG_A}/report")
    assert "Báo cáo bài đăng đáng ngờ" in page.inner_text("h1")
    page.fill("textarea[name=text]", "Vắc xin Covid-19 làm phụ nữ bị vô sinh")
    page.fill("input[name=platform]", "zalo")
    page.click("#send-report")
    page.wait_for_selector("#thanks")
    shot(page, "08-report-vi")
    context.close()
    assert any(p.platform == "zalo" for p in env.services.storage.list_posts(ORG_A, limit=500))


def test_password_change_in_the_browser(server: tuple[str, WebEnv], browser: Any) -> None:
    base, env = server
    other = browser.new_context()
    other_page = other.new_page()
    sign_in(other_page, base, "a-viewer")
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    sign_in(page, base, "a-viewer")
    page.click("header a.who")
    page.wait_for_url(f"{base}/account")
    page.fill("input[name=current_password]", password_of("a-viewer"))
    page.fill("input[name=new_password]", "nouveau mot de passe 2026")
    page.fill("input[name=confirm_password]", "nouveau mot de passe 2026")
    page.click("#change-password")
    page.wait_for_selector("#changed")
    assert "Votre mot de passe a été changé." in page.inner_text("#changed")
    shot(page, "09-account-fr")
    page.goto(f"{base}/")
    assert page.url == f"{base}/"  # this browser stays signed in
    other_page.goto(f"{base}/")
    assert "/login" in other_page.url  # the other one was signed out
    other.close()
    context.close()
