"""The desk's journeys in a real browser (Debian's chromium via Playwright, one
uvicorn server and one browser for the module), each in the four interface
languages on a 390 px wide phone screen. Every page visited gets a screenshot
under test-artifacts/desk/ (written by this run; the folder is gitignored) and an
axe-core accessibility check (tests/web/vendor/axe.min.js, injected into the page)
that must find no serious or critical violation; no page may scroll sideways."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_web_browser import ARTIFACTS, _free_port, _need_browser, serving
from webenv import ORG_A, WebEnv, make_env, password_of

from factbridge.models import MatchCandidate, SignalScore
from factbridge.pipeline.triage import triage_posts
from factbridge.web.i18n import LANGUAGES, catalog

pytestmark = pytest.mark.browser

AXE = Path(__file__).with_name("vendor") / "axe.min.js"
SHOTS = ARTIFACTS / "desk"
PHONE = {"width": 390, "height": 844}
LANGS = list(LANGUAGES)
LOCALES = {"en": "en-GB", "vi": "vi-VN", "km": "km-KH", "fr": "fr-FR"}
FC_5G = "https://factcheck.example.org/5g-virus"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, WebEnv]]:
    _need_browser()
    env = make_env(tmp_path_factory.mktemp("desk-e2e"), storage_url=f"sqlite:///{tmp_path_factory.mktemp('desk-db') / 'fb.db'}",
                   match_fusion="dense", match_threshold=0.5, possible_threshold=0.3)
    _seed_desk(env)
    port = _free_port()
    with serving(env.app, port):
        yield f"http://127.0.0.1:{port}", env
    env.close()
    env.services.close()


def _seed_desk(env: WebEnv) -> None:
    """A wrong-looking match to review, and published fact-checks in Vietnamese and Khmer."""
    storage = env.services.storage
    cand = MatchCandidate(factcheck_id=FC_5G, rank=1, dense=SignalScore(score=0.79, rank=1), lexical=SignalScore(score=3.1, rank=2),
                          features={"number_overlap": 0.0, "date_close": 1.0}, fused_score=0.79, decision="match", decided_by="matcher-test-1")
    storage.replace_matches(ORG_A, "en-5g", [cand])
    triage_posts(env.services, ORG_A, [storage.get_post(ORG_A, "en-5g")])
    web = env.web
    drafter, approver = web.accounts.get_user("a-editor"), web.accounts.get_user("a-reviewer")
    for claim, language, rating, headline in [
        ("Uống nước lá chùm ngây chữa khỏi bệnh tiểu đường", "vi", "False", "Lá chùm ngây không chữa khỏi bệnh tiểu đường"),
        ("ធនាគារ ABA ផ្ញើសារឱ្យអតិថិជនចូលគណនីតាមតំណ", "km", "Scam", "សារក្លែងក្លាយក្នុងនាមធនាគារ ABA"),
    ]:
        case = web.cases.open(ORG_A, drafter, claim, source_kind="manual", language=language)
        case = web.cases.draft_verdict(ORG_A, drafter, case.id, rating, "Nguồn: Bộ Y tế / ក្រសួងសុខាភិបាល.", headline=headline, language=language)
        case = web.cases.approve(ORG_A, approver, case.id)
        web.cases.publish(ORG_A, approver, case.id, "http://testserver", "Desk A")


def check(page: Any, name: str) -> None:
    """Screenshot, axe-core (no serious or critical violation) and no sideways scrolling at 390 px."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the driver: the page's CSP stays on
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    assert not result, f"{name}: axe found {json.dumps(result, ensure_ascii=False)}"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{name}: the page is {width} px wide"


