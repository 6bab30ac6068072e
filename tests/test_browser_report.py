"""The interactive report in a real browser (headless Chromium over the DevTools protocol).

The slider is moved with key presses, like a user would, and the motion share and mask the
page computes are compared with Python's ``viewer_stats`` (bit for bit) and with the float32
``selective_relevance`` pipeline (closely). The ``browser`` fixture is in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chromium import HeadlessChromium
from motion_relevance.report import explain_video, read_report, viewer_stats
from tiny_models import SPEC, TinyNet, float_path_share
from videos import make_video, moving_square_frames

pytestmark = [pytest.mark.browser, pytest.mark.slow]

READY = "document.body && document.body.dataset.ready"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int, TinyNet]:
    d = tmp_path_factory.mktemp("browser")
    video = make_video(d / "square.mp4", moving_square_frames(20, 36, 48), fps=10)
    torch.manual_seed(1)
    model = TinyNet().eval()
    result = explain_video(video, d / "out", model=model, spec=SPEC, methods="saliency,gradcam", sigma=1.0)
    return result.report, video, result.target, model


def stats(browser: HeadlessChromium) -> dict:
    return browser.evaluate("window.motionReport.stats()")


def canvas_pixels(browser: HeadlessChromium, element_id: str) -> list[int]:
    return browser.evaluate(
        f"Array.from(document.getElementById('{element_id}').getContext('2d')"
        f".getImageData(0, 0, 48, 36).data.filter((_, i) => i % 4 === 0))"
    )


def test_slider_numbers_equal_python(browser: HeadlessChromium, report: tuple, tmp_path: Path) -> None:
    path, video, target, model = report
    data = read_report(path)
    browser.open(path, ready=READY)
    assert browser.evaluate("document.body.dataset.ready") == "1"
    assert browser.evaluate("document.getElementById('mr-status').textContent") == ""

    def check(sigma: float) -> dict:
        page = stats(browser)
        assert page["sigma"] == sigma
        for name, windows in data.windows.items():
            py = viewer_stats(windows, sigma)
            js = page["methods"][name]
            assert js["motion_share"] == py.motion_share  # exactly, not approximately
            assert js["kept"] == py.kept and js["total"] == py.total
            assert js["mask_voxels"] == py.mask_voxels and js["voxels"] == py.voxels
            assert js["stds"] == list(py.stds)
            shown = browser.evaluate(f"document.querySelector('[data-method=\"{name}\"] .share output').textContent")
            assert shown == f"{100 * py.motion_share:.1f}%"
            score = next(m["motion_score"] for m in data.meta["methods"] if m["name"] == name)
            shown = browser.evaluate(f"document.querySelector('[data-method=\"{name}\"] .score output').textContent")
            assert shown == f"{100 * score:.1f}%"  # the calibrated score beside it (it does not depend on sigma)
        return page

    check(1.0)
    motion_before = canvas_pixels(browser, "mr-0-motion")
    # Move the sigma slider like a user: focus it and press the right arrow 7 times (step 0.05).
    browser.evaluate("document.getElementById('mr-sigma').focus()")
    browser.press("ArrowRight", 39, times=7)
    sigma = float(browser.evaluate("document.getElementById('mr-sigma').value"))
    assert sigma == 1.35
    assert browser.evaluate("document.getElementById('mr-sigma-label').textContent") == "1.35"
    page = check(sigma)
    assert canvas_pixels(browser, "mr-0-motion") != motion_before  # the motion player redrew
    # ... and the page agrees with the float32 pipeline up to the uint16 quantisation.
    assert page["methods"]["saliency"]["motion_share"] == pytest.approx(float_path_share(model, video, target, sigma), abs=2e-3)
    # Pressing left goes back to exactly the first numbers.
    browser.press("ArrowLeft", 37, times=7)
    check(1.0)

    # The shared frame scrubber moves every player.
    orig_before = canvas_pixels(browser, "mr-1-orig")
    browser.evaluate("document.getElementById('mr-frame').focus()")
    browser.press("ArrowRight", 39, times=5)
    assert browser.evaluate("window.motionReport.stats().frame") == 5
    assert browser.evaluate("document.getElementById('mr-frame-label').textContent").startswith("6/20")
    assert canvas_pixels(browser, "mr-1-orig") != orig_before

    shot = browser.screenshot(tmp_path / "report.png")
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[1] == 1280 and image.shape[0] > 900 and image.std() > 10


def test_sigma_from_the_address(browser: HeadlessChromium, report: tuple) -> None:
    path, *_ = report
    browser.open(path, fragment="sigma=0.5&frame=3", ready=READY)
    page = stats(browser)
    assert page["sigma"] == 0.5 and page["frame"] == 3
    for name, windows in read_report(path).windows.items():
        assert page["methods"][name]["motion_share"] == viewer_stats(windows, 0.5).motion_share
