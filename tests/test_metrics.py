"""Metric plugins and the confusion matrix, checked against scikit-learn on random label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from covseg import CLASS_NAMES
from covseg.core.errors import CovsegError
from covseg.core.registry import Registry, get_registry
from covseg.evaluation import metrics as metrics_module
from covseg.evaluation.confusion import confusion_matrix
from covseg.evaluation.metrics import compute_metrics
from covseg.plugins import MetricEntry, hookimpl

LABELS = [0, 1, 2, 3]


def random_maps(seed: int, probabilities=(0.7, 0.15, 0.1, 0.05), shape=(6, 40, 40)):
    """Truth and a prediction that agrees on about 60% of pixels, as int64 tensors."""
    generator = np.random.default_rng(seed)
    truth = generator.choice(4, size=shape, p=probabilities)
    noise = generator.choice(4, size=shape, p=probabilities)
    prediction = np.where(generator.random(shape) < 0.6, truth, noise)
    return torch.from_numpy(truth), torch.from_numpy(prediction)


def sklearn_reference(truth: torch.Tensor, prediction: torch.Tensor) -> dict[str, np.ndarray | float]:
    """Per-class IoU and Dice from scikit-learn; a class absent from truth and prediction gets NaN."""
    y_true, y_pred = truth.numpy().ravel(), prediction.numpy().ravel()
    absent = [label for label in LABELS if not ((y_true == label).any() or (y_pred == label).any())]
    iou = skm.jaccard_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    dice = skm.f1_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    iou[absent] = np.nan
    dice[absent] = np.nan
    return {
        "confusion": skm.confusion_matrix(y_true, y_pred, labels=LABELS),
        "iou": iou,
        "dice": dice,
        "accuracy": skm.accuracy_score(y_true, y_pred),
    }


def test_confusion_and_metrics_match_sklearn_on_random_label_maps():
    truth, prediction = random_maps(seed=1)
    reference = sklearn_reference(truth, prediction)
    confusion = confusion_matrix(prediction, truth, num_classes=4)
    assert confusion.dtype == torch.int64
    np.testing.assert_array_equal(confusion.numpy(), reference["confusion"])

    result = compute_metrics(confusion.numpy())
    for index, name in enumerate(CLASS_NAMES):
        assert result[f"iou/{name}"] == pytest.approx(reference["iou"][index], abs=1e-12)
        assert result[f"dice/{name}"] == pytest.approx(reference["dice"][index], abs=1e-12)
    assert result["miou"] == pytest.approx(reference["iou"].mean(), abs=1e-12)
    assert result["lesion_miou"] == pytest.approx(reference["iou"][1:].mean(), abs=1e-12)
    assert result["mean_lesion_dice"] == pytest.approx(reference["dice"][1:].mean(), abs=1e-12)
    assert result["pixel_accuracy"] == pytest.approx(reference["accuracy"], abs=1e-12)
    # Sanity: the prediction is informative but far from perfect, so these numbers mean something.
    assert 0.2 < result["lesion_miou"] < 0.8


def test_class_absent_from_prediction_and_target_is_left_out_of_the_means():
    truth, prediction = random_maps(seed=2, probabilities=(0.75, 0.15, 0.1, 0.0))
    assert not (truth == 3).any() and not (prediction == 3).any()
    reference = sklearn_reference(truth, prediction)

    result = compute_metrics(confusion_matrix(prediction, truth, 4).numpy())
    assert np.isnan(result["iou/effusion"]) and np.isnan(result["dice/effusion"])
    present = skm.jaccard_score(truth.numpy().ravel(), prediction.numpy().ravel(), labels=[0, 1, 2],
                                average="macro")
    assert result["iou/ground-glass"] == pytest.approx(reference["iou"][1], abs=1e-12)
    assert result["miou"] == pytest.approx(present, abs=1e-12)
    assert result["lesion_miou"] == pytest.approx(reference["iou"][1:3].mean(), abs=1e-12)
    assert result["mean_lesion_dice"] == pytest.approx(reference["dice"][1:3].mean(), abs=1e-12)


def test_class_missed_by_the_prediction_counts_as_zero_not_absent():
    truth = torch.tensor([[0, 0, 3, 3]])
    prediction = torch.tensor([[0, 0, 0, 0]])
    result = compute_metrics(confusion_matrix(prediction, truth, 4).numpy())
    assert result["iou/effusion"] == 0.0 and result["dice/effusion"] == 0.0
    assert result["iou/background"] == pytest.approx(0.5)
    assert result["miou"] == pytest.approx(0.25)  # background 0.5 and effusion 0; classes 1, 2 absent
    assert result["lesion_miou"] == 0.0
    assert result["pixel_accuracy"] == pytest.approx(0.5)


def test_no_lesion_anywhere_gives_nan_lesion_means_and_empty_confusion_gives_nan():
    only_background = compute_metrics(np.array([[10, 0, 0, 0]] + [[0, 0, 0, 0]] * 3, dtype=np.int64))
    assert only_background["miou"] == 1.0 and only_background["pixel_accuracy"] == 1.0
    assert np.isnan(only_background["lesion_miou"]) and np.isnan(only_background["mean_lesion_dice"])
    empty = compute_metrics(np.zeros((4, 4), dtype=np.int64))
    assert np.isnan(empty["miou"]) and np.isnan(empty["pixel_accuracy"])


def test_confusion_summed_over_batches_equals_one_computation_and_differs_from_batch_mean():
    truth, prediction = random_maps(seed=3, shape=(12, 32, 32))
    whole = confusion_matrix(prediction, truth, 4)
    summed = sum(confusion_matrix(prediction[i:i + 5], truth[i:i + 5], 4) for i in range(0, 12, 5))
    assert torch.equal(summed, whole)
    assert int(whole.sum()) == truth.numel()
    # A mean of per-batch mIoU is a different (wrong) number: the metrics must use the sum.
    batch_mean = np.mean([compute_metrics(confusion_matrix(prediction[i:i + 1], truth[i:i + 1], 4).numpy())
                          ["miou"] for i in range(12)])
    assert compute_metrics(whole.numpy())["miou"] != pytest.approx(batch_mean, abs=1e-6)


def test_confusion_accepts_any_integer_dtype_and_refuses_bad_labels():
    truth, prediction = random_maps(seed=4, shape=(2, 8, 8))
    expected = confusion_matrix(prediction, truth, 4)
    assert torch.equal(confusion_matrix(prediction.to(torch.uint8), truth.to(torch.int32), 4), expected)
    with pytest.raises(CovsegError, match=r"3 pixel\(s\) hold labels outside 0..3"):
        bad = truth.clone()
        bad[0, 0, :3] = 7
        confusion_matrix(prediction, bad, 4)
    with pytest.raises(CovsegError, match="prediction shape"):
        confusion_matrix(prediction[:1], truth, 4)


def test_other_class_counts_are_named_class_i():
    truth = torch.tensor([0, 1, 2, 2])
    prediction = torch.tensor([0, 1, 1, 2])
    result = compute_metrics(confusion_matrix(prediction, truth, 3).numpy())
    assert result["iou/class-2"] == pytest.approx(0.5)
    assert result["iou/class-1"] == pytest.approx(0.5)
    assert result["lesion_miou"] == pytest.approx(0.5)


def test_builtin_metrics_are_registered_through_the_entry_point():
    registry = get_registry()
    provided = {item.entry.name: item for item in registry.provided("metric")}
    builtin = {"miou", "lesion_miou", "pixel_accuracy", "iou", "dice", "mean_lesion_dice"}
    assert builtin <= set(provided)
    for name in builtin:
        assert provided[name].plugin.name == "segmentation"
        assert provided[name].plugin.module == "covseg_builtin.metrics.segmentation"
        assert provided[name].plugin.package == "covseg"


class EffusionRecallPlugin:
    """A third party's metric plugin: one scalar metric and one per-class mapping."""

    @hookimpl
    def covseg_metrics(self):
        return [
            MetricEntry("recall-effusion", lambda c: float(c[3, 3] / max(c[3].sum(), 1)),
                        "Recall of class 3."),
            MetricEntry("support", lambda c: {"lesion": int(c[1:].sum())}, "Lesion pixels in the truth."),
        ]


