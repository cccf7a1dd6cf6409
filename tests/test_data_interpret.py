"""The one decision of what stored values mean (covseg.data.interpret), case by case, with the values."""

from __future__ import annotations

import numpy as np
import pytest

from covseg.core.errors import CovsegError
from covseg.data.interpret import (
    AIR_HU,
    IntensityChoice,
    Storage,
    interpret_intensities,
)

AUTO = IntensityChoice()
PREDICT = IntensityChoice(spelling="predict")


def _chest(shape=(16, 16)) -> np.ndarray:
    """HU with air, lung, soft tissue and bone: what any chest CT slice holds."""
    hu = np.full(shape, 40.0, np.float32)
    hu[:4] = -1000.0
    hu[4:8] = -850.0
    hu[-2:] = 700.0
    return hu


def _refusal(values, storage, choice=AUTO) -> str:
    with pytest.raises(CovsegError) as error:
        interpret_intensities(values, storage, choice, "scan.nii")
    message = str(error.value)
    assert "\n" not in message and message.startswith("scan.nii")
    return message


def test_uint8_storage_is_8bit_and_hu_storage_is_hu():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    decided = interpret_intensities(gray, Storage("PNG", np.dtype(np.uint8)), AUTO, "a.png")
    assert decided.kind == "uint8" and decided.values is gray
    assert decided.assumed == "8-bit grey levels /255 from uint8 PNG (uint8 as stored)"
    rgb = np.repeat(gray[..., None], 3, axis=2)  # a colour picture keeps its channels: say so
    assert (interpret_intensities(rgb, Storage("PNG", np.dtype(np.uint8)), AUTO, "a.png").assumed
            == "8-bit RGB levels /255 from uint8 PNG (uint8 as stored)")
    three_slices = interpret_intensities(rgb, Storage("NIfTI", np.dtype(np.uint8)), AUTO, "a.nii")
    assert three_slices.assumed.startswith("8-bit grey levels /255")  # a volume of 3 slices is no colour
    for dtype in (np.int16, np.float32, np.float64, np.int32):
        hu = _chest().astype(dtype)
        decided = interpret_intensities(hu, Storage("NIfTI", np.dtype(dtype)), AUTO, "a.nii")
        assert decided.kind == "hu" and decided.values.dtype == np.float32
        np.testing.assert_array_equal(decided.values, _chest())
        assert decided.assumed.startswith(f"Hounsfield units from {np.dtype(dtype).name} NIfTI")


def test_uint8_rescaled_by_its_header_is_judged_by_its_scaled_values():
    """nibabel's set_data_dtype(np.uint8) stores HU as uint8 with scl_slope/scl_inter: still HU."""
    hu = _chest().astype(np.float64)
    storage = Storage("NIfTI", np.dtype(np.uint8), (-4.305, 97.8))
    decided = interpret_intensities(hu, storage, AUTO, "a.nii")
    assert decided.kind == "hu"
    assert "uint8 NIfTI scaled by its header (slope -4.305, intercept 97.8)" in decided.assumed
    # The same stored bytes unscaled would be 8-bit: the header decides, not the dtype alone.
    assert interpret_intensities(np.zeros((4, 4), np.uint8), Storage("NIfTI", np.dtype(np.uint8)),
                                 AUTO, "b.nii").kind == "uint8"


def test_hu_plus_1024_is_refused_naming_the_offset_option_then_read_with_it():
    stored = (_chest() + 1024).astype(np.uint16)
    stored[0, 0] = 0  # -1024 padding outside the field of view
    storage = Storage("PNG", np.dtype(np.uint16))
    assert _refusal(stored, storage) == (
        "scan.nii: values 0..1724 (uint16 PNG) look like HU + 1024, the usual unsigned CT storage "
        "(nothing is below 0, but a chest CT holds air at -1000 HU); pass --dataset-option hu_offset=-1024")
    assert _refusal(stored, storage, PREDICT).endswith("pass --hu-offset -1024")
    decided = interpret_intensities(stored, storage, IntensityChoice(hu_offset=-1024), "scan.png")
    expected = _chest()
    expected[0, 0] = -1024
    assert decided.kind == "hu"
    np.testing.assert_array_equal(decided.values, expected)
    assert decided.assumed == ("Hounsfield units from uint16 PNG (value - 1024: "
                               "--dataset-option hu_offset=-1024)")
    int16_as_uint16 = (_chest() + 32768).astype(np.uint16)
    assert "look like HU + 32768, int16 stored as uint16" in _refusal(int16_as_uint16, storage)


