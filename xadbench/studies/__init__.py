"""The paper's studies, each a function that builds a grid of ordinary jobs (`runner.JobSpec`,
with declared data transforms and extra metrics where a study needs them, `xadbench.steps`) and
runs it through `grid.run_grid`: one job id, one results store, one resume and one predictions
format for every run. Their tables and figures (`xadbench.reports`) read the run folder.

- `clever_hans`: the Clever Hans effect (sec. 4.3, Figure 8), with `watermark`;
- `oe_size`: heatmaps against the number of Outlier Exposure images (sec. 4.1, Figure 6);
- `sigma`: FCDD's heatmap upsampling σ (appendix B, Table 5);
- `receptive_field`: FCDD nets of growing receptive field (appendix A, Tables 3 and 4).
"""
