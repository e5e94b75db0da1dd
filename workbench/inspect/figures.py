"""Plotly figures of a run, shared by the dashboard (`app/`) and the notebook widgets.

Pure functions: arrays and metric records in, a `go.Figure` out; nothing here reads files or
knows about Streamlit. One figure per concept:

    curves(records_by_run, key)        a metric against env steps, several runs overlaid
    learning_curves(lines, key)         the same from arrays, with a band (mean +- std over seeds)
    bars(panels, title=...)             a bar per run or algorithm with its error, panels side by side
    latent_map(coords, values, name)    the UMAP of a snapshot's latents, coloured by one quantity
    imagination_figure(snapshot, i)     barrier, predicted cost, disagreement along imagined rollouts
    frame_strip(frames, labels)         frames side by side (decoded imagination, frame vs recon)
    episode_figure(episode, t)          a real episode's per-step values, with a marker at step t
    true_distance_figure(episodes)      barrier and predicted cost against the simulator's
                                        distance to the nearest hazard, with their correlation

Truthful axes: every quantity with a natural reference is drawn against it (cost against 0 and
the cost limit, B against 0, probabilities on [0, 1]), and no axis spans less than its quantity's
`Axis.min_span`, so a flat line stays flat. One palette (`PALETTE`): a quantity has the same
colour on every page and widget.

Helpers that choose what to draw: `metric_keys`, `metric_groups`, `learner_sections`,
`is_number`, `color_choices`, `enlarge`. One name per quantity (`LABELS`, read through `label`):
a quantity is called the same on every page, widget and plot.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import functools
import html
import json
import re
import threading
import warnings
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from workbench.runs import measurements

SAFE, UNSAFE = "#1f77b4", "#d62728"
BAND = "rgba(120, 120, 120, 0.25)"
REFERENCE = "#444444"
RUN_COLORS = qualitative.Plotly
"""Colours of runs overlaid on one plot (a run's identity, not a quantity)."""

PALETTE = {
    "return": "#2ca02c",
    "reward": "#2ca02c",
    "pred_reward": "#98df8a",
    "cost": "#d62728",
    "pred_cost": "#ff7f0e",
    "cumulative_cost": "#8c1c13",
    "barrier": "#1f77b4",
    "value": "#17becf",
    "cost_value": "#e377c2",
    "disagreement": "#9467bd",
    "hazard_distance": "#7f7f7f",
    "multiplier": "#8c564b",
}
"""One colour per quantity, on every page and widget (reward green, cost red, predicted cost
orange, barrier blue, value cyan, cost value pink, disagreement purple, true distance grey)."""
ACTION_COLORS = ("#393b79", "#bcbd22", "#637939", "#843c39")
"""The action's components: colours no quantity above uses."""


def color_of(quantity: str) -> str:
    """The palette's colour of a quantity (`imag_cost` and `health/unsafe_pred_cost` included;
    `barrier/...` metrics have the barrier's colour)."""
    group, _, name = quantity.removeprefix("imag_").rpartition("/")
    for key in sorted(PALETTE, key=len, reverse=True):
        if name == key or name.endswith(f"_{key}") or name.startswith(f"{key}_"):
            return PALETTE[key]
    return PALETTE.get(group, "#555555")


LABELS = {
    # an episode's totals (metric records of training and evaluation episodes)
    "return": "episode return",
    "length": "episode length",
    "cumulative_cost": "cumulative cost",
    "final_return": "final return",
    "final_cost": "final cost",
    # per step or per latent (evaluation episodes, snapshots); imagined ones as imag_<key>
    "cost": "cost",
    "reward": "reward",
    "pred_cost": "predicted cost",
    "imag_cost": "predicted cost",
    "pred_reward": "predicted reward",
    "imag_reward": "predicted reward",
    "barrier": "barrier B(z)",
    "value": "value",
    "cost_value": "cost value",
    "disagreement": "disagreement",
    "hazard_distance": "true hazard distance",
    "unsafe": "safety label",
    "time": "time in sequence",
    "action": "action",
    # training and evaluation metrics
    "wm/disagreement": "disagreement on real transitions",
    "agent/disagreement": "disagreement along imagined rollouts",
    "health/reward_r2": "reward R²",
    "health/reward_corr": "reward correlation",
    "health/cost_auroc": "cost AUROC",
    "health/object_error": "object error",
    "lagrange/multiplier": "Lagrange multiplier",
    "planner/feasible_fraction": "feasible plans",
    "cerl/feasible": "CERL feasible",
    "lspc/feasible_fraction": "LSPC feasible fraction",
    "barrier/unsafe_accuracy": "barrier on unsafe states",
    "barrier/safe_accuracy": "barrier on safe states",
}
"""What a key means to a reader: the one name of a metric (in metrics.jsonl) or of a per-step
or per-latent value (in evaluation episodes and snapshots) on every page, widget and plot."""


def label(key: str) -> str:
    """A key's name for a reader (`LABELS`; an unlisted `imag_<key>` as <key>; else the key)."""
    return LABELS.get(key) or LABELS.get(key.removeprefix("imag_"), key)


# ---------------------------------------------------------------------------------------------
# Truthful axes.

LIMIT = "limit"
"""A reference standing for the run's cost limit (drawn when it is known)."""


@dataclass(frozen=True)
class Axis:
    """How to draw a quantity's y axis truthfully."""

    references: tuple[float | str, ...] = ()
    """Values drawn as dashed lines, and always in view (LIMIT: the cost limit)."""
    bounds: tuple[float, float] | None = None
    """The whole natural range, shown whatever the data (probabilities: 0 to 1)."""
    min_span: float = 0.0
    """The least the axis spans, so noise on a flat line is not blown up into a signal."""
    floor: float | None = None
    """A value the quantity never goes below (costs: 0), where a widened axis stops."""
    relative_span: float = 0.2
    """The least span as a fraction of the largest |value| (for quantities without a scale)."""


PROBABILITY = Axis(bounds=(0.0, 1.0))
CORRELATION = Axis(references=(0.0,), bounds=(-1.0, 1.0))
CURVE_AXES = {
    "return": Axis(references=(0.0,), min_span=1.0),
    "cost": Axis(references=(0.0, LIMIT), min_span=1.0, floor=0.0),
    "cumulative_cost": Axis(references=(0.0,), min_span=10.0, floor=0.0),
    "health/reward_r2": Axis(references=(0.0, 1.0), min_span=1.0),
    "health/reward_spread": Axis(references=(1.0,), min_span=1.0, floor=0.0),
    "health/cost_auroc": Axis(references=(0.5,), bounds=(0.0, 1.0)),
    "health/object_error": Axis(min_span=0.2, floor=0.0, references=(0.0,)),
    "health/recon_mse": Axis(min_span=0.05, floor=0.0, references=(0.0,)),
    "health/unsafe_pred_cost": Axis(references=(0.0, 1.0), min_span=1.0, floor=0.0),
    "health/action_std": Axis(references=(0.0,), min_span=0.5, floor=0.0),
    "lagrange/multiplier": Axis(references=(0.0,), min_span=0.5, floor=0.0),
    "agent/cost_budget": Axis(references=(0.0,), min_span=1.0),
}
"""Axes of metric curves by key (see `curve_axis` for the rules by name)."""
STEP_AXES = {
    "cost": Axis(references=(0.0,), min_span=1.0, floor=0.0),
    "pred_cost": Axis(references=(0.0,), min_span=1.0, floor=0.0),
    "barrier": Axis(references=(0.0,), min_span=1.0),
    "disagreement": Axis(references=(0.0,), min_span=0.1, floor=0.0),
    "reward": Axis(references=(0.0,), min_span=0.2),
    "value": Axis(references=(0.0,), min_span=1.0),
    "hazard_distance": Axis(references=(0.0,), min_span=0.5),
    "action": Axis(references=(0.0,), bounds=(-1.0, 1.0)),
}
"""Axes of per-step quantities (real episodes and imagined rollouts), by key without `imag_`."""


def curve_axis(key: str) -> Axis:
    """The axis of a metric: listed in CURVE_AXES, else by its name (accuracies, fractions, rates,
    AUROC and `feasible` are probabilities; correlations lie in [-1, 1]), else only a span."""
    if key in CURVE_AXES:
        return CURVE_AXES[key]
    name = key.rsplit("/", 1)[-1]
    if "corr" in name:
        return CORRELATION
    if re.search(r"(accuracy|fraction|rate|auroc|feasible)$", name):
        return PROBABILITY
    return Axis()


def step_axis(key: str) -> Axis:
    """The axis of a per-step quantity (`imag_barrier` as `barrier`)."""
    return STEP_AXES.get(key.removeprefix("imag_"), Axis())


def axis_range(axis: Axis, values: Iterable[float], cost_limit: float | None = None) -> list[float]:
    """[low, high] of a y axis showing `values`, the axis's references and natural bounds, and
    spanning at least its minimum span (widened about the data's middle, not below its floor)."""
    data = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    references = _references(axis, cost_limit)
    shown = np.concatenate([data, references, np.asarray(axis.bounds or (), dtype=float)])
    if len(shown) == 0:
        return [0.0, 1.0]
    low, high = float(shown.min()), float(shown.max())
    largest = float(np.abs(data).max()) if len(data) else 0.0
    span = max(axis.min_span, axis.relative_span * largest, 1e-9)
    if high - low < span:
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
        if axis.floor is not None and low < axis.floor:
            low, high = axis.floor, axis.floor + span
    pad = 0.04 * (high - low)
    return [low - pad, high + pad]


def _references(axis: Axis, cost_limit: float | None) -> np.ndarray:
    values = [cost_limit if r == LIMIT else r for r in axis.references]
    return np.asarray([v for v in values if v is not None], dtype=float)


def draw_references(
    figure: go.Figure,
    axis: Axis,
    cost_limit: float | None = None,
    **where: Any,
) -> None:
    """The axis's references as dashed lines (the cost limit labelled), in the subplot `where`."""
    for reference in axis.references:
        value = cost_limit if reference == LIMIT else reference
        if value is None:
            continue
        text = {"annotation_text": f"cost limit {value:g}"} if reference == LIMIT else {}
        color = UNSAFE if reference == LIMIT else REFERENCE
        figure.add_hline(
            y=value, line={"dash": "dash", "color": color, "width": 1}, **text, **where
        )


def truthful(
    figure: go.Figure,
    axis: Axis,
    values: Iterable[float],
    cost_limit: float | None = None,
    **where: Any,
) -> go.Figure:
    """Give a figure's y axis (or a subplot's, `row`, `col`) its references and range."""
    draw_references(figure, axis, cost_limit, **where)
    figure.update_yaxes(range=axis_range(axis, values, cost_limit), **where)
    return figure


# ---------------------------------------------------------------------------------------------
# Figures readable anywhere.


STATIC_WIDTH = 700
"""Width in pixels of a figure's static image when its layout sets none."""
SAVED_COPY = "The last state of these views, as images (for reading without a kernel)"
_exporting = threading.Lock()  # one image at a time through kaleido's single browser
_no_images: list[str] = []  # why images cannot be made, once found out


def figure_bundle(figure: go.Figure, *, image: bool = True) -> dict[str, Any]:
    """A figure's display data: plotly's own mime type (interactive in JupyterLab), a PNG image
    (`image`: what a notebook read without a kernel shows; none where kaleido or a Chromium is
    missing) and text."""
    bundle = {
        "application/vnd.plotly.v1+json": json.loads(pio.to_json(figure, validate=False)),
        "text/plain": f"<figure: {figure.layout.title.text or 'plot'}>",
    }
    png = figure_png(figure) if image else None
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode()
    return bundle


def figure_html(figure: go.Figure) -> str:
    """A figure as an HTML fragment that needs no kernel and no network: its PNG image (where
    kaleido or a Chromium is missing: plotly's HTML, which loads plotly.js from its CDN)."""
    png = figure_png(figure)
    if png is None:
        return pio.to_html(figure, include_plotlyjs="cdn", full_html=False, validate=False)
    title = html.escape(figure.layout.title.text or "plot", quote=True)
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{title}"/>'


def saved_copy(fragment: str) -> dict[str, str]:
    """Display data for the last state of live views (`fragment`, their HTML), under a line that
    folds it: open, so that a notebook read without a kernel shows every figure; beside the live
    views a click folds it away."""
    return {
        "text/html": f"<details open><summary>{SAVED_COPY}</summary>\n{fragment}\n</details>",
        "text/plain": SAVED_COPY,
    }


def figure_png(figure: go.Figure) -> bytes | None:
    """A figure as a PNG image, `STATIC_WIDTH` wide unless its layout says otherwise (plotly's
    exporter, kaleido, drawing it in a headless Chromium); None where either is missing."""
    return _png(pio.to_json(figure, validate=False))


@functools.lru_cache(maxsize=32)  # a board's copy draws again every figure, mostly unchanged
def _png(figure_json: str) -> bytes | None:
    if _no_images:
        return None
    figure = json.loads(figure_json)
    layout = figure.get("layout", {})
    width, height = layout.get("width") or STATIC_WIDTH, layout.get("height") or 450
    try:
        with _exporting:
            return _exporter().png(figure, width, height)
    except Exception as error:  # no kaleido, no Chromium: the figures stay interactive only
        _no_images.append(f"{type(error).__name__}: {error}")
        warnings.warn(
            f"figures get no static images ({_no_images[0]}); install kaleido and Chromium",
            stacklevel=3,
        )
        return None


class _Exporter:
    """kaleido's headless Chromium, opened once and driven from an event loop in a thread of its
    own, every call with a timeout (kaleido's own sync server waits forever once it fails)."""

    def __init__(self, timeout: float = 60.0):
        import kaleido

        async def opened() -> kaleido.Kaleido:
            return await kaleido.Kaleido()

        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="kaleido").start()
        self.browser = self.run(opened())
        atexit.register(lambda: self.run(self.browser.close()))

    def png(self, figure: dict[str, Any], width: int, height: int) -> bytes:
        """A figure (plotly's JSON) drawn as a PNG image of that size."""
        opts = {"format": "png", "width": width, "height": height}
        return self.run(self.browser.calc_fig(figure, opts=opts))

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(self.timeout)


