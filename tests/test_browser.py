"""A presenter in headless Chromium: pick an artwork once, walk every tab through its main flow, and
write ``docs/screenshots/<tab>.png`` (the README shows them, so they cannot go stale).

Skips (with the reason) when Chromium or Playwright is missing, except under CI=true.
"""
import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser


def _require(ok: bool, reason: str):
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: browser tests may not skip)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def page(app_server):
    _require(os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM}; install Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright (Python) is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--lang=en-US"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1200}, locale="en-US")
        pg.set_default_timeout(180_000)
        pg.goto(app_server)
        yield pg
        browser.close()


def _shot(page, tab: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = SHOTS / f"{tab}.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 20_000
    return out


def _tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def test_one_artwork_walks_through_every_tab(page):
    # Tokenize: pick an artwork once in the header; the presenter view fills in by itself
    page.locator("#gallery .thumbnail-item").first.click()
    page.locator("#current-caption").get_by_text("—").first.wait_for()          # "Title — Artist, year"
    page.locator("#headline").get_by_text("tokens =").wait_for()
    page.locator("#reconstruction img").wait_for()
    assert "bits" in page.locator("#headline").inner_text()
    _shot(page, "tokenize")

    # Inpaint: the same artwork is on the canvas; draw over a part and watch the steps
    _tab(page, "Inpaint")
    canvas = page.locator("#inpaint-canvas canvas").first
    canvas.wait_for()
    box = canvas.bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.35 * w, y + 0.4 * h)
    page.mouse.down()
    for k in range(12):
        page.mouse.move(x + (0.35 + 0.025 * k) * w, y + (0.4 + 0.02 * k) * h)
    page.mouse.up()
    page.locator("#inpaint-run").click()
    page.locator("#inpaint-message").get_by_text("tokens masked").first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('#inpaint-frames img').length >= 1 && "
                           "!document.querySelector('#inpaint-message').innerText.includes('step ')", timeout=120_000)
    _shot(page, "inpaint")

    # Codecs: compress the same artwork with a learned codec
    _tab(page, "Codecs")
    page.locator("#codec-run").click()
    page.locator("#codec-headline").get_by_text("bytes").wait_for()
    _shot(page, "codecs")

    # Context budget
    _tab(page, "Context budget")
    page.locator("#budget-update").click()
    page.locator(".js-plotly-plot").last.wait_for()
    _shot(page, "context-budget")

    # Chat: ask the guide about the same artwork (no second upload)
    _tab(page, "Chat")
    page.locator("#chat-question textarea").fill("What colours dominate this painting?")
    page.locator("#chat-send").click()
    page.locator("#chat-notice").get_by_text("time to first token").wait_for(timeout=240_000)
    answer = page.locator("#chatbot .bot, #chatbot [data-testid='bot']").last.inner_text()
    assert len(answer.split()) >= 4, answer                        # a sentence, not one word
    for n, q in enumerate(["Ai đã vẽ bức tranh này?", "Describe what is in the picture."], start=2):
        page.locator("#chat-question textarea").fill(q)             # a Vietnamese question, then a description
        page.locator("#chat-send").click()
        answer = _wait_answer(page, n)
        assert len(answer.split()) >= 4, answer
    _shot(page, "chat")


def _wait_answer(page, n: int, timeout_s: float = 120.0) -> str:
    """The n-th answer of the chatbot once it has stopped growing for 1.5 s."""
    bots = page.locator("#chatbot .bot, #chatbot [data-testid='bot']")
    page.wait_for_function(f"() => document.querySelectorAll(\"#chatbot .bot, #chatbot [data-testid='bot']\").length >= {n}",
                           timeout=timeout_s * 1000)
    last, t_end, stable = None, time.time() + timeout_s, 0
    while time.time() < t_end and stable < 3:
        text = bots.last.inner_text()
        stable = stable + 1 if text == last and text.strip() else 0
        last = text
        page.wait_for_timeout(500)
    return last or ""


def test_the_switch_speaks_vietnamese(page):
    page.get_by_label("Tiếng Việt").check()
    page.get_by_role("tab", name="Trò chuyện").wait_for()
    page.get_by_role("tab", name="Mã hoá token").wait_for()             # the tabs are relabelled one by one
    assert page.get_by_role("tab", name="Mã hoá token").count() == 1
    page.get_by_role("tab", name="Mã hoá token").click()
    page.locator("#run").click()                                       # messages in Vietnamese too
    page.locator("#headline").get_by_text("token =").wait_for()
    page.wait_for_timeout(1500)
    _shot(page, "tokenize-vi")
    page.get_by_label("English").check()
    page.get_by_role("tab", name="Chat").wait_for()
