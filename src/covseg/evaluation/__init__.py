"""Scoring segmentations: the confusion matrix (confusion.py), the metric plugins run on it
(metrics.py), model evaluation over a data loader (evaluate.py) and loading trained runs (runs.py)."""
