"""Soak: a long `cpu`-preset training run with a dashboard (and a headless Chromium on its Runs
page, moving to the next page every five samples, so every page has been seen by the tenth
minute) following it. Every `--every` seconds the resident memory and open file handles of the
trainer and the dashboard server are written to OUT/soak.csv; at the end OUT/soak.png plots them
and the growth from the 10th to the last minute is printed.

    python scripts/soak.py --minutes 65 --out runs/soak
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dashboard_browser import CHROMIUM_FLAGS, free_port, healthy  # noqa: E402


def usage(process: psutil.Process) -> tuple[float, int]:
    """Resident MiB and open file handles of a process and its children."""
    family = [process, *process.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in family) / 2**20
    return rss, sum(p.num_fds() for p in family)


def open_browser(url: str):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options, webdriver.ChromeService(shutil.which("chromedriver")))
    driver.get(url)
    return driver


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["minute"] for r in rows]
    figure, (memory, handles) = plt.subplots(1, 2, figsize=(11, 4))
    for who in ("trainer", "dashboard"):
        memory.plot(minutes, [r[f"{who}_rss_mib"] for r in rows], label=who)
        handles.plot(minutes, [r[f"{who}_fds"] for r in rows], label=who)
    memory.set(xlabel="minute", ylabel="resident memory (MiB)", ylim=(0, None))
    handles.set(xlabel="minute", ylabel="open file handles", ylim=(0, None))
    for axis in (memory, handles):
        axis.axvline(10, color="grey", lw=0.8, ls="--")
        axis.legend()
    figure.suptitle("soak: cpu-preset training with a dashboard following it")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def growth(rows: list[dict], key: str) -> float:
    """Relative growth of `key` from the sample nearest minute 10 to the last one."""
    start = min(rows, key=lambda r: abs(r["minute"] - 10))[key]
    return rows[-1][key] / start - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=65)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/soak"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed to the training"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / "runs" / "soak"
    run_dir.parent.mkdir(exist_ok=True)
    bin_dir = Path(sys.executable).parent
    trainer = subprocess.Popen(
        [bin_dir / "workbench", "train", "--preset", "cpu", "--steps", "200000",
         "--run-dir", run_dir, "--no-progress", *(f"--set={a}" for a in args.set)],
        stdout=open(args.out / "train.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    port = free_port()
    dashboard = subprocess.Popen(
        [bin_dir / "workbench", "dashboard", args.out / "runs", "--port", str(port)],
        stdout=open(args.out / "dashboard.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while not healthy(url):
        if dashboard.poll() is not None:
            sys.exit(f"the dashboard stopped: see {args.out / 'dashboard.log'}")
        time.sleep(1)
    browser = open_browser(url)
    start, rows = time.time(), []
    pages = ["runs", "latent_map", "imagination", "rollout"]
    try:
        with open(args.out / "soak.csv", "w", newline="") as file:
            writer = None
            while (minute := (time.time() - start) / 60) < args.minutes:
                row = {"minute": round(minute, 2)}
                for who, process in (("trainer", trainer), ("dashboard", dashboard)):
                    rss, fds = usage(psutil.Process(process.pid))
                    row |= {f"{who}_rss_mib": round(rss, 1), f"{who}_fds": fds}
                rows.append(row)
                writer = writer or csv.DictWriter(file, fieldnames=list(row))
                if file.tell() == 0:
                    writer.writeheader()
                writer.writerow(row)
                file.flush()
                if len(rows) % 5 == 0:  # a learner moving between pages
                    browser.get(f"{url}/{pages[len(rows) // 5 % len(pages)]}")
                time.sleep(args.every)
    finally:
        browser.quit()
        for process in (trainer, dashboard):
            process.terminate()
            process.wait(timeout=120)
    plot(rows, args.out / "soak.png")
    for key in ("trainer_rss_mib", "dashboard_rss_mib", "trainer_fds", "dashboard_fds"):
        print(f"{key}: {rows[-1][key]}  growth from minute 10: {growth(rows, key):+.1%}")


if __name__ == "__main__":
    main()
