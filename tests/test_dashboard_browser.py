"""End to end in a real headless Chromium: `workbench dashboard` serves a runs folder while a
tiny training run writes into it. New metrics appear without a reload, every page shows what it
should, and a screenshot of each is saved to $WORKBENCH_SCREENSHOTS (else a temporary folder;
the path is printed)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench import compare, runs
from workbench.runs import Run, write_json

pytestmark = [pytest.mark.browser, pytest.mark.real]
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--window-size=1400,1800",
]
RUN = "live"
STEPS = 300


def wait_for(check, seconds: float, what: str):
    """Poll `check()` until it returns something true; fail saying `what` after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            result = check()
        except StaleElementReferenceException:  # the page redrew it meanwhile: look again
            result = None
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"waited {seconds:.0f} s for {what}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """An empty runs folder (the dashboard opens on it before any run starts)."""
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def training(runs_dir, tmp_path):
    """Starts, when called, a tiny barrier run from the command line into the runs folder
    (evaluated every 100 steps), as a user would in a terminal; stopped at the end."""
    processes = []

    def start() -> None:
        command = [
            sys.executable, "-m", "workbench.cli", "train", "--preset", "tiny", "--algo",
            "barrier", "--device", "cpu", "--steps", str(STEPS), "--run-dir", str(runs_dir / RUN),
            "--no-progress", "--set", "train.eval_every=100", "--set", "train.snapshot_every=3",
        ]  # fmt: skip
        log = open(tmp_path / "train.log", "w")
        processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))

    yield start
    for process, log in processes:
        stop(process)
        log.close()


@pytest.fixture
def dashboard(runs_dir, tmp_path) -> str:
    """`workbench dashboard RUNS_DIR --port P` on localhost; its URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "dashboard",
        str(runs_dir),
        "--port",
        str(port),
    ]
    log = open(tmp_path / "dashboard.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or process.poll() is not None, 60, "the dashboard to serve")
        assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
        yield url
    finally:
        stop(process)
        log.close()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


@pytest.fixture
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options, webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {folder}")
    return folder


def text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def episodes_shown(driver) -> int | None:
    """The episode count in the run's status line on the Runs page."""
    found = re.search(rf"{RUN}: \w+ · .*? (\d+) episodes", text(driver))
    return int(found.group(1)) if found else None


def charts(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")


PAGES = {
    "Latent map": "latent_map",
    "Imagination": "imagination",
    "Rollout stepper": "rollout",
    "Compare": "compare",
    "Train": "train",
}


def settled(driver) -> bool:
    """Every image loaded and no element still a placeholder (so a screenshot shows the page)."""
    return driver.execute_script(
        """return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)
        && !document.querySelector('[data-testid="stSkeleton"]');"""
    )


def screenshot(driver, path: Path) -> None:
    wait_for(lambda: settled(driver), 30, "the page to settle")
    driver.save_screenshot(str(path))


def plot_titles(driver) -> str:
    return " ".join(title.text for title in driver.find_elements(By.CSS_SELECTOR, ".gtitle"))


def open_page(driver, title: str) -> None:
    """Click the page's link in the sidebar navigation (the session, and its choices, stay)."""
    link = f"//a[@data-testid='stSidebarNavLink'][contains(@href, '/{PAGES[title]}')]"
    driver.find_element(By.XPATH, link).click()
    wait_for(lambda: title in [h.text for h in driver.find_elements(By.TAG_NAME, "h1")], 30, title)


def click_first_point(driver) -> bool:
    """Click the first point of the latent map, where plotly draws it; True once its frame shows."""
    chart = charts(driver)[0]
    dx, dy = driver.execute_script(
        """const gd = arguments[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const trace = gd._fullData[0], box = gd.getBoundingClientRect();
        return [xa._offset + xa.l2p(trace.x[0]) - box.width / 2,
                ya._offset + ya.l2p(trace.y[0]) - box.height / 2];""",
        chart,
    )
    ActionChains(driver).move_to_element_with_offset(chart, round(dx), round(dy)).click().perform()
    time.sleep(2)
    return "the real frame" in text(driver)


def make_comparison(root: Path) -> Path:
    """A comparison folder holding a copy of the finished run, summarised."""
    out = root / "cmp"
    shutil.copytree(root / RUN, out / runs.COMPARISON_RUNS / compare.run_name("barrier", 0))
    config = Run(root / RUN).config()
    write_json(out / runs.COMPARISON_FILE, {
        "schema": compare.SCHEMA, "task": config["env"]["task"], "preset": "tiny", "steps": STEPS,
        "algos": ["barrier"], "seeds": [0], "sets": [], "device": "cpu",
    })  # fmt: skip
    compare.summarise(out)
    return out


def test_dashboard_follows_a_training_run_live(runs_dir, dashboard, training, browser, screenshots):
    driver = browser
    driver.get(dashboard)
    wait_for(lambda: "No run chosen" in text(driver), 60, "the Runs page on an empty folder")
    driver.execute_script("window.notReloaded = true")  # a reload would forget this
    # A run started from the command line appears on the open page, announced, without a reload.
    training()
    wait_for(lambda: episodes_shown(driver) is not None, 240, "the new run's status line")
    assert f"New: {RUN}" in text(driver)
    first = episodes_shown(driver)
    # Live: more episodes show up while the page is left alone.
    wait_for(lambda: (episodes_shown(driver) or 0) > first, 150, "new episodes to appear")
    wait_for(lambda: len(charts(driver)) > 4, 60, "training curves")
    assert "How the agent is doing" in text(driver)  # the story first, the rest folded away
    assert driver.execute_script("return window.notReloaded === true")
    screenshot(driver, screenshots / "1_runs.png")

    open_page(driver, "Latent map")
    # The first UMAP fit in a fresh environment compiles numba kernels: over 180 s on 2 busy
    # cores in a fresh clone (about 10 s once they are cached).
    wait_for(lambda: charts(driver), 420, "the latent map (UMAP)")
    assert "Linear probe, safe vs unsafe" in text(driver)
    wait_for(lambda: click_first_point(driver), 40, "the frame of a clicked latent")
    screenshot(driver, screenshots / "2_latent_map.png")

    open_page(driver, "Imagination")
    wait_for(lambda: len(charts(driver)) == 1, 60, "the imagination plots")
    frames = ("the real start frame", "imagined t=0")  # drawn after the plots: wait for them
    wait_for(lambda: all(label in text(driver) for label in frames), 60, "the imagined frames")
    screenshot(driver, screenshots / "3_imagination.png")

    open_page(driver, "Rollout stepper")
    wait_for(lambda: charts(driver), 120, "an evaluation episode")
    forward = "//button[.//p[contains(text(), 'forward')]]"
    wait_for(lambda: driver.find_element(By.XPATH, forward).click() or True, 10, "'forward'")
    wait_for(lambda: "step 1 of" in plot_titles(driver), 30, "step 1 after 'forward'")
    screenshot(driver, screenshots / "4_rollout.png")

    wait_for(lambda: Run(runs_dir / RUN).status == "finished", 240, "training to finish")
    make_comparison(runs_dir)
    open_page(driver, "Compare")
    wait_for(lambda: driver.find_elements(By.TAG_NAME, "iframe"), 60, "the comparison's plot")
    assert "barrier" in text(driver) and "final return" in text(driver)
    screenshot(driver, screenshots / "5_compare.png")

    open_page(driver, "Train")
    wait_for(lambda: f"{RUN}: finished" in text(driver), 30, "the run listed as finished")
    screenshot(driver, screenshots / "6_train.png")
    assert driver.execute_script("return window.notReloaded === true")
