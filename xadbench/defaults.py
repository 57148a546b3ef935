"""Defaults shared by the library and the command line, in a module that imports nothing, so the
CLI can show them in `--help` without loading torch, scipy or matplotlib."""

#: Bootstrap resamples of the test images for percentile intervals.
RESAMPLES = 1000
#: The heatmaps' colour map: perceptually uniform, so equal steps of a map look equal (the
#: paper's `jet`, Liznerski et al. 2021, Fig. 1, is --cmap jet; any matplotlib name works).
CMAP = "viridis"