@functools.cache
def _exporter() -> _Exporter:
    return _Exporter()


def _layout(figure: go.Figure, title: str, height: int) -> go.Figure:
    top = 70 if "<br>" in title else 50  # room for a title's second line
    figure.update_layout(
        title=title,
        height=height,
        margin={"l": 50, "r": 20, "t": top, "b": 40},
        hovermode="closest",
    )
    return figure


# ---------------------------------------------------------------------------------------------
# Metric curves.


def metric_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    """The numeric metrics present in some record (not its kind, step, time or counters), sorted."""
    return sorted({key for record in records for key in measurements(record)})


def metric_groups(keys: Iterable[str]) -> dict[str, list[str]]:
    """Keys by their prefix: {'wm': ['wm/kl', 'wm/recon'], 'lagrange': [...], '': ['fps']}."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        prefix = key.split("/", 1)[0] if "/" in key else ""
        groups.setdefault(prefix, []).append(key)
    return groups


def curves(
    records_by_run: Mapping[str, Sequence[dict[str, Any]]],
    key: str,
    *,
    smooth: int = 1,
    height: int = 300,
    cost_limit: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """One metric of the runs' records against env steps, a line per run (`learning_curves`).
    `smooth` > 1 averages each point with the `smooth - 1` before it."""
    lines = {}
    for name, records in records_by_run.items():
        steps, values = _series(records, key)
        lines[name] = (steps, _trailing_mean(values, smooth), None)
    return learning_curves(lines, key, height=height, cost_limit=cost_limit, title=title)


Line = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""A learning curve: (env steps, values, spread or None), the spread a band's half-width."""


