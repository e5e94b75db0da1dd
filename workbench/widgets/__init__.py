"""Live notebook views of a run, drawn with the dashboard's own figures (`workbench.inspect`):
training curves, the latent map, barrier and cost along imagined rollouts, ensemble
disagreement, and a real episode step by step.

    from workbench import widgets
    board = widgets.Board("checkpoints/pointgoal1-barrier")   # any run directory, followed as it grows
    board                                                      # shows the views as tabs

    training = widgets.train_in_background(config, "runs/nb")   # train in this kernel, watched live
    training            # its board;  training.stop() ends it cleanly, training.wait() joins it

    widgets.episode_view(episode)        # one view on its own: a played episode, a snapshot ...

By job: `board` (the board, which follows its run directory through `workbench.runs.Run` like
every other viewer, and the plumbing that brings updates to the kernel's event loop), `views`
(one class per view), `display` (figures in widgets, and their HTML for a notebook read without a
kernel), `training` (training in a background thread, watched on a board).
"""

from workbench.widgets.board import Board, Inbox, RunFollower, map_coordinates
from workbench.widgets.display import FigureView, Shown, redraw, view_html
from workbench.widgets.training import Training, train_in_background
from workbench.widgets.views import (
    BoardData,
    CurvesView,
    DisagreementView,
    EpisodeView,
    ImaginationView,
    LatentMapView,
    episode_view,
    imagination_view,
    latent_map_view,
)

__all__ = [
    "Board",
    "BoardData",
    "CurvesView",
    "DisagreementView",
    "EpisodeView",
    "FigureView",
    "ImaginationView",
    "Inbox",
    "LatentMapView",
    "RunFollower",
    "Shown",
    "Training",
    "episode_view",
    "imagination_view",
    "latent_map_view",
    "map_coordinates",
    "redraw",
    "train_in_background",
    "view_html",
]
