"""plots: the pictures a run shows in the MLflow UI, by topic.

Every function writes one file (PNG, or CSV / markdown where stated) to the
path it is given and returns that path:

==========  ==================================================================
module      pictures
==========  ==================================================================
grids       ``image_grid``: sampled images, upscaled, in a grid, and ``image_pairs``:
            pairs of images, one above the other, labelled (Pillow only)
renders     ``samples_beside_renders``: each sample above its nearest valid render
            with their RMS distance, and ``render_tolerance``: a render under
            noise of sigma 2, 4, 8 and a model's sample, each with its distance
maps        ``land_map``: the chapter's map, samples on land (green) and at sea
            (red), training points, the orange box and its points A, B, C
tables      ``parameter_table_plot`` (naive Bayes: P(value) per feature) and
            ``rows_table`` (a few rows as markdown, CSV or a PNG table)
comparison  ``comparison_plot``: every family on every dataset, one panel per
            (dataset, metric)
latent      ``latent_pictures``: a latent space coloured by the known factors,
            and a traversal for families that decode
deep        ``training_curves`` (``history_`` against the epoch) and
            ``denoising_strip`` (a diffusion model's chain from noise to a sample)
==========  ==================================================================

The numbers a picture prints come from small public helpers
(:func:`split_land_sea`, :func:`land_sea_counts`, :func:`chapter_points`,
:func:`comparison_panels`) so they can be tested apart from the drawing.
``land_map`` also stores its counts in the PNG's text chunks (key
``pmodel-counts``, JSON).

Drawing uses ``matplotlib.figure.Figure`` with an explicit Agg canvas, never
pyplot's global state, so plots can be made from several threads at once and
importing this package changes no backend.
"""

from pmodel.plots._common import BOX_COLOR, DPI, GRID_TITLE_HEIGHT, LAND_COLOR, SEA_COLOR
from pmodel.plots.comparison import comparison_panels, comparison_plot
from pmodel.plots.grids import image_grid, image_pairs
from pmodel.plots.maps import chapter_points, land_map, land_sea_counts, split_land_sea
from pmodel.plots.renders import render_tolerance, samples_beside_renders
from pmodel.plots.tables import parameter_table_plot, rows_table

__all__ = [
    "image_grid", "image_pairs", "samples_beside_renders", "render_tolerance",
    "land_map", "split_land_sea", "land_sea_counts", "chapter_points",
    "parameter_table_plot", "rows_table", "comparison_panels", "comparison_plot",
    "BOX_COLOR", "DPI", "GRID_TITLE_HEIGHT", "LAND_COLOR", "SEA_COLOR",
]