def learning_curves(
    lines: Mapping[str, Line],
    key: str,
    *,
    height: int = 300,
    cost_limit: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """One metric against env steps, a line per run (or per algorithm: its mean over seeds), over
    a band of +- its spread where given. The lines' order fixes their colours (one line has its
    quantity's colour). The y axis is truthful (`curve_axis`): episode cost is drawn against 0
    and `cost_limit`."""
    figure = go.Figure()
    shown: list[float] = []
    for index, (name, (steps, values, spread)) in enumerate(lines.items()):
        color = color_of(key) if len(lines) == 1 else RUN_COLORS[index % len(RUN_COLORS)]
        if spread is not None:
            translucent = "rgba({}, {}, {}, 0.2)".format(*hex_to_rgb(color))
            band(figure, steps, values - spread, values + spread, translucent, legendgroup=name,
                 showlegend=False)  # fmt: skip
            shown.extend(np.concatenate([values - spread, values + spread]))
        figure.add_scatter(
            x=steps,
            y=values,
            name=name,
            legendgroup=name,
            mode="lines+markers" if len(steps) < 30 else "lines",
            line={"color": color},
        )
        shown.extend(values)
    figure.update_layout(xaxis_title="env steps", showlegend=len(lines) > 1)
    truthful(figure, curve_axis(key), shown, cost_limit)
    return _layout(figure, title or label(key), height)


def band(
    figure: go.Figure, x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str, **trace: Any
) -> None:
    """A filled band from `low` to `high` along `x`, without a line or hover (`trace`: the rest
    of the trace's settings, a subplot's `row` and `col` among them)."""
    figure.add_scatter(
        x=np.concatenate([x, x[::-1]]),
        y=np.concatenate([high, low[::-1]]),
        mode="lines",
        fill="toself",
        fillcolor=color,
        line={"width": 0},
        hoverinfo="skip",
        **trace,
    )


def bars(
    panels: Mapping[str, Mapping[str, tuple[float, float]]], *, title: str, height: int = 450
) -> go.Figure:
    """Panels side by side, {panel title: {name: (value, error)}}: a bar per name with its error
    bar, names coloured by their order (as the lines of `learning_curves`)."""
    figure = make_subplots(rows=1, cols=max(len(panels), 1), subplot_titles=list(panels))
    for column, values in enumerate(panels.values(), start=1):
        figure.add_bar(
            x=list(values),
            y=[value for value, _ in values.values()],
            error_y={"array": [error for _, error in values.values()]},
            marker_color=[RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(values))],
            showlegend=False,
            row=1,
            col=column,
        )
    return _layout(figure, title, height)


