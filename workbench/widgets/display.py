"""How a view reaches a notebook: a figure in an Output widget (`FigureView`, changed through
`redraw`), and a view as a notebook shows it, live beside its HTML (`Shown`, `view_html`)."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as ipw
import plotly.graph_objects as go

from workbench.inspect import figures


class FigureView(ipw.Output):
    """A plotly figure in an Output widget. Its widget state holds the figure (as plotly's JSON
    and as self-contained HTML that loads plotly.js from its CDN), not a copy of plotly.js as a
    `go.FigureWidget`'s does (5 MB each), so a saved notebook stays small and shows the figure
    without a kernel. `data` and `layout` are those of the figure shown."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.figure = go.Figure()

    @property
    def data(self) -> tuple:
        return self.figure.data

    @property
    def layout(self) -> go.Layout:
        return self.figure.layout

    def show(self, figure: go.Figure) -> None:
        """Show `figure` in place of the one shown (works from any callback on the loop)."""
        self.figure = figure
        self.outputs = (
            {
                "output_type": "display_data",
                "data": figures.figure_bundle(figure, image=False),
                "metadata": {},
            },
        )


def redraw(widget: FigureView, figure: go.Figure) -> None:
    """Make `widget` show `figure`."""
    widget.show(figure)


class Shown:
    """A view as a notebook shows it: the live widget, and below it (for a notebook read or
    exported without a kernel) what it shows, as images. `widget` is the view's widget."""

    def __init__(self, view: Any, title: str = ""):
        self.view, self.widget, self.title = view, view.widget, title

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        display(figures.saved_copy(view_html(self.view, self.title)), raw=True)


def view_html(view: Any, title: str = "") -> str:
    """A view's caption and figures as self-contained HTML (images: `figures.figure_html`)."""
    parts = [f"<h4>{html.escape(title)}</h4>"] if title else []
    caption = getattr(view, "caption", None)
    if caption is not None:
        parts.append(f"<p>{caption.value}</p>")
    parts += [figures.figure_html(figure) for figure in view.figures() if figure.data]
    return "\n".join(parts)
