"""Make the README's pictures from the demo: docs/filmstrip.png and docs/report-screenshot.png.

    python scripts/make_doc_pictures.py            # reuses demo-output/ when it exists
    python scripts/make_doc_pictures.py --rerun    # runs `motion-relevance demo` first

The screenshot is taken by headless Chromium (Debian package `chromium`) after moving the
sigma slider to 1.5 with the keyboard, as a user would.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from motion_relevance.report.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium driver is a test tool, not part of the package
from chromium import HeadlessChromium  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo-output", help="demo output folder")
    parser.add_argument("--rerun", action="store_true", help="run the demo even if its output exists")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    report = args.demo / "report.html"
    if args.rerun or not report.exists():
        report = run_demo(args.demo)
    args.docs.mkdir(exist_ok=True)
    shutil.copyfile(args.demo / "filmstrip.png", args.docs / "filmstrip.png")
    with HeadlessChromium(width=1440, height=900, timeout=120) as browser:
        browser.open(report, fragment="frame=16", ready="document.body && document.body.dataset.ready")
        browser.evaluate("document.getElementById('mr-sigma').focus()")
        browser.press("ArrowRight", 39, times=10)  # sigma 1.0 -> 1.5
        browser.evaluate("document.activeElement.blur()")
        browser.screenshot(args.docs / "report-screenshot.png")
    print(args.docs / "filmstrip.png")
    print(args.docs / "report-screenshot.png")


if __name__ == "__main__":
    main()