def is_number(records_by_run: Mapping[str, Sequence[dict[str, Any]]], key: str) -> bool:
    """Whether a metric is better shown as a number than as a plot: every run has at most one
    value of it, or always the same one (an episode length fixed by the time limit)."""
    for records in records_by_run.values():
        _, values = _series(records, key)
        if len(values) > 1 and not np.allclose(values, values[0], rtol=1e-9, atol=1e-12):
            return False
    return True


def last_values(
    records_by_run: Mapping[str, Sequence[dict[str, Any]]], key: str
) -> dict[str, float]:
    """Each run's last value of a metric (runs without one are left out)."""
    last = {}
    for name, records in records_by_run.items():
        _, values = _series(records, key)
        if len(values):
            last[name] = float(values[-1])
    return last


STORY = ("return", "cost", "cumulative_cost")
"""Training-episode curves that tell how a safe agent is doing, first on the Runs page."""
HEALTH = ("health/reward_r2", "health/reward_corr", "health/cost_auroc", "health/object_error")
"""Evaluation metrics that tell whether the world model knows the task (held-out episodes)."""
OPERATING_POINT = (
    "lagrange/multiplier",
    "planner/feasible_fraction",
    "cerl/feasible",
    "lspc/feasible_fraction",
    "barrier/unsafe_accuracy",
    "barrier/safe_accuracy",
)
"""Training metrics that tell where each algorithm operates (whichever the run logs)."""


