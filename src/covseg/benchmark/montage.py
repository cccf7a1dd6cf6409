"""The same unseen slices as predicted by every model: picked once, predicted by each best.pt (or
ensemble): test slices when the benchmark has a test set, else validation slices."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation
from covseg.evaluation.evaluate import predict_labels
from covseg.evaluation.trained import load_trained_model

MONTAGE_SLICES = 4


@dataclass
class Montage:
    """``images`` (H, W, 3) in [0, 1] and ``truths`` (H, W) of the chosen slices, and each model's labels."""

    ids: list[str]
    images: list[np.ndarray]
    truths: list[np.ndarray]
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it is not in the montage


def choose_slices(slices: CTSlices, val_ids: list[str], count: int = MONTAGE_SLICES) -> list[str]:
    """The ``count`` slices of ``val_ids`` with the most lesion pixels (ties by id), in id order.

    Slices with lesions show the models' differences; a fixed rule keeps the montage comparable
    between reruns and benchmarks on the same data.
    """
    position = {name: index for index, name in enumerate(slices.ids)}
    masks = slices.masks or []
    lesion_pixels = {name: int(np.count_nonzero(masks[position[name]])) for name in val_ids}
    chosen = sorted(val_ids, key=lambda name: (-lesion_pixels[name], name))[:count]
    return sorted(chosen)


def _model_input(dataset: SliceDataset) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    pairs = [dataset[index] for index in range(len(dataset))]
    return [image for image, _ in pairs], [mask.numpy() for _, mask in pairs]


def build_montage(runs: dict[str, Path], slices: CTSlices, candidates: list[str], image_size: int | None,
                  device: torch.device, count: int = MONTAGE_SLICES) -> Montage:
    """Predict the chosen slices of ``candidates`` with each model's best.pt (``runs``: model -> run
    folder; a cross-validation folder predicts with its ensemble).

    The picture shows the slices in the default (lung) window; each model predicts them exactly as
    in its validation: its own normalisation, the benchmark's image size, one slice at a time (slices
    of native size may differ in size).
    """
    ids = choose_slices(slices, candidates, count)
    images, truths = _model_input(SliceDataset(slices, ids, Normalisation(), image_size=image_size))
    montage = Montage(ids, [image.permute(1, 2, 0).numpy() for image in images], truths)
    for model_name, run_dir in runs.items():
        try:
            trained = load_trained_model(run_dir, device=device)
        except CovsegError as error:  # one unreadable run must not cost the others their column
            montage.skipped[model_name] = str(error)
            continue
        model_view = SliceDataset(slices, ids, trained.normalisation, image_size=trained.image_size)
        inputs, _ = _model_input(model_view)
        with torch.no_grad():
            labels = [predict_labels(trained.model(image[None].to(device)))[0] for image in inputs]
        montage.predictions[model_name] = [label.cpu().numpy().astype(np.uint8) for label in labels]
    return montage
