"""Pictures a person can look at: label maps in colour, overlays, side-by-side panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Background transparent; ground-glass yellow, consolidation red, effusion blue.
CLASS_COLOURS = np.array([[0, 0, 0], [255, 215, 0], [230, 25, 75], [0, 130, 200]], dtype=np.uint8)


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """A model-input image (H, W) or (H, W, C) in [0, 1] as an 8-bit RGB picture."""
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] in (1, 3) else image[0]
    gray = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours onto the grayscale image where labels are not background."""
    rgb = to_gray_uint8(image).astype(np.float32)
    colours = CLASS_COLOURS[np.clip(labels, 0, len(CLASS_COLOURS) - 1)].astype(np.float32)
    lesion = (labels > 0)[..., None]
    blended = np.where(lesion, (1 - alpha) * rgb + alpha * colours, rgb)
    return blended.round().astype(np.uint8)


def side_by_side(image: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray) -> np.ndarray:
    """image | truth overlay | prediction overlay, separated by a thin white line."""
    panels = [to_gray_uint8(image)]
    if truth is not None:
        panels.append(overlay(image, truth))
    panels.append(overlay(image, prediction))
    height = panels[0].shape[0]
    gap = np.full((height, 2, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


def save_png(picture: np.ndarray, path: Path) -> None:
    """Write an RGB picture atomically."""
    from covseg.files import atomic_write

    atomic_write(Path(path), lambda handle: Image.fromarray(picture).save(handle, format="PNG"))