NOTES = {
    "return": "per training episode",
    "cost": "per episode; red dashes: the cost limit",
    "cumulative_cost": "every unsafe step so far",
    "health/reward_r2": "1: perfect; 0: no better than the mean",
    "health/reward_corr": "predicted against received",
    "health/cost_auroc": "0.5: chance; 1: tells every unsafe step",
    "health/object_error": "hazards and goal, reconstructed",
    "lagrange/multiplier": "the price of cost",
    "planner/feasible_fraction": "fraction within the cost limit",
    "cerl/feasible": "worst member's cost under budget",
    "barrier/unsafe_accuracy": "fraction with B < 0",
    "barrier/safe_accuracy": "fraction with B > 0",
}
"""What a metric's value tells, written in small type under its title on a plot."""


def metric_title(key: str, *, note: bool = False) -> str:
    """A metric's title (`label`), with its note in small type under it when `note` (a plot)."""
    under = NOTES.get(key, "")
    return f"{label(key)}<br><sup>{under}</sup>" if note and under else label(key)


def learner_sections(keys_by_kind: Mapping[str, Iterable[str]]) -> dict[str, list[tuple[str, str]]]:
    """The metrics in a learner's order, as {section: [(kind, key)]}: `story` (STORY of the
    training episodes), `health` (HEALTH of the evaluations), `operating point` (OPERATING_POINT
    of the training updates) and `rest` (everything else, by kind and then by key), each holding
    only the keys present."""
    present = {kind: set(keys) for kind, keys in keys_by_kind.items()}
    sections = {
        "story": [("episode", k) for k in STORY if k in present.get("episode", ())],
        "health": [("eval", k) for k in HEALTH if k in present.get("eval", ())],
        "operating point": [("train", k) for k in OPERATING_POINT if k in present.get("train", ())],
    }
    placed = {pair for pairs in sections.values() for pair in pairs}
    sections["rest"] = [
        (kind, key)
        for kind, keys in keys_by_kind.items()
        for key in sorted(keys)
        if (kind, key) not in placed
    ]
    return sections


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold a number for both (others are skipped)."""
    rows = [
        (record["step"], record[key])
        for record in records
        if _is_number(record.get("step")) and _is_number(record.get(key))
    ]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*rows, strict=True)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


# ---------------------------------------------------------------------------------------------
# The latent map.

COLORINGS = (
    "unsafe", "barrier", "disagreement", "cost", "pred_cost", "time", "value", "cost_value",
    "hazard_distance",
)  # fmt: skip
"""What a snapshot's latents can be coloured by, in this order (the keys it holds)."""
DIVERGING = {label("barrier"), label("hazard_distance")}
"""Colourings on a red-blue scale centred on 0 (B = 0, the hazard's edge)."""


