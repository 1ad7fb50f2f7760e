"""Evaluation and understanding beside training: cross-validation, ensembles, calibration, error analysis
and classical baselines, all scored with the tasks' own metrics."""
