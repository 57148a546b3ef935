"""Metrics beyond evaluator.py's point AUCs: counts over distinct values (counts), AUPRO (aupro),
the stratified image bootstrap (bootstrap) and DeLong's test (delong)."""