def color_choices(snapshot: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The colourings this snapshot supports, label -> values [M] (a true distance only where
    the simulator recorded one)."""
    return {
        label(key): snapshot[key]
        for key in COLORINGS
        if key in snapshot and (key != "hazard_distance" or has_true_distance(snapshot))
    }


def has_true_distance(arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether an episode or snapshot holds the simulator's hazard distance somewhere."""
    distance = arrays.get("hazard_distance")
    return distance is not None and bool(np.isfinite(np.asarray(distance, dtype=float)).any())


def latent_map(
    coords: np.ndarray,
    values: np.ndarray,
    name: str,
    *,
    selected: int | None = None,
    height: int = 520,
) -> go.Figure:
    """Latents as points in 2-D, coloured by `values` (booleans: safe/unsafe; barrier values: a
    diverging scale centred on B = 0). Each point's customdata is its index in the snapshot, so
    a click can be mapped back to its frame; `selected` is ringed."""
    coords, values = np.asarray(coords), np.asarray(values)
    index = np.arange(len(coords))
    figure = go.Figure()
    if values.dtype == bool:
        for side, mask, color in (("safe", ~values, SAFE), ("unsafe", values, UNSAFE)):
            figure.add_trace(_points(coords[mask], index[mask], side, {"color": color}))
    else:
        scale = {"colorscale": "RdBu", "cmid": 0.0} if name in DIVERGING else {}
        marker = {"color": values, "colorscale": "Viridis", "showscale": True, **scale}
        marker["colorbar"] = {"title": {"text": name}}
        figure.add_trace(_points(coords, index, name, marker, values))
    if selected is not None and 0 <= selected < len(coords):
        figure.add_scattergl(
            x=coords[selected : selected + 1, 0],
            y=coords[selected : selected + 1, 1],
            mode="markers",
            marker={"size": 18, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "black"}},
            name="selected",
            hoverinfo="skip",
        )
    figure.update_xaxes(showticklabels=False, title="UMAP 1")
    figure.update_yaxes(showticklabels=False, title="UMAP 2", scaleanchor="x")
    figure.update_layout(clickmode="event+select", showlegend=values.dtype == bool)
    return _layout(figure, f"latents coloured by {name}", height)


def _points(
    coords: np.ndarray,
    index: np.ndarray,
    name: str,
    marker: dict[str, Any],
    values: np.ndarray | None = None,
) -> go.Scattergl:
    value_line = "<br>%{marker.color:.3g}" if values is not None else ""
    return go.Scattergl(
        x=coords[:, 0],
        y=coords[:, 1],
        mode="markers",
        name=name,
        customdata=index,
        marker={"size": 7, "opacity": 0.8, **marker},
        hovertemplate=f"latent %{{customdata}}{value_line}<extra>{name}</extra>",
    )


# ---------------------------------------------------------------------------------------------
# Imagination.

IMAGINATION_ROWS = ("imag_barrier", "imag_cost", "imag_disagreement", "imag_reward")
"""Rows of the imagination figure, by snapshot key (rows whose key is missing are left out)."""


def imagination_figure(snapshot: Mapping[str, np.ndarray], rollout: int) -> go.Figure:
    """Along imagined rollouts: one row per quantity, the chosen rollout as a line over the
    10-90th percentile band of all rollouts of the snapshot. Truthful axes: B against 0 (the
    boundary between states the barrier calls safe and unsafe), predicted cost against 0 on at
    least [0, 1]. Disagreement belongs to the transition t -> t+1 and is drawn between the two
    steps."""
    rows = [key for key in IMAGINATION_ROWS if key in snapshot]
    figure = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=[label(key) for key in rows]
    )
    for row, key in enumerate(rows, start=1):
        values = np.asarray(snapshot[key], dtype=float)  # [T, N]
        steps = np.arange(len(values)) + (0.5 if key == "imag_disagreement" else 0.0)
        low, high = np.percentile(values, [10, 90], axis=1)
        band(figure, steps, low, high, BAND, name="10-90% of rollouts", showlegend=row == 1,
             legendgroup="band", row=row, col=1)  # fmt: skip
        figure.add_scatter(
            x=steps,
            y=values[:, rollout],
            mode="lines+markers",
            line={"color": color_of(key)},
            name=f"rollout {rollout}",
            showlegend=row == 1,
            legendgroup="rollout",
            row=row,
            col=1,
        )
        shown = np.concatenate([values[:, rollout], low, high])
        truthful(figure, step_axis(key), shown, row=row, col=1)
    figure.update_xaxes(title_text="imagined step", row=len(rows), col=1)
    return _layout(figure, f"imagined rollout {rollout}", 170 * len(rows) + 80)


