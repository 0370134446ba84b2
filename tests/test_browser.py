"""The web page in headless Chromium (Debian's package) against a real server: upload, wait, compare,
download; screenshots go to test-output/ for CI.

The photo is made of two public-domain portraits that ship in PyPI packages (scikit-image's astronaut,
matplotlib's Grace Hopper), degraded like the README's picture, so that the screenshots may be published.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageFilter

from test_server import RunningServer, running_server
from test_video import SIDE, frame_stamps, pan_frames, write_clip

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT = REPO_ROOT / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULT_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def two_portraits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 512x256 JPEG: both portraits blurred, halved and compressed at quality 40, side by side."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (a dev dependency) holds the astronaut")
    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib (a dev dependency) holds Grace Hopper")
    with cbook.get_sample_data("grace_hopper.jpg") as stream:
        hopper = Image.open(stream).convert("RGB").crop((0, 0, 512, 512))
    pair = Image.new("RGB", (512, 256))
    for index, portrait in enumerate((Image.fromarray(data.astronaut()), hopper)):
        degraded = portrait.filter(ImageFilter.GaussianBlur(1.2)).resize((256, 256), Image.Resampling.LANCZOS)
        pair.paste(degraded, (256 * index, 0))
    path = tmp_path_factory.mktemp("photos") / "two-portraits.jpg"
    pair.save(path, "JPEG", quality=40)
    return path


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("page-server")) as running:
        yield running


@pytest.fixture
def page(browser: Any, page_server: RunningServer) -> Iterator[Any]:
    """A page that may talk to this server only: any other request fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        url = route.request.url
        if url.startswith(page_server.url) or url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    page.route("**/*", only_this_server)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_server.url)
    yield page
    context.close()
    assert not elsewhere, f"the page requested other servers: {elsewhere}"
    assert not errors, f"script errors: {errors}"


def divider_position(page: Any) -> int:
    return int(page.get_attribute("#divider", "aria-valuenow"))


def drag_divider(page: Any, to_fraction: float) -> None:
    box = page.locator("#stage").bounding_box()
    middle_y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, middle_y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * to_fraction, middle_y, steps=8)
    page.mouse.up()


