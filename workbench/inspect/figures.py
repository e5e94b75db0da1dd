"""Plotly figures of a run, shared by the dashboard (`app/`) and the notebook widgets.

Pure functions: arrays and metric records in, a `go.Figure` out; nothing here reads files or
knows about Streamlit. One figure per concept:

    curves(records_by_run, key)        a metric against env steps, several runs overlaid
    latent_map(coords, values, name)    the UMAP of a snapshot's latents, coloured by one quantity
    imagination_figure(snapshot, i)     barrier, predicted cost, disagreement along imagined rollouts
    frame_strip(frames, labels)         frames side by side (decoded imagination, frame vs recon)
    episode_figure(episode, t)          a real episode's per-step values, with a marker at step t

Helpers that choose what to draw: `metric_keys`, `metric_groups`, `color_choices`, `enlarge`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

SAFE, UNSAFE = "#1f77b4", "#d62728"
BAND = "rgba(120, 120, 120, 0.25)"
RUN_COLORS = qualitative.Plotly
NOT_METRICS = {"kind", "step", "time", "update", "episode"}  # counters, not measurements


def _layout(figure: go.Figure, title: str, height: int) -> go.Figure:
    figure.update_layout(
        title=title, height=height, margin={"l": 50, "r": 20, "t": 50, "b": 40}, hovermode="closest"
    )
    return figure


# ---------------------------------------------------------------------------------------------
# Metric curves.


def metric_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    """The numeric metrics present in some record (not its kind, step, time or counters), sorted."""
    keys = {
        key
        for record in records
        for key, value in record.items()
        if key not in NOT_METRICS and _is_number(value)
    }
    return sorted(keys)


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
) -> go.Figure:
    """One metric against env steps, a line per run (the runs' order fixes their colours).
    `smooth` > 1 averages each point with the `smooth - 1` before it."""
    figure = go.Figure()
    for index, (name, records) in enumerate(records_by_run.items()):
        steps, values = _series(records, key)
        figure.add_scatter(
            x=steps,
            y=_trailing_mean(values, smooth),
            name=name,
            mode="lines+markers" if len(steps) < 30 else "lines",
            line={"color": RUN_COLORS[index % len(RUN_COLORS)]},
        )
    figure.update_layout(xaxis_title="env steps", showlegend=len(records_by_run) > 1)
    return _layout(figure, key, height)


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

# What a snapshot's latents can be coloured by: label -> snapshot key (used if present).
COLORINGS = {
    "safety label": "unsafe",
    "barrier value": "barrier",
    "disagreement": "disagreement",
    "cost": "cost",
    "predicted cost": "pred_cost",
    "time": "time",
    "value": "value",
    "cost value": "cost_value",
}


def color_choices(snapshot: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The colourings this snapshot supports, label -> values [M]."""
    return {label: snapshot[key] for label, key in COLORINGS.items() if key in snapshot}


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
        for label, mask, color in (("safe", ~values, SAFE), ("unsafe", values, UNSAFE)):
            figure.add_trace(_points(coords[mask], index[mask], label, {"color": color}))
    else:
        scale = {"colorscale": "RdBu", "cmid": 0.0} if name == "barrier value" else {}
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

# Rows of the imagination figure: snapshot key -> title (rows whose key is missing are left out).
IMAGINATION_ROWS = {
    "imag_barrier": "barrier B(z)",
    "imag_cost": "predicted cost",
    "imag_disagreement": "disagreement",
    "imag_reward": "predicted reward",
}


def imagination_figure(snapshot: Mapping[str, np.ndarray], rollout: int) -> go.Figure:
    """Along imagined rollouts: one row per quantity, the chosen rollout as a line over the
    10-90th percentile band of all rollouts of the snapshot. The barrier row shows B = 0 (the
    boundary between states the barrier calls safe and unsafe). Disagreement belongs to the
    transition t -> t+1 and is drawn between the two steps."""
    rows = {key: title for key, title in IMAGINATION_ROWS.items() if key in snapshot}
    figure = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=list(rows.values())
    )
    for row, key in enumerate(rows, start=1):
        values = np.asarray(snapshot[key], dtype=float)  # [T, N]
        steps = np.arange(len(values)) + (0.5 if key == "imag_disagreement" else 0.0)
        low, high = np.percentile(values, [10, 90], axis=1)
        figure.add_scatter(
            x=np.concatenate([steps, steps[::-1]]),
            y=np.concatenate([high, low[::-1]]),
            mode="lines",
            fill="toself",
            fillcolor=BAND,
            line={"width": 0},
            hoverinfo="skip",
            name="10-90% of rollouts",
            showlegend=row == 1,
            legendgroup="band",
            row=row,
            col=1,
        )
        figure.add_scatter(
            x=steps,
            y=values[:, rollout],
            mode="lines+markers",
            line={"color": UNSAFE if key == "imag_cost" else SAFE},
            name=f"rollout {rollout}",
            showlegend=row == 1,
            legendgroup="rollout",
            row=row,
            col=1,
        )
        if key == "imag_barrier":
            figure.add_hline(y=0, line={"dash": "dash", "color": "black"}, row=row, col=1)
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
    figure = go.Figure(go.Image(z=strip, hoverinfo="skip"))
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


def enlarge(frame: np.ndarray, factor: int = 4) -> np.ndarray:
    """A frame [H, W, 3] scaled up by repeating pixels (crisp, unlike a browser's smoothing)."""
    return np.repeat(np.repeat(np.asarray(frame), factor, axis=0), factor, axis=1)


# ---------------------------------------------------------------------------------------------
# A real episode, step by step.


def episode_figure(episode: Mapping[str, np.ndarray], t: int) -> go.Figure:
    """A real episode's per-step values (cost and predicted cost; barrier with B = 0; value and
    cost value; ensemble disagreement; the action's components) with a line at step t."""
    rows = _episode_rows(episode)
    figure = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=[title for title, _ in rows]
    )
    for row, (title, lines) in enumerate(rows, start=1):
        for name, values, color in lines:
            figure.add_scatter(
                y=values,
                name=name,
                mode="lines",
                line={"color": color, "shape": "hv" if name == "cost" else "linear"},
                legendgroup=title,
                row=row,
                col=1,
            )
        if title.startswith("barrier"):
            figure.add_hline(y=0, line={"dash": "dash", "color": "black"}, row=row, col=1)
    figure.add_vline(x=t, line={"color": "black", "width": 1}, row="all", col=1)
    figure.update_xaxes(title_text="step", row=len(rows), col=1)
    return _layout(figure, f"step {t} of {len(episode['frame']) - 1}", 150 * len(rows) + 80)


def _episode_rows(episode: Mapping[str, np.ndarray]) -> list[tuple[str, list[tuple]]]:
    """(title, [(name, values, color)]) per row, for the keys this episode has."""
    candidates = [
        ("cost", [("cost", "cost", UNSAFE), ("predicted cost", "pred_cost", "#ff7f0e")]),
        ("barrier B(z)", [("barrier", "barrier", SAFE)]),
        ("values", [("value", "value", SAFE), ("cost value", "cost_value", UNSAFE)]),
        ("disagreement", [("disagreement", "disagreement", "#9467bd")]),
    ]
    rows = []
    for title, wanted in candidates:
        lines = [(name, episode[key], color) for name, key, color in wanted if key in episode]
        if lines:
            rows.append((title, lines))
    if "action" in episode:
        actions = np.asarray(episode["action"]).reshape(len(episode["action"]), -1)
        rows.append(
            (
                "action",
                [(f"action {i}", actions[:, i], RUN_COLORS[i]) for i in range(actions.shape[1])],
            )
        )
    return rows