def phone(browser: Any, lang: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport=PHONE, locale=LOCALES[lang], is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


def sign_in(page: Any, base: str, username: str, lang: str) -> None:
    page.goto(f"{base}/login?lang={lang}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password_of(username))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


@pytest.mark.parametrize("lang", LANGS)
def test_desk_journeys_on_a_phone(server: tuple[str, WebEnv], browser: Any, lang: str) -> None:
    """Queue, inbox, alerts, narratives, a post's candidates side by side, a case's verdict form,
    the 404 page, public search and an instant answer: in `lang`, at 390 px."""
    base, env = server
    t = catalog(lang)
    context, page = phone(browser, lang)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, base, "a-analyst", lang)

    # (4) the queue, grouped, each row led by a sentence; inboxes and list pages
    assert page.locator("#queue .lead").count() >= 1
    check(page, f"04-queue-{lang}")
    for path, marker, name in [("/inbox", "#awaiting", "inbox"), ("/alerts", "#alert-list", "alerts"), ("/narratives", "#narrative-list", "narratives")]:
        page.goto(base + path)
        page.wait_for_selector(marker)
        check(page, f"04-{name}-{lang}")

    # (1) the candidate beside the post, reasons in plain words, the two buttons
    page.goto(f"{base}/posts/en-5g")
    candidate = page.locator("#candidate-1")
    assert t["decision.match"] in candidate.inner_text() and t["match.meaning_mid"] in candidate.inner_text()
    assert candidate.locator("button.same-claim").inner_text() == t["match.same"]
    check(page, f"01-candidate-{lang}")

    # (5) the verdict form: ratings in this language, none chosen beforehand
    page.goto(f"{base}/posts/p-0001")
    page.on("dialog", lambda d: d.accept())  # the post has a case from another language's run: open one more
    page.click("#open-case")
    page.wait_for_url(f"{base}/cases/case-*")
    options = page.locator("#verdict-form select[name=rating] option").all_inner_texts()
    assert options[0] == t["rating.choose"] and page.input_value("#verdict-form select[name=rating]") == ""
    assert {"en": "False", "vi": "Sai", "km": "មិនពិត", "fr": "Faux"}[lang] in options
    assert {"en": "Scam", "vi": "Lừa đảo", "km": "ការបោកប្រាស់", "fr": "Arnaque"}[lang] in options
    check(page, f"05-case-{lang}")

    assert not errors, errors  # includes CSP violations

    # (7) a translated 404 page
    page.goto(f"{base}/no-such-page")
    assert t["error.404_text"] in page.inner_text("main")
    check(page, f"07-not-found-{lang}")
    context.close()

    # (2)(3) the public side, without an account
    visitor, vpage = phone(browser, lang)
    for query, expected, name in [("la chum ngay", "Lá chùm ngây", "vi-unaccented"), ("tieu duong", "tiểu đường", "vi-unaccented-2"),
                                  ("ធនាគារABA", "ABA", "km-unspaced")]:
        vpage.goto(f"{base}/public/{ORG_A}?q={query}")
        assert expected in vpage.inner_text("ul.results"), query
        check(vpage, f"02-search-{name}-{lang}")
    vpage.goto(f"{base}/public/{ORG_A}/report")
    vpage.fill("input[name=url]", "not a link")
    vpage.click("#send-report")  # (7) inline validation, in the page's language, before anything is sent
    assert vpage.inner_text("textarea[name=text] + .field-error") == t["form.required"]
    assert vpage.inner_text("input[name=url] + .field-error") == t["form.format"]
    assert vpage.url.endswith("/report")
    check(vpage, f"07-inline-validation-{lang}")
    vpage.fill("textarea[name=text]", "ធនាគារ ABA ផ្ញើសារឱ្យអតិថិជនចូលគណនីតាមតំណ ដើម្បីផ្ទៀងផ្ទាត់")
    vpage.fill("input[name=url]", "https://aba-bank-verify.example.xyz/login")
    vpage.click("#send-report")
    vpage.wait_for_selector("#answer")
    assert t["answer.match"] in vpage.inner_text("#answer") and t["answer.links"] in vpage.inner_text("#link-warning")
    check(vpage, f"03-answer-{lang}")
    visitor.close()


def test_review_expired_session_and_corrected_appeal(server: tuple[str, WebEnv], browser: Any) -> None:
    """(1) "Not the same claim" and its effect on the queue; (7) an expired session keeps the typed
    verdict, a second case asks first, "corrected" leads to the correction form."""
    base, env = server
    context, page = phone(browser, "fr")
    fr = catalog("fr")
    sign_in(page, base, "a-editor", "fr")
    page.goto(f"{base}/posts/en-5g")
    page.click("#candidate-1 button.not-same-claim")
    page.wait_for_selector("#candidate-1 .reviewed")
    assert fr["match.reviewed_not_same"].format(who="a-editor", at="")[:20] in page.inner_text("#candidate-1 .reviewed")
    check(page, "01-reviewed-fr")
    queued = env.services.storage.get_docs(ORG_A, "queue", ["en-5g"])["en-5g"]
    assert queued["components"]["debunked"]["value"] == 0.0

    # a case from the post, then a second one: the browser asks first (dismissed: no new case)
    page.click("#open-case")
    page.wait_for_url(f"{base}/cases/case-*")
    case_url = page.url
    page.goto(f"{base}/posts/en-5g")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click("#open-case")
    page.wait_for_timeout(300)
    assert asked == [fr["case.second_case"]] and page.url.endswith("/posts/en-5g")

    # the session expires while a verdict is being typed
    page.goto(case_url)
    page.select_option("#verdict-form select[name=rating]", "False")
    page.fill("#verdict-form textarea[name=explanation]", "Les ondes radio ne transportent pas de virus.")
    context.clear_cookies()
    page.click("#save-verdict")
    page.wait_for_selector("#sign-in-again")
    check(page, "07-session-expired-fr")
    page.click("#sign-in-again")
    page.fill("input[name=username]", "a-editor")
    page.fill("input[name=password]", password_of("a-editor"))
    page.click("button[type=submit]")
    page.wait_for_url(case_url)
    page.wait_for_selector(".draft-restored")
    assert page.input_value("#verdict-form textarea[name=explanation]") == "Les ondes radio ne transportent pas de virus."
    assert page.input_value("#verdict-form select[name=rating]") == "False"
    check(page, "07-draft-restored-fr")
    page.click("#save-verdict")
    page.wait_for_selector("#verdict .rating")
    assert page.inner_text("#verdict .rating") == "Faux"
    context.close()

    # an appeal decided "corrected" leads to the correction form, and saving it decides the appeal
    web = env.web
    published = web.cases.find(ORG_A, status="published")[0]
    appeal = web.appeals.file(ORG_A, published.id, "La source date de 2020.")
    context, page = phone(browser, "fr")
    sign_in(page, base, "a-editor", "fr")
    page.goto(f"{base}/appeals")
    form = page.locator(f"[id='{appeal.id}'] form")
    form.locator("select[name=outcome]").select_option("corrected")
    form.locator("textarea[name=note]").fill("Source mise à jour.")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#correction-form")
    assert fr["appeal.corrected_next"] in page.inner_text("#correct")
    page.fill("#correction-form textarea[name=text]", "Lien remplacé par la version 2024.")
    check(page, "07-correction-for-appeal-fr")
    page.click("#correction-form button[type=submit]")
    page.wait_for_selector(".correction")
    assert web.appeals.get(ORG_A, appeal.id).outcome == "corrected"
    context.close()
    assert env.web.audit.verify(ORG_A).ok


@pytest.mark.parametrize("lang", LANGS)
def test_every_other_page_passes_axe_on_a_phone(server: tuple[str, WebEnv], browser: Any, lang: str) -> None:
    """The pages the journeys above do not visit: sign-in, cases, a narrative, appeals, audit, users,
    account, a post, and the public fact-check and report pages."""
    base, env = server
    context, page = phone(browser, lang)
    page.goto(f"{base}/login?lang={lang}")
    check(page, f"00-login-{lang}")
    sign_in(page, base, "a-admin", lang)
    published = env.web.cases.list_published(ORG_A, limit=1)[0]
    for path, name in [("/cases", "cases"), (f"/narratives/{env.ids[ORG_A]['narrative']}", "narrative"), ("/appeals", "appeals"),
                       ("/audit", "audit"), ("/admin/users", "users"), ("/account", "account"), (f"/posts/{env.ids[ORG_A]['post']}", "post"),
                       (f"/public/{ORG_A}/factchecks/{published.page_id}", "public-factcheck"), (f"/public/{ORG_A}/report", "public-report")]:
        response = page.goto(base + path)
        assert response is not None and response.ok, path
        check(page, f"09-{name}-{lang}")
    context.close()
