"""Optional built-in algorithms: shipped with Skyline and selectable by name, but not part of
the default nine-algorithm ensemble (registry.OPTIONAL_BUILTINS, not DEFAULT_ALGORITHMS), so
adding them changes no default decision.

- abs_stddev_from_median: the last value is more than 3 sigma from the median (vectorised).
- spectral_residual: the tail stands out of the series' saliency map (Ren et al. 2019;
  vectorised, one rfft per distinct row length).
- isolation_forest: the last value is isolated quickly by a seeded scikit-learn forest (costly:
  one forest per row).
- mstl: the last value is far from what an MSTL decomposition of the history expects (costly:
  one statsmodels decomposition per row; needs more than two seasons of history).

The two costly ones import their library on first use, so importing skyline.algorithms does
not pay for scikit-learn.
"""
