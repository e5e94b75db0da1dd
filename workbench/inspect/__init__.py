"""Pure functions from run data to arrays and plotly figures, shared by the dashboard and the
notebook widgets: `projection` (latent maps, probes) and `figures`."""
