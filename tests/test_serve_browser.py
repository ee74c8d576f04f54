"""The live page of `qa-headpose serve` in a real headless Chromium fed a fake camera (a short video of a face).

Needs the serve extra, selenium, and Debian's chromium + chromium-driver (bash tools/install_test_browser.sh);
skipped with the reason when one is missing. The test saves a screenshot of the page.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="qa-headpose serve needs the serve extra: pip install -e .[serve]")
pytest.importorskip("uvicorn", reason="qa-headpose serve needs the serve extra: pip install -e .[serve]")
pytest.importorskip("selenium", reason="the browser test needs selenium: pip install -e .[serve,test]")

from conftest import start_server, stop_server  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from qa_headpose import HeadPoseEstimator  # noqa: E402
from qa_headpose.inference.images import read_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "qa_headpose" / "assets" / "astronaut.jpg"
FRAME_W, FRAME_H, FPS, N_FRAMES = 640, 480, 15, 30
# Screenshot for the README when set (e.g. QA_HEADPOSE_SCREENSHOT=docs/serve_page.png).
SCREENSHOT_ENV = "QA_HEADPOSE_SCREENSHOT"


def _which(*names: str) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


CHROMIUM = _which("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (bash tools/install_test_browser.sh: apt-get install chromium chromium-driver)",
)


def write_fake_camera(path: Path) -> Path:
    """A 2 s Y4M video (640x480, 15 fps, I420) of the sample face drifting and tilting a little."""
    face = cv2.resize(read_image(SAMPLE), (FRAME_H, FRAME_H), interpolation=cv2.INTER_AREA)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{FRAME_W} H{FRAME_H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(N_FRAMES):
            phase = 2 * np.pi * i / N_FRAMES
            m = cv2.getRotationMatrix2D((FRAME_H / 2, FRAME_H / 2), 4 * np.sin(phase), 1.0)
            m[0, 2] += (FRAME_W - FRAME_H) / 2 + 30 * np.sin(phase)
            frame = cv2.warpAffine(face, m, (FRAME_W, FRAME_H), borderValue=(40, 40, 40))
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(driver, url, screenshot folder) with the page open on the fake camera."""
    tmp = tmp_path_factory.mktemp("browser")
    video = write_fake_camera(tmp / "face.y4m")
    proc, url, _ = start_server(tmp, "--threads", "2")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1180,760",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
        f"--user-data-dir={tmp / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER, log_output=str(tmp / "driver.log")), options=options
    )
    try:
        driver.get(url)
        yield driver, url, tmp
    finally:
        driver.quit()
        stop_server(proc)


def state(driver) -> dict:
    return json.loads(driver.execute_script("return JSON.stringify(window.qaHeadpose)"))


def wait_for(driver, condition, timeout: float, what: str) -> dict:
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(state(d)))
    except TimeoutException:
        pytest.fail(f"the page did not {what} within {timeout} s; its state: {state(driver)}")
    return state(driver)


def test_live_page_shows_the_poses_of_the_fake_camera(page, measured):
    driver, _, tmp = page
    expected = HeadPoseEstimator(num_threads=1).predict_image(read_image(SAMPLE))[0].pose
    s = wait_for(driver, lambda s: s["mode"] == "camera" and s["frames"] >= 5, 90, "show 5 camera frames")
    assert (s["width"], s["height"]) == (FRAME_W, FRAME_H)
    # A steady FPS: the page's window is 2 s, so wait for 2 s more of answers (at least 10 frames) past the first 5.
    first = s["frames"]
    s = wait_for(driver, lambda s: s["frames"] >= first + max(10, 2 * s["fps"]), 60, "keep answering for 2 s")
    s = wait_for(driver, lambda s: len(s["faces"]) == 1, 30, "find the face")
    face = s["faces"][0]
    assert face["score"] > 0.5 and not face["saturated"]
    # The video is the sample face tilted by up to 4 degrees: the same yaw and pitch, the roll within the tilt.
    assert abs(face["yaw"] - expected.yaw) < 8 and abs(face["pitch"] - expected.pitch) < 8
    assert abs(face["roll"] - expected.roll) < 12
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= FRAME_W and 0 <= y0 < y1 <= FRAME_H
    table = driver.find_element(By.CSS_SELECTOR, "#faces tbody").text
    assert f"{face['yaw']:.1f}" in table or len(table.split()) >= 5
    assert driver.find_element(By.ID, "fps").text not in ("", "-") and s["fps"] > 0
    assert s["error"] is None, s["error"]
    shot = tmp / "serve_page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe  # no script error, no blocked resource (CSP), no failed request
    measured(
        f"serve live page: {s['fps']:.1f} FPS with the fake camera ({FRAME_W}x{FRAME_H} JPEG frames), "
        f"latency {s['latencyMs']:.0f} ms (server {s['serverMs']:.0f} ms), {s['frames']} frames; screenshot {shot}"
    )


def test_opened_image_file_shows_its_poses(page):
    driver, _, _ = page
    expected = HeadPoseEstimator(num_threads=1).predict_image(read_image(SAMPLE))[0].pose
    driver.find_element(By.ID, "file-input").send_keys(str(SAMPLE))
    s = wait_for(driver, lambda s: s["mode"] == "image" and s["width"] == 512, 30, "show the opened image")
    (face,) = s["faces"]
    # The page re-encodes what it draws (JPEG 0.92), so the angles are close to, not equal to, predict_image's.
    assert abs(face["yaw"] - expected.yaw) < 3 and abs(face["pitch"] - expected.pitch) < 3
    assert abs(face["roll"] - expected.roll) < 3
    assert "1 face" in driver.find_element(By.ID, "status").text


def test_opened_photo_with_exif_orientation_agrees_with_the_cli(page):
    """A photo tagged Orientation=6: the page shows it upright and its poses are the command line's."""
    driver, _, tmp = page
    upright = read_image(SAMPLE)[:, 64:448]  # 512 x 384, so the turn shows in the page's width
    spec = importlib.util.spec_from_file_location("serve_attacks", REPO / "tools" / "serve_attacks.py")
    attacks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(attacks)
    photo = tmp / "phone.jpg"
    photo.write_bytes(attacks.exif_jpeg(cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    (expected,) = HeadPoseEstimator(num_threads=1).predict_image(read_image(photo))
    driver.find_element(By.ID, "file-input").send_keys(str(photo))
    s = wait_for(driver, lambda s: s["mode"] == "image" and s["width"] == 384, 30, "show the photo upright")
    assert s["height"] == 512
    (face,) = s["faces"]
    for angle in ("yaw", "pitch", "roll"):  # re-encoded by the page (JPEG 0.92): close, not equal
        assert abs(face[angle] - getattr(expected.pose, angle)) < 3, (face, expected.pose)
