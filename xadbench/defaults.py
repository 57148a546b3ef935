"""Defaults shared by the library and the command line, in a module that imports nothing, so the
CLI can show them in `--help` without loading torch, scipy or matplotlib."""

#: Bootstrap resamples of the test images for percentile intervals.
RESAMPLES = 1000
#: The paper's heatmap colour map (FCDD, Liznerski et al. 2021, Fig. 1); --cmap takes any matplotlib name.
CMAP = "jet"
