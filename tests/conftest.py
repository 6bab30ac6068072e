"""Shared fixtures. Plain helpers live in the non-test modules ``videos`` and ``tiny_models``;
the Chromium driver (a test tool, not part of the package) in ``chromium``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromium import HeadlessChromium, find_chromium
from tiny_models import make_dataset


def _install_chromium() -> str | None:
    """Install Debian's chromium when possible (root + apt-get); return its path."""
    if find_chromium() is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, env=env,
                       check=False, timeout=1200, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    return find_chromium()


@pytest.fixture(scope="module")
def browser() -> Iterator[HeadlessChromium]:
    """A headless Chromium for the module; installed with apt-get when missing and this runs as
    root on Debian/Ubuntu, skipped when it cannot be."""
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.fail("the browser test needs websocket-client: pip install websocket-client")
    binary = _install_chromium()
    if binary is None:
        if shutil.which("apt-get") and os.geteuid() == 0:
            pytest.fail("could not install chromium with apt-get")
        pytest.skip("no Chromium and no way to install it here (needs root and apt-get)")
    with HeadlessChromium(binary=binary, width=1280, height=900, timeout=60) as b:
        yield b


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny batch dataset and its manifest (``tiny_models.make_dataset``), written once per
    session for the batch tests; a test that changes it copies it first."""
    return make_dataset(tmp_path_factory.mktemp("videos"))
