"""Reading one 2-D slice file (PNG, JPEG, TIFF, WebP, NPY or 2-D NIfTI): CT images and label masks.

Shared by the ``folder`` data set and by ``covseg predict``, so a slice is read for prediction
exactly as it was for training. Three layers:

- :func:`read_stored`: the stored array in display orientation (H, W) or (H, W, C) and what the
  file said about it (:class:`covseg.data.interpret.Storage`). Sizes from headers are checked
  before anything is decoded: at most :data:`MAX_SLICE_PIXELS` pixels (PIL decompression bombs
  included), NPY shapes that fit the file, one frame per file.
- :func:`read_image`: a CT slice, its intensities decided by
  :func:`covseg.data.interpret.interpret_intensities`.
- :func:`read_mask`: uint8 labels. Lossy files (JPEG, lossy WebP, JPEG-compressed TIFF) are
  refused: compression changes label values at region edges. Palette images give their indices,
  1-bit images black 0 / white 1 (white is 255 when ``mask_values`` lists 255 and not 1, as viewers
  show it), 16-bit images their values, one-hot arrays (H, W, C) or (C, H, W) (C classes) their argmax, and
  channel-first (1, H, W) arrays their only channel.
"""

from __future__ import annotations

import math
import struct
import tokenize
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from covseg.core.entries import MEDSEG_LABELS, LabelSet
from covseg.core.errors import CovsegError
from covseg.data.interpret import Intensities, IntensityChoice, Storage, interpret_intensities
from covseg.data.labels import NUM_CLASSES, one_hot_to_labels, to_labels
from covseg.data.nifti import is_nifti, read_slice
from covseg.files import one_line

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
"""Picture formats covseg decodes (by content, whatever the suffix says)."""
MAX_SLICE_PIXELS = 8192 * 8192
"""Most pixels one slice file may have (a CT slice is 512x512; this is 256 times that)."""
_PICTURE_MODES = {"1": "L", "LA": "L", "La": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "RGBa": "RGB",
                  "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_MASK_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB", "CMYK": "RGB",
               "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}  # "1", "P" and "PA" keep their values
_TIFF_LOSSY = {"jpeg": "JPEG-compressed TIFF", "tiff_jpeg": "JPEG-compressed TIFF",
               "webp": "WebP-compressed TIFF"}
_PICTURE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
                   zlib.error, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError)


def _webp_is_lossless(path: Path) -> bool:
    """Whether a WebP file's image is VP8L (lossless) rather than VP8 (lossy), from its RIFF chunks."""
    data = path.read_bytes()
    offset = 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if kind == b"VP8L":
            return True
        if kind == b"VP8 ":
            return False
        offset += 8 + size + (size & 1)
    return False


def _lossy(image: Image.Image, path: Path) -> str | None:
    if image.format in ("JPEG", "MPO"):
        return "JPEG"
    if image.format == "WEBP":
        return None if _webp_is_lossless(path) else "lossy WebP"
    if image.format == "TIFF":
        return _TIFF_LOSSY.get(str(image.info.get("compression")))
    return None


def _read_picture(path: Path, mask: bool) -> tuple[np.ndarray, Storage]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_SLICE_PIXELS:
                    raise CovsegError(f"{path} is {width}x{height} pixels, more than a slice covseg "
                                      f"reads ({MAX_SLICE_PIXELS:,} pixels)")
                frames = int(getattr(image, "n_frames", 1))
                if frames > 1:
                    raise CovsegError(f"{path} holds {frames} frames (a stack or an animation); covseg "
                                      "reads one slice per file")
                lossy = _lossy(image, path)
                image.load()
                file_format = image.format or "image"
                modes = _MASK_MODES if mask else _PICTURE_MODES
                if image.mode in modes:
                    image = image.convert(modes[image.mode])
                array = np.asarray(image)
                if mask and array.ndim == 3 and image.mode == "PA":
                    array = array[:, :, 0]  # the palette indices; alpha says nothing about labels
    except CovsegError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CovsegError(f"{path} is larger than a slice covseg reads ({MAX_SLICE_PIXELS:,} pixels): "
                          f"{one_line(error)}") from None
    except _PICTURE_ERRORS as error:
        raise CovsegError(f"{path} is not a readable image: {one_line(error)}") from None
    if array.ndim == 3 and array.shape[2] == 3 and (array == array[:, :, :1]).all():
        array = np.ascontiguousarray(array[:, :, 0])  # gray stored as RGB
    return array, Storage(file_format, array.dtype, None, lossy)


