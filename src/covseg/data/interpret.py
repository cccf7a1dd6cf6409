"""The one place that decides what a file's values mean: Hounsfield units or 8-bit grey levels.

Every reader of CT intensities (the ``folder`` and ``medseg`` data sets, ``covseg data info``,
training, evaluation and ``covseg predict``) hands :func:`interpret_intensities` the array it read
(after the header's own scaling, e.g. NIfTI ``scl_slope``/``scl_inter``), what the file said about
it (:class:`Storage`) and the user's explicit choice (:class:`IntensityChoice`), so one file means
the same everywhere. The decision, without an explicit choice:

1. Stored as uint8 and not rescaled by a header: 8-bit grey levels (a picture: PNG, JPEG, ...).
2. Anything else is taken as HU only if it can be chest CT in HU: a chest slice always holds air
   (-1000 HU) or lung (about -850 HU), so the lowest value must be at or below ``-500`` HU, and
   every value must lie in :data:`HU_LIMITS`. Values with no voxel below 0 are refused with what
   they look like (8-bit grey levels, HU + 1024 unsigned storage, ...) and the option to pass.
3. NaN and infinite values are refused, or read as air behind the ``nan=air`` option.

Explicit choices, with the same names as dataset options (``--dataset-option intensity=hu``) and
``covseg predict`` options (``--intensity hu``): ``intensity`` = ``hu`` | ``8bit``, ``hu_offset``
(HU = value + offset, e.g. -1024) and ``nan`` = ``refuse`` | ``air``. What was assumed is returned
as one line (:attr:`Intensities.assumed`) for ``covseg data info`` and the prediction report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from covseg.core.errors import CovsegError
from covseg.data.intensity import Intensity
from covseg.data.options import option_name

AIR_HU = -1000.0
"""Air by the definition of the Hounsfield scale; what ``nan=air`` puts in place of NaN in HU data."""
AIR_8BIT = 0
"""Black, what ``nan=air`` puts in place of NaN in 8-bit data (air is black in every CT window)."""
HU_LIMITS = (-32768.0, 32767.0)
"""CT numbers covseg accepts: the int16 range. Scanners pad outside the field of view with -1024,
-2048, -3024 (GE) or the int16 minimum -32768, and store 12-bit (-1024..3071) or extended 16-bit
scales (metal up to about +30710); values beyond these bounds are no CT numbers (e.g. a wrong
header scaling). Padding below air needs no special case: every HU window clips it to its floor."""
CHEST_AIR_HU = -500.0
"""A chest CT slice or volume in HU reaches at least this low: it holds air (-1000) or lung (-850)."""
USUAL_OFFSETS = (1024, 32768)
"""Offsets that unsigned storage adds to HU: DICOM's usual rescale intercept -1024, and 32768
(int16 stored as uint16). Offered in messages, never applied without ``hu_offset``."""

INTENSITY_CHOICES = ("auto", "hu", "8bit")
NAN_CHOICES = ("refuse", "air")
OPTION_HELP: dict[str, str] = {
    "intensity": "auto (default: uint8 files are 8-bit, others must look like chest CT in HU), "
    "hu, or 8bit (grey levels 0..255, divided by 255)",
    "hu_offset": "HU = stored value + offset, e.g. -1024 for unsigned CT storage (implies intensity=hu)",
    "nan": "refuse (default) or air: read NaN/infinite voxels as air (-1000 HU; 0 in 8-bit data)",
}
"""The intensity options every CT reader takes; dataset options and predict options share them."""


@dataclass(frozen=True)
class Storage:
    """What a file said about its values.

    ``format``: e.g. ``"NIfTI"``, ``"PNG"``, ``"NPY"``; ``dtype``: the stored data type (before
    scaling); ``scaling``: (slope, intercept) the reader applied from the header, None when none
    (identity); ``lossy``: the name of a lossy compression the file used (``"JPEG"``), else None.
    """

    format: str
    dtype: np.dtype
    scaling: tuple[float, float] | None = None
    lossy: str | None = None

    def describe(self) -> str:
        """E.g. ``"int16 NIfTI scaled by its header (slope 1, intercept -1024)"``."""
        text = f"{np.dtype(self.dtype).name} {self.format}"
        if self.scaling is not None:
            slope, inter = self.scaling
            text += f" scaled by its header (slope {slope:.6g}, intercept {inter:.6g})"
        return text


@dataclass(frozen=True)
class IntensityChoice:
    """The user's explicit choice; ``spelling`` says how messages name the options.

    ``intensity``: ``"auto"``, ``"hu"`` or ``"8bit"``; ``hu_offset``: HU = value + offset (implies
    ``"hu"``); ``nan``: ``"refuse"`` or ``"air"``; ``spelling``: ``"dataset"`` (``--dataset-option
    intensity=hu``) or ``"predict"`` (``--intensity hu``).
    """

    intensity: Literal["auto", "hu", "8bit"] = "auto"
    hu_offset: float | None = None
    nan: Literal["refuse", "air"] = "refuse"
    spelling: Literal["dataset", "predict"] = "dataset"

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_CHOICES:
            raise CovsegError(f"{self.spell('intensity', self.intensity)}: expected one of "
                              f"{', '.join(INTENSITY_CHOICES)}")
        if self.nan not in NAN_CHOICES:
            raise CovsegError(f"{self.spell('nan', self.nan)}: expected one of {', '.join(NAN_CHOICES)}")
        if self.hu_offset is not None:
            if not (math.isfinite(self.hu_offset) and abs(self.hu_offset) <= 65536):
                raise CovsegError(f"{self.spell('hu_offset', self.hu_offset)}: expected a number "
                                  "between -65536 and 65536, e.g. -1024")
            if self.intensity == "8bit":
                raise CovsegError(f"{self.spell('hu_offset', _number(self.hu_offset))} and "
                                  f"{self.spell('intensity', '8bit')} exclude each other: an offset "
                                  "makes Hounsfield units")

    def spell(self, name: str, value: object) -> str:
        """How the user writes option ``name`` with ``value`` where this choice came from."""
        if self.spelling == "predict":
            return f"--{name.replace('_', '-')} {value}"
        return f"{option_name()} {name}={value}"

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> IntensityChoice:
        """From dataset options (strings): ``intensity``, ``hu_offset``, ``nan``; others are ignored."""
        offset = options.get("hu_offset")
        value = None
        if offset is not None:
            try:
                value = float(offset)
            except ValueError:
                raise CovsegError(f"option hu_offset={offset}: expected a number, e.g. -1024") from None
        return cls(options.get("intensity", "auto"), value, options.get("nan", "refuse"))


@dataclass(frozen=True)
class Intensities:
    """What :func:`interpret_intensities` decided.

    ``kind``: ``"hu"`` (``values`` float32 Hounsfield units) or ``"uint8"`` (``values`` uint8, or
    float32 when the file held non-integer grey levels, all in 0..255), same shape as the input;
    ``assumed``: one line saying what was assumed and why; ``replaced``: NaN/infinite values read as
    air (``nan=air``).
    """

    kind: Intensity
    values: np.ndarray
    assumed: str
    replaced: int = 0
    nan_option: str = "nan=air"

    @property
    def summary(self) -> str:
        """:attr:`assumed` and, when there were any, how many NaN/infinite values became air."""
        if not self.replaced:
            return self.assumed
        air = f"{AIR_HU:g} HU" if self.kind == "hu" else f"{AIR_8BIT} in 8-bit data"
        return f"{self.assumed}; {self.replaced:,} NaN/infinite values read as air ({air}, {self.nan_option})"


def _number(value: float) -> str:
    return f"{value:.6g}"


def _range(low: float, high: float) -> str:
    return f"values {_number(low)}..{_number(high)}"


def _hu_bounds(low: float, high: float, where: str, how: str) -> None:
    if low < HU_LIMITS[0] or high > HU_LIMITS[1]:
        raise CovsegError(
            f"{where}: {_range(low, high)}{how} are outside the range of CT numbers "
            f"({HU_LIMITS[0]:g}..{HU_LIMITS[1]:g} HU), so they are not Hounsfield units"
        )


def _not_hu(low: float, high: float, where: str, storage: Storage, choice: IntensityChoice) -> CovsegError:
    """The refusal of values that cannot be chest CT in HU, naming what they look like."""
    eight_bit = choice.spell("intensity", "8bit")
    said_hu = choice.spell("intensity", "hu")
    values = f"{where}: {_range(low, high)} ({storage.describe()})"
    if low >= 0 and high <= 255:
        return CovsegError(
            f"{values} look like 8-bit grey levels (an exported picture), not Hounsfield units "
            f"(a chest CT holds air at -1000 HU); pass {eight_bit} to divide them by 255"
        )
    for offset in USUAL_OFFSETS if low >= 0 else ():
        hu_low, hu_high = low - offset, high - offset
        if HU_LIMITS[0] <= hu_low <= CHEST_AIR_HU and hu_high <= HU_LIMITS[1]:
            usual = "the usual unsigned CT storage" if offset == 1024 else "int16 stored as uint16"
            return CovsegError(
                f"{values} look like HU + {offset}, {usual} (nothing is below 0, but a chest CT "
                f"holds air at -1000 HU); pass {choice.spell('hu_offset', -offset)}"
            )
    return CovsegError(
        f"{values} have nothing at or below {CHEST_AIR_HU:g}, so they are not chest CT in "
        f"Hounsfield units (air -1000, lung about -850); pass {eight_bit} for grey levels 0..255, "
        f"{choice.spell('hu_offset', '-N')} for HU + N, or {said_hu} if they are HU after all"
    )


def _non_finite(values: np.ndarray, where: str, choice: IntensityChoice) -> tuple[np.ndarray | None, int]:
    if values.dtype.kind != "f":
        return None, 0
    finite = np.isfinite(values)
    bad = int(finite.size - np.count_nonzero(finite))
    if bad == 0:
        return None, 0
    if bad == values.size:
        raise CovsegError(f"{where}: all {values.size:,} values are NaN or infinite; there is no image")
    if choice.nan != "air":
        nan = int(np.count_nonzero(np.isnan(values)))
        what = ", ".join(part for part in (f"{nan:,} NaN" if nan else "",
                                           f"{bad - nan:,} infinite" if bad > nan else "") if part)
        raise CovsegError(
            f"{where}: {what} of {values.size:,} values (e.g. padding outside the reconstruction "
            f"circle); covseg will not guess what they hold: pass {choice.spell('nan', 'air')} to read "
            f"them as air ({AIR_HU:g} HU), or fix the file"
        )
    return finite, bad


def interpret_intensities(
    values: np.ndarray, storage: Storage, choice: IntensityChoice, where: str
) -> Intensities:
    """Decide whether ``values`` are Hounsfield units or 8-bit grey levels (see the module docstring).

    ``values``: any shape (a slice (H, W), an RGB slice (H, W, 3) or a volume), integer or float,
    after the header's scaling; ``where`` names the file in messages. Returns float32 HU (after
    ``hu_offset``) or 8-bit values, NaN replaced by air only under ``nan=air``. Raises a one-line
    :class:`CovsegError` naming the file, what the values look like and the option to pass.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "uifb" or values.size == 0:
        raise CovsegError(f"{where}: holds {values.size} values of type {values.dtype}; expected numbers")
    finite, replaced = _non_finite(values, where, choice)
    shown = values[finite] if finite is not None else values
    low, high = float(shown.min()), float(shown.max())

    if choice.intensity == "8bit" or (
        choice.intensity == "auto" and choice.hu_offset is None
        and storage.dtype == np.uint8 and storage.scaling is None
    ):
        if low < 0 or high > 255:
            raise CovsegError(f"{where}: {_range(low, high)} ({storage.describe()}) are not 8-bit grey "
                              f"levels 0..255 ({choice.spell('intensity', '8bit')})")
        how = choice.spell("intensity", "8bit") if choice.intensity == "8bit" else "uint8 as stored"
        if values.dtype == np.uint8:
            result = values
        else:
            result = values.astype(np.float32)
            if finite is not None:
                result[~finite] = AIR_8BIT
            if np.array_equal(result, np.round(result)):
                result = result.astype(np.uint8)
        # A picture's (H, W, 3) is colour; a volume's last axis is its slices, whatever their count.
        volume = storage.format.startswith(("NIfTI", "NPY", "DICOM"))
        colour = not volume and result.ndim == 3 and result.shape[-1] == 3
        levels = "8-bit RGB levels" if colour else "8-bit grey levels"
        return Intensities("uint8", result, f"{levels} /255 from {storage.describe()} ({how})",
                           replaced, choice.spell("nan", "air"))

    hu = values.astype(np.float32)
    if choice.hu_offset is not None:
        hu += np.float32(choice.hu_offset)
        low, high = low + choice.hu_offset, high + choice.hu_offset
        how = f"value {'+' if choice.hu_offset >= 0 else '-'} {abs(choice.hu_offset):g}: " \
              f"{choice.spell('hu_offset', _number(choice.hu_offset))}"
        _hu_bounds(low, high, where, f" after {choice.spell('hu_offset', _number(choice.hu_offset))}")
    elif choice.intensity == "hu":
        how = choice.spell("intensity", "hu")
        _hu_bounds(low, high, where, "")
    else:
        how = "values reach air/lung, as chest CT in HU does"
        if low > CHEST_AIR_HU:
            raise _not_hu(low, high, where, storage, choice)
        _hu_bounds(low, high, where, "")
    if finite is not None:
        hu[~finite] = AIR_HU
    return Intensities("hu", hu, f"Hounsfield units from {storage.describe()} ({how})", replaced,
                       choice.spell("nan", "air"))
