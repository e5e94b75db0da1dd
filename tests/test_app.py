"""The dashboard under Streamlit's AppTest: every page on a real tiny run (with a comparison of
it), on a partial run and on a corrupt one (never a traceback, always a clear message); starting
and stopping a training run from the Train page; the figure builders and the `dashboard`
command's helpers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from workbench import compare, runs
from workbench.config import ConfigError, TrainRequest, resolve
from workbench.dashboard import (
    RUNS_DIR_VARIABLE,
    stop_training,
    streamlit_command,
    training_command,
)
from workbench.inspect import figures
from workbench.runs import Run, RunError, write_json

APP = Path(__file__).resolve().parent.parent / "app"
PAGES = ("runs", "latent_map", "imagination", "rollout", "compare", "train")


@pytest.fixture(autouse=True)
def app_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(APP))  # as `streamlit run app/Home.py` does


def open_page(page: str, root: Path, monkeypatch) -> AppTest:
    """`page` as the app shows it: the sidebar of app/Home.py, then the page. (AppTest drops the
    entry script's sidebar widgets after `switch_page`, so the test puts the two together.)"""
    monkeypatch.setenv(RUNS_DIR_VARIABLE, str(root))
    script = f"import common, runpy\ncommon.sidebar()\nrunpy.run_path({str(APP / 'pages' / page)!r} + '.py')\n"
    return AppTest.from_string(script, default_timeout=60).run()


def texts(at: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(at, kind)]


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def until(at: AppTest, done, seconds: float) -> AppTest:
    """Rerun the page (as its live fragment would) until `done(at)`, for at most `seconds`."""
    deadline = time.time() + seconds
    while not done(at) and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    return at


# ---------------------------------------------------------------------------------------------
# A real tiny run, and a comparison holding a copy of it.


@pytest.fixture(scope="session")
def real_root(tmp_path_factory) -> Path:
    from workbench.engine import Engine

    root = tmp_path_factory.mktemp("real-runs")
    overrides = {"train.device": "cpu", "algo": "barrier", "train.snapshot_every": 3}
    config = resolve("tiny", overrides)
    Engine(config, root / "barrier", progress=False).train()
    shutil.copytree(
        root / "barrier", root / "cmp" / runs.COMPARISON_RUNS / compare.run_name("barrier", 0)
    )
    write_json(root / "cmp" / runs.COMPARISON_FILE, {
        "schema": compare.SCHEMA, "task": config.env.task, "preset": "tiny",
        "steps": config.train.steps, "algos": ["barrier"], "seeds": [0], "sets": [],
        "device": "cpu",
    })  # fmt: skip
    compare.summarise(root / "cmp")
    return root


@pytest.mark.real
def test_home_shows_the_runs_page(real_root, monkeypatch):
    monkeypatch.setenv(RUNS_DIR_VARIABLE, str(real_root))
    at = AppTest.from_file(str(APP / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Runs"
    assert at.sidebar.multiselect[0].value == ["barrier"]  # the newest run, chosen by default


@pytest.mark.real
def test_runs_page_shows_every_metric_in_a_learners_order(real_root, monkeypatch):
    at = open_page("runs", real_root, monkeypatch)
    assert not at.exception and not at.warning
    assert "finished" in texts(at, "markdown")[0] and "barrier" in texts(at, "markdown")[0]
    assert [h.value for h in at.subheader][:4] == [
        "How the agent is doing",
        "Does the world model know the task?",
        "Where the algorithm operates",
        "Everything else",
    ]
    # every key of each kind, once: as a plot when it varies, else as a number
    run = Run(real_root / "barrier")
    expected = sum(
        len(figures.metric_keys(run.metrics(kind))) for kind in ("episode", "eval", "train")
    )
    assert len(at.get("plotly_chart")) + len(at.metric) == expected > 20
    specs = chart_specs(at)
    titles = [spec["layout"]["title"]["text"] for spec in specs]
    story = [figures.metric_title(k, note=True) for k in figures.STORY]
    plotted = [title for title in titles if title in story]  # the constant ones are numbers
    assert titles[: len(plotted)] == plotted and plotted[0].startswith("episode return<br>")
    cost = specs[titles.index(figures.metric_title("cost", note=True))]
    limit = run.config()["agent"]["cost_limit"]
    assert sorted(shape["y0"] for shape in cost["layout"]["shapes"]) == [0, limit]
    assert len(chart_specs(at)[0]["data"][0]["x"]) == len(run.metrics("episode"))
    assert at.expander  # the rest, folded away


@pytest.mark.real
def test_latent_map_projects_a_snapshot_and_shows_the_probe(real_root, monkeypatch):
    at = open_page("latent_map", real_root, monkeypatch)
    at = until(at, lambda at: at.get("plotly_chart") or at.warning, seconds=150)
    assert not at.exception and not at.warning
    assert len(at.get("plotly_chart")) == 1
    assert chart_specs(at)[0]["data"][0]["type"] == "scattergl"
    assert at.metric[0].label == "Linear probe, safe vs unsafe"
    colorings = at.radio(key="latent_color").options
    assert colorings[:2] == ["safety label", "barrier B(z)"]  # the barrier agent's value is there
    at.radio(key="latent_color").set_value("barrier B(z)").run()
    assert chart_specs(at)[0]["data"][0]["marker"]["cmid"] == 0  # diverging around B = 0


@pytest.mark.real
def test_imagination_page_shows_a_rollout_with_its_frames(real_root, monkeypatch):
    at = open_page("imagination", real_root, monkeypatch)
    assert not at.exception and not at.warning
    starts = at.selectbox(key="rollout")
    assert len(starts.options) == 8 and starts.options[0].startswith("rollout 0: from latent")
    (figure,) = chart_specs(at)
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert titles[:3] == ["barrier B(z)", "predicted cost", "disagreement"]
    frames = at.get("image")[-1].proto.imgs  # the real start frame, then t = 0..5 (horizon 5)
    assert len(frames) == 7 and frames[0].caption == "real start frame"
    assert frames[1].caption.startswith("imagined t=0, B=")
    starts.set_value(3).run()
    assert chart_specs(at)[0]["data"][1]["name"] == "rollout 3"


@pytest.mark.real
def test_rollout_stepper_steps_and_plays(real_root, monkeypatch):
    at = open_page("rollout", real_root, monkeypatch)
    assert not at.exception and not at.warning
    assert at.slider(key="t").value == 0
    labels = [metric.label for metric in at.metric]
    assert labels[:3] == ["cost", "predicted cost", "barrier B(z)"]
    at.button[3].click().run()  # forward
    assert at.slider(key="t").value == 1
    at.button[4].click().run()  # last
    last = at.slider(key="t").value
    assert last == len(Run(real_root / "barrier").evaluations()[0].load()["frame"]) - 1
    at.button[0].click().run()  # first
    at.button[2].click().run()  # play
    assert at.session_state["playing"] and at.slider(key="t").value >= 1


@pytest.mark.real
def test_compare_page_shows_the_table_the_plots_and_the_runs(real_root, monkeypatch):
    at = open_page("compare", real_root, monkeypatch)
    assert not at.exception and not at.warning
    assert any("| barrier | 1 |" in text for text in texts(at, "markdown"))
    assert at.selectbox(key="compare_plot").options == [
        "cost",
        "cumulative_cost",
        "final",
        "return",
    ]
    assert len(at.get("iframe")) == 1
    assert any("barrier-s0" in text for text in texts(at, "markdown"))
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.real
def test_train_page_starts_and_stops_a_run(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    at = open_page("train", root, monkeypatch)
    assert not at.exception
    at.text_input[0].set_value("started")
    at.selectbox[1].set_value("tiny")
    at.number_input[0].set_value(100_000)
    at.selectbox[2].set_value("cpu")
    at.button[0].click().run()
    assert not at.error, texts(at, "error")
    run_dir = root / "started"
    try:
        # Once training has started (SIGTERM during the engine's set-up ends it uncleanly):
        at = until(at, lambda at: run_dir.is_dir() and Run(run_dir).metrics("start"), seconds=90)
        assert Run(run_dir).status == "running"
        next(b for b in at.button if b.key == "stop_started").click().run()
        at = until(at, lambda at: Run(run_dir).status != "running", seconds=60)
        assert Run(run_dir).status == "stopped"  # SIGTERM: a clean stop, with a checkpoint
        assert Run(run_dir).checkpoints()
    finally:
        kill_if_running(run_dir)


def kill_if_running(run_dir: Path, seconds: float = 60) -> None:
    """Kill the training process of `run_dir` if it is still running (waiting for it to start)."""
    deadline = time.time() + seconds
    while not (run_dir / "run.json").exists() and time.time() < deadline:
        time.sleep(0.5)
    run = Run(run_dir) if run_dir.is_dir() else None
    if run and run.status == "running":
        os.kill(run.info()["pid"], signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# A partial run and a corrupt one: a clear message on every page, never a traceback.


@pytest.fixture
def partial_root(tmp_path) -> Path:
    """A run whose writer died early: config, a run.json saying 'running' (its process is
    gone), two metric lines and half of a third; no checkpoints, snapshots or evaluations."""
    run = tmp_path / "partial"
    run.mkdir()
    write_json(run / "config.json", resolve("tiny").to_dict())
    write_json(run / "run.json", {"schema": 1, "algo": "dreamer", "status": "running", "pid": 1})
    lines = [
        {"kind": "start", "step": 0, "time": 0.0, "resumed": False},
        {"kind": "episode", "step": 50, "time": 1.0, "return": 1.5, "cost": 2.0, "length": 50},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"kind": "episode", "st'
    (run / "metrics.jsonl").write_text(text)
    return tmp_path


@pytest.fixture
def corrupt_root(tmp_path) -> Path:
    """Garbage in run.json, in metrics lines, in a snapshot, an evaluation and a comparison."""
    run = tmp_path / "corrupt"
    for folder in ("snapshots", "eval"):
        (run / folder).mkdir(parents=True)
    write_json(run / "config.json", resolve("tiny").to_dict())
    (run / "run.json").write_text("{not json")
    (run / "metrics.jsonl").write_bytes(
        b'\x80\xff garbage\n123\n{"step": 5}\n{"kind": "episode", "step": 9, "return": "x"}\n'
    )
    (run / "snapshots" / "snap_00000003.npz").write_bytes(b"PK\x03\x04 not a zip")
    (run / "eval" / "eval_000000100_00.npz").write_bytes(os.urandom(64))
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "comparison.json").write_text("[1, 2")
    return tmp_path


PARTIAL_MESSAGES = {
    "runs": "crashed",
    "latent_map": "no snapshots yet",
    "imagination": "no snapshots yet",
    "rollout": "no evaluation episodes yet",
    "compare": "No comparison",
    "train": "crashed",
}


def write_partial_run(folder: Path) -> None:
    """A run whose writer died early (see `partial_root`)."""
    folder.mkdir(parents=True)
    write_json(folder / "config.json", resolve("tiny").to_dict())
    write_json(folder / "run.json", {"schema": 1, "algo": "dreamer", "status": "running", "pid": 1})
    lines = [
        {"kind": "start", "step": 0, "time": 0.0, "resumed": False},
        {"kind": "episode", "step": 50, "time": 1.0, "return": 1.5, "cost": 2.0, "length": 50},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_finds_a_run_that_appears_and_says_so(page, tmp_path, monkeypatch):
    at = open_page(page, tmp_path, monkeypatch)
    assert not at.exception and at.sidebar.multiselect[0].options == []
    write_partial_run(tmp_path / "newcomer")  # as another process would
    at.run()  # what the page's folder watcher does every refresh period
    assert not at.exception
    assert any("newcomer" in toast.value for toast in at.toast)
    assert at.sidebar.multiselect[0].value == ["newcomer"]  # nothing was chosen: chosen now
    write_partial_run(tmp_path / "second")
    at.run()
    assert at.sidebar.multiselect[0].value == ["newcomer"]  # a choice is kept
    assert any("second" in toast.value for toast in at.toast)


@pytest.mark.parametrize("page", PAGES)
def test_pages_explain_a_partial_run(page, partial_root, monkeypatch):
    at = open_page(page, partial_root, monkeypatch)
    assert not at.exception
    shown = " ".join(texts(at, "markdown") + texts(at, "info") + texts(at, "caption"))
    assert PARTIAL_MESSAGES[page] in shown
    if page == "runs":  # the complete lines are shown, the partial one is not (yet)
        assert not at.get("plotly_chart")  # one episode: return, cost, length as numbers
        assert [m.value for m in at.metric] == ["1.5", "2", "50"]


@pytest.mark.parametrize("page", PAGES)
def test_pages_explain_a_corrupt_run(page, corrupt_root, monkeypatch):
    at = open_page(page, corrupt_root, monkeypatch)
    assert not at.exception
    shown = texts(at, "warning") + texts(at, "markdown")
    assert any("Could not read" in text or "unreadable" in text for text in shown), shown


def test_unreadable_metric_lines_are_skipped_and_counted(corrupt_root):
    run = Run(corrupt_root / "corrupt")
    assert run.metrics() == [{"kind": "episode", "step": 9, "return": "x"}]
    assert run.skipped_lines == 3
    with pytest.raises(RunError, match="not valid JSON"):
        run.info()


# ---------------------------------------------------------------------------------------------
# Figure builders (pure functions).


def test_curves_overlay_runs_and_skip_records_without_the_metric():
    records = {
        "a": [{"step": 1, "return": 1.0}, {"step": 2}, {"step": 3, "return": 3.0}],
        "b": [{"step": 1, "return": "bad"}, {"step": 4, "return": 2.0}],
    }
    figure = figures.curves(records, "return", smooth=2)
    assert [trace.name for trace in figure.data] == ["a", "b"]
    assert list(figure.data[0].x) == [1, 3] and list(figure.data[0].y) == [1.0, 2.0]
    assert list(figure.data[1].x) == [4]
    assert figures.metric_groups(["wm/kl", "fps", "wm/recon"]) == {
        "wm": ["wm/kl", "wm/recon"],
        "": ["fps"],
    }


def test_latent_map_splits_labels_and_keeps_each_points_index():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    unsafe = np.array([False, True, False, False, True, False])
    figure = figures.latent_map(coords, unsafe, "safety label", selected=4)
    safe, unsafe_trace, ring = figure.data
    assert list(safe.customdata) == [0, 2, 3, 5] and list(unsafe_trace.customdata) == [1, 4]
    assert (ring.x[0], ring.y[0]) == (8.0, 9.0)


def test_imagination_figure_marks_the_barrier_boundary():
    horizon, rollouts = 4, 3
    snapshot = {
        "imag_barrier": np.linspace(-1, 1, (horizon + 1) * rollouts).reshape(horizon + 1, rollouts),
        "imag_cost": np.zeros((horizon + 1, rollouts)),
        "imag_disagreement": np.ones((horizon, rollouts)),
    }
    figure = figures.imagination_figure(snapshot, rollout=1)
    references = [(shape.yref, shape.y0) for shape in figure.layout.shapes]
    assert references == [("y", 0), ("y2", 0), ("y3", 0)]  # B, predicted cost, disagreement
    low, high = figure.layout.yaxis2.range  # predicted cost, all 0: [0, 1], not a zoom on 0
    assert low <= 0 and high >= 1
    line = figure.data[1]
    assert list(line.y) == list(snapshot["imag_barrier"][:, 1])
    assert list(figure.data[5].x) == [0.5, 1.5, 2.5, 3.5]  # disagreement between steps


def test_episode_figure_marks_the_step_on_every_row():
    steps = 7
    episode = {
        "frame": np.zeros((steps, 8, 8, 3), np.uint8),
        "cost": np.zeros(steps),
        "pred_cost": np.zeros(steps),
        "disagreement": np.zeros(steps),
        "action": np.zeros((steps, 2)),
    }
    figure = figures.episode_figure(episode, 3)
    assert [a.text for a in figure.layout.annotations] == ["cost", "disagreement", "action"]
    step_lines = [
        shape.x0 for shape in figure.layout.shapes if shape.type == "line" and shape.x0 == shape.x1
    ]
    assert step_lines == [3, 3, 3]
    colors = [trace.line.color for trace in figure.data]
    assert len(set(colors)) == len(colors)  # cost, predicted cost, disagreement, actions differ


def test_axes_draw_their_references_and_never_zoom_into_noise():
    records = {"a": [{"step": s, "cost": 0.0, "return": 5.0 + 1e-4 * s} for s in range(10)]}
    cost = figures.curves(records, "cost", cost_limit=2.0)
    assert sorted(shape.y0 for shape in cost.layout.shapes) == [0.0, 2.0]  # 0 and the budget
    assert any("cost limit 2" in a.text for a in cost.layout.annotations)
    low, high = cost.layout.yaxis.range
    assert low <= 0 and high >= 2 and low > -0.2  # both references in view, not far below 0
    flat = figures.curves(records, "return")
    low, high = flat.layout.yaxis.range
    assert high - low >= figures.CURVE_AXES["return"].min_span  # 1e-3 of noise stays flat
    auroc = figures.curves({"a": [{"step": 1, "health/cost_auroc": 0.8}]}, "health/cost_auroc")
    low, high = auroc.layout.yaxis.range
    assert low < 0 < 1 < high  # a probability on [0, 1]
    assert figures.curve_axis("barrier/unsafe_accuracy") == figures.PROBABILITY
    assert figures.curve_axis("health/hazard_corr_barrier") == figures.CORRELATION


def test_axis_range_widens_about_the_middle_and_stops_at_the_floor():
    axis = figures.Axis(min_span=1.0, floor=0.0, relative_span=0.0)
    assert np.allclose(figures.axis_range(axis, [0.1, 0.1001]), [-0.04, 1.04])
    centred = figures.axis_range(figures.Axis(min_span=2.0, relative_span=0.0), [5.0])
    assert np.allclose(centred, [3.92, 6.08])


def test_learner_sections_put_the_story_first_and_numbers_apart():
    keys = {
        "episode": ["cost", "cumulative_cost", "length", "return"],
        "eval": ["cost", "health/cost_auroc", "health/reward_corr", "return"],
        "train": ["barrier/unsafe_accuracy", "lagrange/multiplier", "wm/kl"],
    }
    sections = figures.learner_sections(keys)
    assert sections["story"] == [
        ("episode", "return"),
        ("episode", "cost"),
        ("episode", "cumulative_cost"),
    ]
    assert sections["health"] == [("eval", "health/reward_corr"), ("eval", "health/cost_auroc")]
    assert [key for _, key in sections["operating point"]] == [
        "lagrange/multiplier",
        "barrier/unsafe_accuracy",
    ]
    assert ("episode", "length") in sections["rest"] and ("train", "wm/kl") in sections["rest"]
    constant = {"a": [{"step": s, "length": 500} for s in range(5)]}
    single = {"a": [{"step": 100, "health/cost_auroc": 0.7}], "b": []}
    assert figures.is_number(constant, "length") and figures.is_number(single, "health/cost_auroc")
    assert not figures.is_number({"a": [{"step": 1, "x": 1.0}, {"step": 2, "x": 2.0}]}, "x")


def test_palette_gives_each_quantity_one_colour():
    assert figures.color_of("cost") == figures.color_of("imag_cost") == figures.PALETTE["cost"]
    assert figures.color_of("health/unsafe_pred_cost") == figures.PALETTE["pred_cost"]
    assert figures.color_of("imag_barrier") == figures.PALETTE["barrier"]
    distinct = [
        figures.color_of(k) for k in ("cost", "pred_cost", "cost_value", "barrier", "value")
    ]
    assert len(set(distinct + list(figures.ACTION_COLORS))) == len(distinct) + len(
        figures.ACTION_COLORS
    )


def hand_made_episodes() -> list[dict]:
    """Two episodes whose barrier is 2 * distance + known noise, one distance unknown (NaN)."""
    distance = np.array([-0.3, -0.1, 0.2, 0.5, 0.9, np.nan])
    noise = np.array([0.1, -0.2, 0.05, 0.0, -0.1, 7.0])
    first = {
        "hazard_distance": distance,
        "barrier": 2 * distance + noise,
        "pred_cost": (distance < 0).astype(float),
        "cost": (distance < 0).astype(float),
    }
    second = {
        "hazard_distance": np.array([1.5, -0.5]),
        "barrier": np.array([3.0, -1.0]),
        "pred_cost": np.array([0.0, 1.0]),
        "cost": np.array([0.0, 1.0]),
    }
    return [first, second]  # fmt: skip


def test_true_distance_view_computes_the_correlation_of_a_hand_made_run():
    episodes = hand_made_episodes()
    known_distance = np.array([-0.3, -0.1, 0.2, 0.5, 0.9, 1.5, -0.5])
    known_barrier = np.array([-0.5, -0.4, 0.45, 1.0, 1.7, 3.0, -1.0])
    expected = np.corrcoef(known_distance, known_barrier)[0, 1]
    assert figures.true_distance_correlation(episodes, "barrier") == pytest.approx(expected)
    assert figures.true_distance_correlation(episodes, "pred_cost") < -0.5  # cost: inside
    figure = figures.true_distance_figure(episodes)
    titles = [a.text for a in figure.layout.annotations]
    assert titles[0] == f"barrier B(z): correlation {expected:+.2f}"
    assert titles[1].startswith("predicted cost: correlation -")
    assert sum(len(trace.x) for trace in figure.data if trace.xaxis == "x") == 7  # NaN left out
    assert figures.true_distance_correlation([{"barrier": np.ones(3)}], "barrier") is None
    with_distance = {**episodes[0], "frame": np.zeros((6, 8, 8, 3), np.uint8)}
    rows = [a.text for a in figures.episode_figure(with_distance, 0).layout.annotations]
    assert "true hazard distance" in rows
    coloring = figures.color_choices({"unsafe": np.zeros(2, bool), "hazard_distance": np.ones(2)})
    assert "true hazard distance" in coloring
    assert "true hazard distance" not in figures.color_choices(
        {"hazard_distance": np.full(2, np.nan)}
    )


def test_frame_grid_wraps_frames_in_rows_large_enough_to_see():
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    figure = figures.frame_grid(frames, columns=8, scale=3)
    assert figures.image_of(figure.data[0].source).shape[0] == 2 * (
        64 + 12
    )  # two rows, each with a label band
    assert figure.layout.width >= 8 * 64 * 3 and len(figure.layout.annotations) == 16


def test_frame_strip_and_enlarge():
    frames = np.stack([np.full((4, 4, 3), value, np.uint8) for value in (10, 20, 30)])
    figure = figures.frame_strip(frames, ["a", "b", "c"])
    image = figures.image_of(figure.data[0].source)  # a PNG, small in a saved notebook
    assert image.shape == (4, 3 * 4 + 2 * 2, 3)
    assert (image[0, 4, 0], image[0, 6, 0]) == (255, 20)  # a white gap, then the second frame
    assert figures.enlarge(frames[0], 3).shape == (12, 12, 3)


# ---------------------------------------------------------------------------------------------
# The command's helpers.


def test_streamlit_command_serves_on_the_address_without_watching_files(tmp_path):
    command, environment = streamlit_command(tmp_path, "127.0.0.1", 8600)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "8600"
    assert command[command.index("--server.fileWatcherType") + 1] == "none"
    assert command[command.index("--server.headless") + 1] == "true"
    assert Path(command[command.index("run") + 1]) == APP / "Home.py"
    assert environment[RUNS_DIR_VARIABLE] == str(tmp_path.resolve())


def test_training_command_checks_before_starting(tmp_path):
    command = training_command(
        tmp_path, "a", TrainRequest("tiny", "osrp", 2, sets=["agent.cost_limit=5"])
    )
    assert command[command.index("--run-dir") + 1] == str(tmp_path / "a")
    assert "--set=agent.cost_limit=5" in command and "--no-progress" in command
    with pytest.raises(ConfigError, match="unknown config key"):
        training_command(tmp_path, "b", TrainRequest("tiny", sets=["agent.nope=1"]))
    with pytest.raises(ValueError, match="run name"):
        training_command(tmp_path, "../up", TrainRequest("tiny"))
    (tmp_path / "taken").mkdir()
    with pytest.raises(RunError, match="already exists"):
        training_command(tmp_path, "taken", TrainRequest("tiny"))


def test_stop_training_refuses_a_run_that_is_not_running(partial_root):
    with pytest.raises(RunError, match="not running"):
        stop_training(Run(partial_root / "partial"))  # its writer is gone: crashed