def test_grey_levels_in_floats_are_refused_or_read_as_8bit_when_asked():
    picture = np.round(np.linspace(0, 255, 256)).reshape(16, 16).astype(np.float32)
    storage = Storage("NIfTI", np.dtype(np.float32))
    assert _refusal(picture, storage) == (
        "scan.nii: values 0..255 (float32 NIfTI) look like 8-bit grey levels (an exported picture), not "
        "Hounsfield units (a chest CT holds air at -1000 HU); pass --dataset-option intensity=8bit to divide "
        "them by 255")
    decided = interpret_intensities(picture, storage, IntensityChoice("8bit"), "a.nii")
    assert decided.kind == "uint8" and decided.values.dtype == np.uint8  # whole numbers: exactly uint8
    np.testing.assert_array_equal(decided.values, picture.astype(np.uint8))
    fractional = picture / 2 + 0.25
    kept = interpret_intensities(fractional, storage, IntensityChoice("8bit"), "a.nii").values
    assert kept.dtype == np.float32 and np.array_equal(kept, fractional)
    assert "are not 8-bit grey levels 0..255" in _refusal(_chest(), storage, IntensityChoice("8bit"))


def test_values_that_reach_no_air_are_not_hu_unless_said_so():
    z_scores = np.linspace(-1.5, 5.2, 256, dtype=np.float32).reshape(16, 16)
    message = _refusal(z_scores, Storage("NPY", np.dtype(np.float32)))
    assert message == (
        "scan.nii: values -1.5..5.2 (float32 NPY) have nothing at or below -500, so they are not chest CT "
        "in Hounsfield units (air -1000, lung about -850); pass --dataset-option intensity=8bit for grey "
        "levels 0..255, --dataset-option hu_offset=-N for HU + N, or --dataset-option intensity=hu if they "
        "are HU after all")
    told = interpret_intensities(z_scores, Storage("NPY", np.dtype(np.float32)), IntensityChoice("hu"), "x")
    assert told.kind == "hu" and told.assumed.endswith("(--dataset-option intensity=hu)")


def test_values_outside_ct_numbers_are_refused():
    wrong_scale = _chest() * 50  # e.g. a header slope 50 times too large
    assert _refusal(wrong_scale, Storage("NIfTI", np.dtype(np.float32))) == (
        "scan.nii: values -50000..35000 are outside the range of CT numbers (-32768..32767 HU), so they "
        "are not Hounsfield units")
    padded = _chest()
    padded[:2] = -32768  # int16-minimum padding outside the field of view is still CT
    read = interpret_intensities(padded, Storage("NIfTI", np.dtype(np.int16)), IntensityChoice(), "x")
    assert read.kind == "hu"
    huge = _chest()
    huge[0, 0] = 1e6
    assert "values -1000..1e+06 are outside" in _refusal(huge, Storage("NIfTI", np.dtype(np.float32)),
                                                          IntensityChoice("hu"))
    shifted = _chest()
    assert "after --hu-offset -40000 are outside" in _refusal(
        shifted, Storage("NIfTI", np.dtype(np.float32)),
        IntensityChoice(hu_offset=-40000, spelling="predict"))


def test_nan_is_refused_with_its_count_or_read_as_air_when_asked():
    hu = _chest()
    hu[0, :5] = np.nan
    hu[1, 0] = np.inf
    storage = Storage("NIfTI", np.dtype(np.float32))
    assert _refusal(hu, storage) == (
        "scan.nii: 5 NaN, 1 infinite of 256 values (e.g. padding outside the reconstruction circle); "
        "covseg will not guess what they hold: pass --dataset-option nan=air to read them as air (-1000 HU), "
        "or fix the file")
    assert "pass --nan air" in _refusal(hu, storage, PREDICT)
    decided = interpret_intensities(hu, storage, IntensityChoice(nan="air", spelling="predict"), "x")
    assert decided.replaced == 6 and np.isfinite(decided.values).all()
    expected = _chest()
    expected[0, :5] = AIR_HU
    expected[1, 0] = AIR_HU
    np.testing.assert_array_equal(decided.values, expected)
    assert decided.summary.endswith("; 6 NaN/infinite values read as air (-1000 HU, --nan air)")
    eight = np.full((4, 4), 100.0, np.float32)
    eight[0, 0] = np.nan
    as_air = interpret_intensities(eight, storage, IntensityChoice("8bit", nan="air"), "x")
    assert as_air.values[0, 0] == 0 and as_air.values[1, 1] == 100 and as_air.replaced == 1
    assert "all 16 values are NaN or infinite" in _refusal(np.full((4, 4), np.nan), storage)


def test_choices_are_checked_where_they_are_made():
    with pytest.raises(CovsegError, match="--dataset-option intensity=ct: expected one of auto, hu, 8bit"):
        IntensityChoice.from_options({"intensity": "ct"})
    with pytest.raises(CovsegError, match="option hu_offset=x: expected a number"):
        IntensityChoice.from_options({"hu_offset": "x"})
    with pytest.raises(CovsegError, match="--hu-offset -1024 and --intensity 8bit exclude each other"):
        IntensityChoice("8bit", -1024.0, spelling="predict")
    with pytest.raises(CovsegError, match="--nan zero: expected one of refuse, air"):
        IntensityChoice(nan="zero", spelling="predict")
    with pytest.raises(CovsegError, match="hu_offset=inf: expected a number between"):
        IntensityChoice.from_options({"hu_offset": "inf"})
    assert IntensityChoice.from_options({"hu_offset": "-1024", "nan": "air"}) == IntensityChoice(
        "auto", -1024.0, "air")
