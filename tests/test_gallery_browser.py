"""The gallery in a real browser (Debian chromium driven by playwright): open the gallery, click a tile, generate.

Kept in its own module (sync playwright and asyncio tests conflict in one module). Skips when chromium or the
playwright package is missing; `.ci/run` installs both. The screenshot is written to test-artifacts/.
"""

import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="the chromium browser is not installed (apt-get chromium)")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, trained_vae_dir):
    from hubgen.gallery import build_gallery

    root = tmp_path_factory.mktemp("browser") / "models"
    shutil.copytree(trained_vae_dir, root / "vae-digits", ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (root / "broken-model").mkdir()
    (root / "broken-model" / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    demo = build_gallery(root)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    yield url
    demo.close()


def test_gallery_click_tile_generate_and_screenshot(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(app_url)
            page.get_by_text("hubgen model gallery").first.wait_for(timeout=30_000)
            page.get_by_text("vae-digits · vae · digits").first.wait_for(timeout=30_000)
            page.get_by_text("broken-model · error").first.wait_for(timeout=10_000)  # an error tile, no crash
            # click the VAE's tile: the model view opens with its card and its family's demo
            page.locator("button.thumbnail-item", has=page.locator("img[alt^='vae-digits']")).first.click()
            page.get_by_text("variational autoencoder trained with hubgen").first.wait_for(timeout=30_000)
            page.get_by_text("The vae demo").first.wait_for(timeout=60_000)
            page.get_by_role("button", name="Generate").first.click()
            samples = page.locator("#gallery-samples img").first
            samples.wait_for(timeout=60_000)
            assert samples.get_attribute("src")
            page.screenshot(path=str(ARTIFACTS / "gallery-browser.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "gallery-browser.png").stat().st_size > 10_000
