"""Analyses beside the deep models: classical baselines scored with the same metrics."""