def frame_strip(
    frames: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    scale: int = 2,
    title: str = "",
) -> go.Figure:
    """Frames [T, H, W, 3] (uint8) side by side in one image, each labelled underneath."""
    frames = np.asarray(frames)
    count, height, width = frames.shape[:3]
    gap = 2
    strip = np.full((height, count * (width + gap) - gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        strip[:, i * (width + gap) : i * (width + gap) + width] = frame
    labels = list(labels) if labels is not None else [str(i) for i in range(count)]
    figure = go.Figure(go.Image(source=png_source(strip), hoverinfo="skip"))
    figure.update_xaxes(
        tickvals=[i * (width + gap) + width / 2 for i in range(count)],
        ticktext=labels,
        showgrid=False,
    )
    figure.update_yaxes(showticklabels=False, showgrid=False)
    figure.update_layout(
        title=title or None,
        width=None,
        height=height * scale + (90 if title else 50),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 40},
    )
    return figure


def frame_grid(
    frames: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    columns: int = 8,
    scale: int = 3,
    title: str = "",
) -> go.Figure:
    """Frames [T, H, W, 3] in rows of `columns`, each labelled above, drawn `scale` times their
    size (large enough to see a hazard: 64 px frames at 3x are 192 px)."""
    frames = np.asarray(frames)
    count, height, width = frames.shape[:3]
    columns = max(1, min(columns, count))
    rows, gap, band = -(-count // columns), 2, 10
    grid = np.full((rows * (height + band + gap), columns * (width + gap) - gap, 3), 255, np.uint8)
    labels = list(labels) if labels is not None else [str(i) for i in range(count)]
    figure = go.Figure()
    for i, frame in enumerate(frames):
        top, left = (i // columns) * (height + band + gap) + band, (i % columns) * (width + gap)
        grid[top : top + height, left : left + width] = frame
        figure.add_annotation(
            x=left + width / 2, y=top - band / 2, text=labels[i], showarrow=False,
            font={"size": 11}, yanchor="middle",
        )  # fmt: skip
    figure.add_trace(go.Image(source=png_source(grid), hoverinfo="skip"))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(
        title=title or None,
        width=grid.shape[1] * scale + 20,
        height=grid.shape[0] * scale + (60 if title else 20),
        margin={"l": 10, "r": 10, "t": 50 if title else 10, "b": 10},
    )
    return figure


def png_source(image: np.ndarray) -> str:
    """An image [H, W, 3] (uint8) as a PNG data URI: a few kB in a saved figure or notebook,
    where the pixels as numbers would be hundreds."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_of(source: str) -> np.ndarray:
    """The pixels [H, W, 3] of a PNG data URI (`png_source`'s inverse)."""
    import base64
    import io

    from PIL import Image

    data = base64.b64decode(source.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def enlarge(frame: np.ndarray, factor: int = 4) -> np.ndarray:
    """A frame [H, W, 3] scaled up by repeating pixels (crisp, unlike a browser's smoothing)."""
    return np.repeat(np.repeat(np.asarray(frame), factor, axis=0), factor, axis=1)


# ---------------------------------------------------------------------------------------------
# A real episode, step by step.


def episode_figure(episode: Mapping[str, np.ndarray], t: int) -> go.Figure:
    """A real episode's per-step values (cost and predicted cost; barrier with B = 0; the
    simulator's true distance to the nearest hazard, where recorded; value and cost value;
    ensemble disagreement; the action's components) with a line at step t. Each row is drawn
    against its reference (`STEP_AXES`), in the palette's colours."""
    rows = _episode_rows(episode)
    figure = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=[title for title, *_ in rows]
    )
    for row, (title, axis_key, lines) in enumerate(rows, start=1):
        for name, values, color in lines:
            figure.add_scatter(
                y=values,
                name=name,
                mode="lines",
                line={"color": color, "shape": "hv" if name == label("cost") else "linear"},
                legendgroup=title,
                row=row,
                col=1,
            )
        shown = np.concatenate([np.asarray(values, dtype=float) for _, values, _ in lines])
        truthful(figure, step_axis(axis_key), shown, row=row, col=1)
    figure.add_vline(x=t, line={"color": "black", "width": 1}, row="all", col=1)
    figure.update_xaxes(title_text="step", row=len(rows), col=1)
    return _layout(figure, f"step {t} of {len(episode['frame']) - 1}", 150 * len(rows) + 80)


EPISODE_ROWS = (
    ("cost", "pred_cost"), ("barrier",), ("hazard_distance",), ("value", "cost_value"),
    ("disagreement",),
)  # fmt: skip
"""Rows of `episode_figure`, by the episode keys drawn in each (the first names the row and its
axis)."""


def _episode_rows(episode: Mapping[str, np.ndarray]) -> list[tuple[str, str, list[tuple]]]:
    """(title, axis key, [(name, values, color)]) per row, for the keys this episode has."""
    rows = []
    for keys in EPISODE_ROWS:
        lines = [
            (label(key), np.asarray(episode[key], dtype=float), color_of(key))
            for key in keys
            if key in episode and (key != "hazard_distance" or has_true_distance(episode))
        ]
        if lines:
            rows.append((label(keys[0]), keys[0], lines))
    if "action" in episode:
        actions = np.asarray(episode["action"]).reshape(len(episode["action"]), -1)
        lines = [
            (f"action {i}", actions[:, i], ACTION_COLORS[i % len(ACTION_COLORS)])
            for i in range(actions.shape[1])
        ]
        rows.append((label("action"), "action", lines))
    return rows


# ---------------------------------------------------------------------------------------------
# The learned against the true.

TRUE_DISTANCE_KEYS = ("barrier", "pred_cost")
"""What the true-distance view sets against the simulator's hazard distance, where present."""


def true_distance_pairs(
    episodes: Sequence[Mapping[str, np.ndarray]], key: str
) -> tuple[np.ndarray, np.ndarray]:
    """(true hazard distance, learned value) over the steps of the episodes that record both,
    steps with an unknown distance (NaN) left out."""
    distance, values = [], []
    for episode in episodes:
        if key in episode and "hazard_distance" in episode:
            distance.append(np.asarray(episode["hazard_distance"], dtype=float).reshape(-1))
            values.append(np.asarray(episode[key], dtype=float).reshape(-1))
    if not distance:
        return np.zeros(0), np.zeros(0)
    distance, values = np.concatenate(distance), np.concatenate(values)
    known = np.isfinite(distance) & np.isfinite(values)
    return distance[known], values[known]


def true_distance_correlation(
    episodes: Sequence[Mapping[str, np.ndarray]], key: str
) -> float | None:
    """Pearson correlation of a learned per-step value with the true hazard distance (None with
    fewer than 2 known steps or no variation). A right barrier correlates positively (far from
    hazards: safe, B > 0); a right predicted cost negatively."""
    distance, values = true_distance_pairs(episodes, key)
    if len(distance) < 2 or distance.std() == 0 or values.std() == 0:
        return None
    return float(np.corrcoef(distance, values)[0, 1])


def true_distance_figure(
    episodes: Sequence[Mapping[str, np.ndarray]], *, height: int = 360
) -> go.Figure:
    """The learned against the true: per step, the barrier B and the predicted cost (a panel
    each, where recorded) against the simulator's distance to the nearest hazard's edge (x = 0;
    negative inside), unsafe steps in red, with each panel's correlation in its title."""
    keys = [k for k in TRUE_DISTANCE_KEYS if len(true_distance_pairs(episodes, k)[0])]
    titles = [_correlation_title(episodes, k) for k in keys] or ["no true distance recorded"]
    figure = make_subplots(rows=1, cols=max(len(keys), 1), subplot_titles=titles)
    for col, key in enumerate(keys, start=1):
        distance, values = true_distance_pairs(episodes, key)
        unsafe = distance < 0
        for side, mask, color in (("outside", ~unsafe, SAFE), ("inside a hazard", unsafe, UNSAFE)):
            figure.add_scattergl(
                x=distance[mask], y=values[mask], mode="markers", name=side,
                marker={"color": color, "size": 5, "opacity": 0.6},
                legendgroup=side, showlegend=col == 1, row=1, col=col,
            )  # fmt: skip
        figure.add_vline(x=0, line={"dash": "dot", "color": REFERENCE}, row=1, col=col)
        truthful(figure, step_axis(key), values, row=1, col=col)
        figure.update_xaxes(title_text="true distance to the nearest hazard", row=1, col=col)
    return _layout(figure, "the learned against the true", height)


def _correlation_title(episodes: Sequence[Mapping[str, np.ndarray]], key: str) -> str:
    correlation = true_distance_correlation(episodes, key)
    shown = "n/a" if correlation is None else f"{correlation:+.2f}"
    return f"{label(key)}: correlation {shown}"
