"""Debian's headless Chromium driven through chromium-driver (selenium): the viewer of the browser
tests and of `headcast bench web`.

`make test` installs the packages (Makefile: TEST_APT_PACKAGES) and selenium (requirements.lock).
Playwright's own browser download cannot work on a closed network, and neither can Chromium's
background services: the flags below keep it from trying.
"""
from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1000")


def missing_browser() -> str | None:
    """Why the browser cannot start here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{', '.join(missing)} missing: `make test` installs Debian's chromium and chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (`make test` installs it)"
    return None


def start_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="headcast-chromium-")
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    driver.headcast_profile = profile
    return driver


def stop_chromium(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "headcast_profile", ""), ignore_errors=True)


def canvas_pixels(driver, element_id: str) -> np.ndarray:
    """A canvas's pixels as (H, W, 3) RGB uint8, read through toDataURL (lossless PNG)."""
    import cv2

    url = driver.execute_script(f"return document.getElementById({element_id!r}).toDataURL('image/png');")
    data = base64.b64decode(url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image[..., ::-1].copy()


def save_artifact(driver_or_image, name: str) -> None:
    """Keeps a screenshot (or an image) where HEADCAST_TEST_ARTIFACTS points, for a person to look at."""
    folder = os.environ.get("HEADCAST_TEST_ARTIFACTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    if isinstance(driver_or_image, np.ndarray):
        import cv2

        cv2.imwrite(str(Path(folder) / name), driver_or_image[..., ::-1])
    else:
        driver_or_image.save_screenshot(str(Path(folder) / name))
