"""Scoring segmentations: the confusion matrix, whole-set and per slice (confusion.py), the metric
plugins run on it (metrics.py), model evaluation over a data loader (evaluate.py), percentile
bootstrap intervals over slices (bootstrap.py), scored sets and their per-slice confusions on disk
(scores.py), the mean-softmax ensemble of fold models (ensemble.py) and loading trained runs and
ensembles (trained.py)."""