def test_restore_compare_and_download(page: Any, two_portraits: Path, tmp_path: Path) -> None:
    page.wait_for_selector("#face-model option >> nth=1", state="attached")
    page.set_input_files("#file-input", str(two_portraits))
    page.select_option("#bg-upsampler", "none")
    assert page.input_value("#scale") == "2"
    page.click("#restore-button")
    page.wait_for_selector("#progress-panel:not([hidden])")
    page.wait_for_selector("#result-panel:not([hidden])", timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#faces li").count() == 2
    analyses = page.locator("#faces .face-analysis")
    assert analyses.count() == 2 and "px wide, detail of a" in analyses.first.inner_text()
    assert page.locator("#message").is_hidden()

    drag_divider(page, 0.25)
    assert 20 <= divider_position(page) <= 30
    page.focus("#divider")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert 26 <= divider_position(page) <= 36
    page.keyboard.press("End")
    assert divider_position(page) == 100
    page.keyboard.press("Home")
    assert divider_position(page) == 0
    page.keyboard.press("Shift+ArrowRight")
    assert divider_position(page) == 10

    with page.expect_download() as download:
        page.click("#download-link")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "two-portraits-restored.jpg"
    result = Image.open(saved)
    result.load()
    assert result.size == (1024, 512)  # 2x the upload

    drag_divider(page, 0.55)
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "web-page.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    page.screenshot(path=str(OUTPUT / "web-page-phone.png"), full_page=True)


def test_an_unreadable_file_gets_a_clear_message(page: Any, tmp_path: Path) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a shopping list, not a photo\n" * 50)
    page.set_input_files("#file-input", str(fake))
    page.click("#restore-button")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "can't be read as a photo" in message.inner_text()
    assert page.locator("#result-panel").is_hidden()


def test_fidelity_and_licence_note_follow_the_model(page: Any) -> None:
    page.wait_for_selector("#face-model option >> nth=1", state="attached")
    # Models that are not installed are disabled; enable them here: the page must react to any choice.
    page.evaluate("document.querySelectorAll('#face-model option').forEach((o) => { o.disabled = false; })")
    page.select_option("#face-model", "codeformer")
    assert page.locator("#fidelity-field").is_visible()
    assert "not for commercial use" in page.inner_text("#model-note")
    page.select_option("#face-model", "gfpgan-1.4")
    assert page.locator("#fidelity-field").is_hidden() and page.locator("#model-note").is_hidden()
    page.select_option("#face-model", "auto")  # no face prior is installed here: say how to get one
    assert "facerestore models download gfpgan-1.4" in page.inner_text("#model-note")


def test_the_page_offers_what_the_api_declares(page: Any, page_server: RunningServer) -> None:
    with page_server.client() as api:
        info = api.get("/v1/models").json()
        form = api.get("/v1/openapi.json").json()["components"]["schemas"]["RestoreForm"]["properties"]
    page.wait_for_selector("#face-model option >> nth=1", state="attached")

    def offered(select: str) -> list[str]:
        return page.eval_on_selector_all(f"{select} option", "options => options.map(o => o.value)")

    assert offered("#face-model") == info["choices"]["face_model"]
    assert offered("#bg-upsampler") == form["bg_upsampler"]["enum"] == info["choices"]["bg_upsampler"]
    scales = [float(value) for value in offered("#scale") if value != "auto"]
    assert (scales[0], scales[-1]) == (form["scale"]["minimum"], form["scale"]["maximum"])
    assert offered("#scale")[-1] == "auto" and {"enum": ["auto"], "type": "string"} in form["scale"]["anyOf"]
    assert float(page.input_value("#scale")) == form["scale"]["default"]
    assert page.input_value("#bg-upsampler") == form["bg_upsampler"]["default"]
    fidelity = page.locator("#fidelity")
    assert float(fidelity.input_value()) == form["fidelity"]["default"]
    assert float(fidelity.get_attribute("max")) == form["fidelity"]["maximum"]


def test_a_video_shows_progress_in_frames_a_frame_to_scrub_and_downloads(
    page: Any, shared_dir: Path, tmp_path: Path
) -> None:
    clip = tmp_path / "pan.mp4"
    write_clip(clip, pan_frames(shared_dir, 12), [i * 1000 for i in range(12)], Fraction(1, 8000))
    page.wait_for_selector("#face-model option >> nth=1", state="attached")
    page.set_input_files("#file-input", str(clip))
    assert page.locator('#scale option[value="auto"]').is_disabled(), "a clip's scale is a number"
    page.select_option("#bg-upsampler", "none")
    page.select_option("#face-model", "realesr-compact-x4")  # the cheap real network: 12 frames on a CPU
    page.click("#restore-button")
    page.wait_for_selector("#progress-text:has-text('Restoring frames')", timeout=RESULT_TIMEOUT_MS)
    page.wait_for_selector("#result-panel:not([hidden])", timeout=RESULT_TIMEOUT_MS)
    info = page.inner_text("#result-info")
    assert page.locator("#time-field").is_visible() and "12 frames" in info
    assert re.search(r"face flicker [\d.]+× the input's", info), info
    assert page.evaluate("document.querySelector('#after-image').naturalWidth") == SIDE[0] * 2
    assert page.evaluate("document.querySelector('#before-image').naturalWidth") == SIDE[0]
    page.locator("#time").fill("1.2")  # a range input takes fill(); its change event loads that frame
    page.wait_for_selector("#stage[data-frame-at='1.2']")
    with page.expect_download() as download:
        page.click("#download-link")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "pan-restored.mp4" and frame_stamps(saved) == frame_stamps(clip)
