"""Reading one 2-D slice file (PNG, JPG, TIFF, NPY or 2-D NIfTI) into its stored array.

Shared by the ``folder`` data set and by ``covseg predict``, so that images are read for
prediction exactly as they were for training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from covseg.core.errors import CovsegError
from covseg.data.nifti import is_nifti, read_slice

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# PIL modes converted before reading: alpha dropped, palettes and 1-bit images expanded.
_IMAGE_MODES = {"1": "L", "LA": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "CMYK": "RGB", "YCbCr": "RGB",
                "I;16": "I", "I;16B": "I", "I;16L": "I"}


def read_pixels(path: Path, mask: bool = False) -> np.ndarray:
    """The stored array of one slice file: (H, W) or (H, W, 3), in display orientation."""
    if is_nifti(path):
        return read_slice(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise CovsegError(f"{path} is not a readable NPY file: {' '.join(str(error).split())}") from None
        if array.dtype.kind not in ("uifb" if mask else "uif") or array.dtype == np.float16:
            raise CovsegError(f"{path} holds {array.dtype} values: expected integers or float32/float64")
    else:
        try:
            with Image.open(path) as image:
                image.load()
                mode = "L" if mask and image.mode == "1" else image.mode
                keep = mask and mode in ("P", "L")  # palette masks: the indices are the labels
                if not keep and mode in _IMAGE_MODES:
                    image = image.convert(_IMAGE_MODES[mode])
                array = np.asarray(image)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise CovsegError(f"{path} is not a readable image: {' '.join(str(error).split())}") from None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3 and (array == array[:, :, :1]).all():
        array = np.ascontiguousarray(array[:, :, 0])  # gray stored as RGB
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3 and not mask):
        return array
    what = "a colour (RGB) mask: masks hold label values in one channel" if mask else (
        f"shaped {tuple(array.shape)}: expected (H, W) grayscale or (H, W, 3) RGB")
    raise CovsegError(f"{path} is {what}")
