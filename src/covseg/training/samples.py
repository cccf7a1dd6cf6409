"""The few validation slices ``covseg_epoch_end`` hands to plugins, predicted only when one asks.

The slices are fixed for the run (the validation slices with the most lesion pixels, so that there
is something to see, and the same every epoch, so that epochs compare). Nothing runs until a plugin
calls :meth:`EpochSamples.predict`; then the epoch's model predicts them once and every later
caller of that epoch gets the same records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from covseg.core.entries import CTSlices, SlicePrediction
from covseg.core.errors import CovsegError
from covseg.data.dataset import SliceDataset
from covseg.evaluation.evaluate import predict_labels
from covseg.training.loop import StepSettings

SAMPLE_SLICES = 4
"""Validation slices shown per epoch."""


def choose_sample_ids(
    slices: CTSlices, val_ids: Sequence[str], count: int = SAMPLE_SLICES
) -> tuple[str, ...]:
    """Up to ``count`` validation ids with the most lesion (non-background) pixels, in split order."""
    index = {slice_id: position for position, slice_id in enumerate(slices.ids)}
    masks = slices.masks or []
    lesion = {slice_id: int(np.count_nonzero(masks[index[slice_id]])) if masks else 0 for slice_id in val_ids}
    # sorted() is stable: equal lesion counts keep the split's order.
    chosen = set(sorted(val_ids, key=lambda slice_id: -lesion[slice_id])[:count])
    return tuple(slice_id for slice_id in val_ids if slice_id in chosen)


class EpochSamples:
    """:class:`~covseg.core.entries.ValidationSamples` of one epoch (see the module docstring).

    ``dataset`` yields the chosen slices exactly as validation sees them (normalised, resized, not
    augmented). After :meth:`close` (the end of the epoch's hook calls) ``predict`` refuses: the
    model has moved on.
    """

    def __init__(self, ids: tuple[str, ...], dataset: SliceDataset, model: torch.nn.Module,
                 settings: StepSettings, epoch: int):
        self._ids = ids
        self.dataset = dataset
        self.model = model
        self.settings = settings
        self.epoch = epoch
        self._predictions: list[SlicePrediction] | None = None
        self._closed = False

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def predict(self) -> list[SlicePrediction]:
        """Image (first input channel, [0, 1]), truth and prediction of each slice, read-only arrays."""
        if self._closed:
            raise CovsegError(f"the validation samples of epoch {self.epoch} are gone; call predict() "
                              "during covseg_epoch_end")
        if self._predictions is None:
            self._predictions = self._run()
        return list(self._predictions)

    def close(self) -> None:
        self._closed = True
        self.model = None  # type: ignore[assignment]

    def _run(self) -> list[SlicePrediction]:
        model, settings = self.model, self.settings
        was_training = model.training
        model.eval()
        records = []
        try:
            # One slice at a time: native-size slices may differ in size.
            with torch.no_grad():
                for slice_id, (image, mask) in zip(self._ids, self.dataset, strict=True):
                    batch, _ = settings.to_device(image[None], mask[None])
                    with settings.autocast():
                        logits = model(batch)
                    prediction = predict_labels(logits)[0].to("cpu", torch.uint8).numpy()
                    records.append(SlicePrediction(
                        slice_id=slice_id,
                        image=_read_only(image[0].float().clamp(0, 1).numpy()),
                        truth=_read_only(mask.numpy().astype(np.uint8)),
                        prediction=_read_only(prediction),
                    ))
        finally:
            model.train(was_training)
        return records


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
