"""Evaluation and understanding beside training: cross-validation, ensembles, calibration and classical
baselines, all scored with the tasks' own metrics. (Error analysis runs inside evaluation:
``foveal.engine.error_report`` with each task's ``error_analysis``.)"""
