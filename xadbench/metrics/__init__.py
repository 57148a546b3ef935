"""Metrics beyond evaluator.py's point AUCs: counts over distinct values (counts), AUPRO (aupro),
pixel F1-max (f1max), the stratified image bootstrap (bootstrap), DeLong's test (delong) and the
registry that declares every metric once (registry)."""
