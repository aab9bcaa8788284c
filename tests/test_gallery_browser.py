"""The gallery and every standalone demo in a real browser (Debian chromium driven by playwright), used as a
person uses them: every control a demo declares is enabled, changing it and pressing the demo's main button
shows a new image, every picture of a card has loaded at a size that can be seen, and the leaderboard and the
tiles fit a 1280 px and a 390 px wide screen.

Kept in its own module (sync playwright and asyncio tests conflict in one module). Skips when chromium or the
playwright package is missing; `.ci/run` installs both. Screenshots go to test-artifacts/.
"""

import json
import shutil
from pathlib import Path

import pytest

from hubgen.registry import list_families

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FAMILIES = [f.name for f in list_families()]
TIMEOUT = 60_000  # ms: a first sample loads the model

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="the chromium browser is not installed (apt-get chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def launch(demo):
    from hubgen.demo_utils import launch_options

    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False,
                            **launch_options())  # fmt: skip
    return url


@pytest.fixture(scope="module")
def gallery_url(tmp_path_factory, tiny_models):
    from hubgen.gallery import build_gallery

    root = tmp_path_factory.mktemp("browser") / "models"
    for name in FAMILIES:
        shutil.copytree(tiny_models[name], root / f"{name}-digits", ignore=shutil.ignore_patterns("checkpoints"))
    (root / "broken-model").mkdir()
    (root / "broken-model" / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    demo = build_gallery(root)
    yield launch(demo)
    demo.close()


def disabled_controls(scope) -> list[str]:
    """Labels (or HTML) of the visible inputs in `scope` that carry the `disabled` attribute."""
    found = []
    for element in scope.locator("input:visible, textarea:visible, select:visible").all():
        if element.is_disabled():
            found.append(element.get_attribute("aria-label") or element.evaluate("e => e.outerHTML")[:120])
    return found


def images_src(scope) -> list[str]:
    return [img.get_attribute("src") or "" for img in scope.locator("img:visible").all()]


def exercise_tabs(page, scope, family: str) -> int:
    """In each tab of the demo inside `scope`: no control disabled; change the first number or text input,
    press the tab's main (primary) button, and wait for a new image. Returns how many tabs gave one."""
    tabs = scope.locator("button[role='tab']:visible")
    names = [t.inner_text().strip() for t in tabs.all()] or [None]
    shown = 0
    for name in names:
        if name is not None:
            scope.locator("button[role='tab']:visible", has_text=name).first.click()
            page.wait_for_timeout(300)
        panel = scope.locator("[role='tabpanel']:visible").last if name is not None else scope
        assert disabled_controls(panel) == [], f"{family} / {name}: disabled controls {disabled_controls(panel)}"
        button = panel.locator("button.primary:visible").first
        if not button.count():
            continue
        numbers = panel.locator("input[type='number']:visible")
        if numbers.count():  # change a control, as a person would
            numbers.first.fill("3")
            numbers.first.press("Tab")
        before = images_src(panel)
        if panel.locator("canvas:visible").count():
            continue  # a sketchpad: drawing is tested in the demo's own tests, with its preprocessing
        button.click()
        page.wait_for_function(
            "([root, before]) => [...root.querySelectorAll('img')].some(i => i.offsetParent !== null && i.src && "
            "!before.includes(i.src))",
            arg=[panel.element_handle(), before],
            timeout=TIMEOUT,
        )
        shown += 1
    return shown


@pytest.mark.parametrize("family", FAMILIES)
def test_gallery_demo_controls_respond_and_the_card_can_be_seen(browser, gallery_url, family):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        page.goto(gallery_url)
        page.get_by_text("hubgen model gallery").first.wait_for(timeout=TIMEOUT)
        page.get_by_text("broken-model · error").first.wait_for(timeout=TIMEOUT)  # an error tile, no crash
        page.locator("button.thumbnail-item", has=page.locator(f"img[alt^='{family}-digits']")).first.click()
        demo = page.locator("#gallery-demo")
        demo.locator("button.primary").first.wait_for(timeout=TIMEOUT)  # the family's demo, built in place
        assert exercise_tabs(page, demo, family) >= 1, "no tab of the demo produced an image"
        assert page.locator("h1:visible").count() == 1, "one H1 on the page"
        page.screenshot(path=str(ARTIFACTS / f"gallery-{family}-demo.png"), full_page=True)
        page.get_by_role("tab", name="Card").first.click()
        page.locator("#gallery-card img").first.wait_for(timeout=TIMEOUT)
        page.wait_for_function("() => [...document.querySelectorAll('#gallery-card img')].every(i => i.complete)",
                               timeout=TIMEOUT)  # fmt: skip
        widths = page.evaluate("() => [...document.querySelectorAll('#gallery-card img')]"
                               ".map(i => [i.alt, i.naturalWidth])")  # fmt: skip
        assert widths and all(w >= 256 for _, w in widths), widths
        page.screenshot(path=str(ARTIFACTS / f"gallery-{family}-card.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_leaderboard_and_tiles_fit_the_screen(browser, gallery_url, width):
    page = browser.new_page(viewport={"width": width, "height": 1200})
    try:
        page.goto(gallery_url)
        page.get_by_text("broken-model · error").first.wait_for(timeout=TIMEOUT)
        tiles = page.evaluate("() => [...document.querySelectorAll('button.thumbnail-item')]"
                              ".map(t => t.getBoundingClientRect().right)")  # fmt: skip
        assert tiles and max(tiles) <= width, f"a tile is off-screen at {width} px: {tiles}"
        captions = page.evaluate("() => [...document.querySelectorAll('.caption-label, .thumbnail-item span')]"
                                 ".map(c => [c.textContent, c.scrollWidth <= c.clientWidth + 1])")  # fmt: skip
        assert all(fits for _, fits in captions), f"cut captions: {[c for c, fits in captions if not fits]}"
        page.get_by_role("tab", name="Leaderboard").first.click()
        page.locator(".hubgen-board").first.wait_for(timeout=TIMEOUT)
        cut = page.evaluate("() => [...document.querySelectorAll('.hubgen-board')].filter(b => b.offsetParent "
                            "!== null).map(b => [b.scrollWidth, b.clientWidth, b.getBoundingClientRect().right])"
                            ".filter(([s, c, r]) => s > c + 1 || r > window.innerWidth + 1)")  # fmt: skip
        assert cut == [], f"a leaderboard table is cut off at {width} px: {cut}"
        page.screenshot(path=str(ARTIFACTS / f"gallery-leaderboard-{width}px.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_standalone_demo_controls_respond(browser, tiny_models, family):
    import hubgen

    demo = hubgen.get_family(family).load("build_demo")(str(tiny_models[family]))
    url = launch(demo)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        page.goto(url)
        page.locator("button.primary").first.wait_for(timeout=TIMEOUT)
        assert exercise_tabs(page, page.locator("body"), family) >= 1
        page.screenshot(path=str(ARTIFACTS / f"demo-{family}.png"), full_page=True)
    finally:
        page.close()
        demo.close()