def test_a_third_party_metric_appears_in_compute_metrics(monkeypatch):
    registry = Registry()
    registry.register(EffusionRecallPlugin(), name="effusion-recall", package="covseg-effusion")
    monkeypatch.setattr(metrics_module, "get_registry", lambda: registry)
    truth, prediction = random_maps(seed=5)
    confusion = confusion_matrix(prediction, truth, 4).numpy()
    result = compute_metrics(confusion)
    y_true, y_pred = truth.numpy().ravel(), prediction.numpy().ravel()
    recall = skm.recall_score(y_true, y_pred, labels=[3], average="macro")
    assert result["recall-effusion"] == pytest.approx(recall)
    assert result["support/lesion"] == float((y_true > 0).sum())
    assert "miou" in result and "iou/effusion" in result  # the built-ins still run beside it
    scalars = [key for key in result if "/" not in key]
    assert list(result)[: len(scalars)] == scalars  # scalar metrics first, then per-key ones


def test_a_broken_metric_plugin_is_named_in_one_line():
    class Broken:
        @hookimpl
        def covseg_metrics(self):
            return [MetricEntry("broken", lambda c: 1 / 0, "Divides by zero.")]

    registry = Registry(entry_points=[])
    registry.register(Broken(), name="broken-plugin", package="covseg-broken")
    pattern = r"metric 'broken' of plugin covseg-broken .*ZeroDivisionError"
    with pytest.raises(CovsegError, match=pattern) as error:
        compute_metrics(np.eye(4, dtype=np.int64), registry=registry)
    assert "\n" not in str(error.value)


def test_a_metric_returning_text_and_a_bad_confusion_are_refused():
    class Stringly:
        @hookimpl
        def covseg_metrics(self):
            return [MetricEntry("stringly", lambda c: "high", "Returns text.")]

    registry = Registry(entry_points=[])
    registry.register(Stringly(), name="stringly-plugin")
    with pytest.raises(CovsegError, match=r"metric 'stringly' .* returned str"):
        compute_metrics(np.eye(4, dtype=np.int64), registry=registry)
    with pytest.raises(CovsegError, match="square"):
        compute_metrics(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(CovsegError, match="integer pixel counts"):
        compute_metrics(np.eye(4))