def _read_npy(path: Path, mask: bool) -> tuple[np.ndarray, Storage]:
    kinds = "uifb" if mask else "uif"
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"NPY format version {version[0]}.{version[1]} is not read")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, struct.error,
            tokenize.TokenError) as error:
        raise CovsegError(f"{path} is not a readable NPY file: {one_line(error)}") from None
    if dtype.hasobject or dtype.kind not in kinds or dtype == np.float16:
        expected = "integers, booleans or float32/float64" if mask else "integers or float32/float64"
        raise CovsegError(f"{path} holds {dtype} values: expected {expected}")
    if not 2 <= len(shape) <= 3:
        raise CovsegError(f"{path} holds an array of shape {tuple(shape)}: expected (H, W), (H, W, C) "
                          "or (1, H, W)")
    count = math.prod(shape)
    if count > MAX_SLICE_PIXELS * NUM_CLASSES:
        raise CovsegError(f"{path} holds an array of shape {tuple(shape)}, more than a slice covseg reads")
    size = path.stat().st_size
    if offset + count * dtype.itemsize > size:
        raise CovsegError(f"{path} is truncated: its header says {tuple(shape)} {dtype} "
                          f"({count * dtype.itemsize:,} bytes) but {size - offset:,} bytes follow")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CovsegError(f"{path} is not a readable NPY file: {one_line(error)}") from None
    return array, Storage("NPY", array.dtype)


def read_stored(path: Path, mask: bool = False) -> tuple[np.ndarray, Storage]:
    """The stored array of one slice file in display orientation, and what the file said.

    ``mask=True`` keeps palette indices and 1-bit values (bool) and allows boolean NPY files.
    Raises a one-line :class:`CovsegError` naming ``path`` for anything unreadable.
    """
    path = Path(path)
    if is_nifti(path):
        return read_slice(path)
    if not path.is_file():
        raise CovsegError(f"{path} does not exist")
    if path.suffix.lower() == ".npy":
        return _read_npy(path, mask)
    return _read_picture(path, mask)


def _drop_singleton_channel(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]  # channel-first (1, H, W)
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    return array


def read_image(path: Path, choice: IntensityChoice) -> Intensities:
    """One CT slice: (H, W) Hounsfield units or (H, W) / (H, W, 3) 8-bit values, as decided by
    :func:`covseg.data.interpret.interpret_intensities` with ``choice``.

    Raises a one-line :class:`CovsegError` naming ``path`` (unreadable file, wrong shape, values
    that cannot be what ``choice`` says, NaN without ``nan=air``).
    """
    array, storage = read_stored(path)
    array = _drop_singleton_channel(array)
    if array.ndim == 3 and array.shape[2] == 3:
        if storage.dtype != np.uint8 or choice.intensity == "hu" or choice.hu_offset is not None:
            raise CovsegError(f"{path} is a colour image of {storage.dtype} values: Hounsfield slices "
                              "have one channel, colour is read only as 8-bit (uint8)")
    elif array.ndim != 2:
        raise CovsegError(f"{path} is shaped {tuple(array.shape)}: expected (H, W) grayscale or "
                          "(H, W, 3) RGB")
    return interpret_intensities(array, storage, choice, str(path))


def read_mask(path: Path, mask_values: Sequence[float] | None = None,
              labels: LabelSet = MEDSEG_LABELS) -> np.ndarray:
    """uint8 (H, W) labels 0..len(labels)-1 of one mask file (encodings: see the module docstring).

    ``mask_values`` maps stored values to labels 0, 1, ... (:func:`covseg.data.labels.to_labels`);
    a value above the last class of ``labels`` is refused, as is a one-hot mask with another
    number of channels.
    Raises a one-line :class:`CovsegError` naming ``path`` with the true reason for a refusal.
    """
    path = Path(path)
    array, storage = read_stored(path, mask=True)
    if storage.lossy:
        raise CovsegError(
            f"{path} is stored with {storage.lossy} compression, which is lossy: it changes label "
            "values at region edges (a 1 can become 0 or 2), so the mask no longer holds what was "
            "drawn; save masks losslessly (PNG, TIFF, NPY or NIfTI)")
    if array.dtype == np.bool_:  # 1-bit: black 0, white 1, or 255 the way viewers show white
        white = 255 if mask_values is not None and 255 in mask_values and 1 not in mask_values else 1
        array = array.astype(np.uint8) * np.uint8(white)
    array = _drop_singleton_channel(array)
    if array.ndim == 2:
        return to_labels(array, str(path), mask_values, labels)
    if storage.format != "NPY" and array.shape[2] == 3:
        raise CovsegError(f"{path} is a colour (RGB) mask: masks hold label values in one channel")
    classes = len(labels)
    first, last = array.shape[0] == classes, array.shape[2] == classes
    if mask_values is not None and (first or last):
        raise CovsegError(f"{path} is a one-hot mask of shape {tuple(array.shape)}: mask_values does "
                          "not apply to it")
    if last and not first:
        return one_hot_to_labels(array, 2, str(path), labels)
    if first and not last:
        return one_hot_to_labels(array, 0, str(path), labels)
    channels = "are ambiguous as channels" if first and last else f"has {array.shape[2]} channels"
    raise CovsegError(f"{path}: a mask of shape {tuple(array.shape)} {channels}; masks are (H, W) "
                      f"label values, or one-hot (H, W, {classes}) / ({classes}, H, W)")
