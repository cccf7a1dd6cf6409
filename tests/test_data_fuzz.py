"""Fuzzing the readers: whatever the bytes, covseg raises only CovsegError (one line), never another
exception, a huge allocation or a hang.

Inputs: random bytes, truncations and byte mutations of valid files, NIfTI header fields set to
arbitrary values (dimensions, data type, voxel sizes, scaling, offsets, ...), and arrays of every
dtype and many shapes saved as NPY and NIfTI. Each file goes through every reader a user can reach:
CT volumes and slices, label volumes, masks, and ``covseg predict``'s case reader. Hypothesis runs
derandomized without an example database, so CI sees the same examples every time.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from covseg.core.errors import CovsegError
from covseg.data.interpret import IntensityChoice
from covseg.data.nifti import read_ct_volume, read_label_volume
from covseg.data.slice_files import read_image, read_mask
from covseg.inference.inputs import Case, read_case

EXAMPLES = int(os.environ.get("COVSEG_FUZZ_EXAMPLES", "120"))  # more for a long local run
FUZZ = settings(database=None, derandomize=True, max_examples=EXAMPLES, deadline=10_000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CHOICES = (IntensityChoice(), IntensityChoice("hu", nan="air"), IntensityChoice("8bit"),
           IntensityChoice(hu_offset=-1024))
NIFTI_FIELDS = ("sizeof_hdr", "dim", "datatype", "bitpix", "pixdim", "vox_offset", "scl_slope", "scl_inter",
                "xyzt_units", "qform_code", "sform_code", "quatern_b", "srow_x", "intent_code", "magic")


def _readers_only_raise_covseg_errors(path: Path) -> None:
    """Every reader of ``path`` either returns or raises CovsegError with a one-line message."""
    calls = [lambda choice=choice: read_image(path, choice) for choice in CHOICES]
    calls.append(lambda: read_mask(path))
    calls.append(lambda: read_mask(path, (0.0, 255.0)))
    if path.name.endswith((".nii", ".nii.gz")):
        calls += [lambda choice=choice: read_ct_volume(path, choice) for choice in CHOICES[:2]]
        calls.append(lambda: read_label_volume(path))
        calls.append(lambda: read_case(Case("fuzz", path, "volume")))
    elif path.suffix != ".npy":
        calls.append(lambda: read_case(Case("fuzz", path, "image")))
    for call in calls:
        try:
            call()
        except CovsegError as error:
            assert "\n" not in str(error)


def _nifti_bytes(shape=(6, 5, 3), dtype=np.int16) -> bytes:
    hu = np.linspace(-1000, 400, int(np.prod(shape))).reshape(shape).astype(dtype)
    image = nib.Nifti1Image(hu, np.diag([0.8, 0.7, 2.5, 1.0]))
    image.header.set_slope_inter(1.0, 0.0)
    return image.to_bytes()


def _png_bytes(mode: str) -> bytes:
    gray = (np.arange(12 * 10).reshape(12, 10) % 4).astype(np.uint8)
    image = {
        "L": lambda: Image.fromarray(gray),
        "I;16": lambda: Image.fromarray((gray.astype(np.uint16) + 1) * 700),
        "P": lambda: Image.fromarray(gray, mode="P"),
        "RGB": lambda: Image.fromarray(np.stack([gray * 60, gray, gray], -1)),
        "1": lambda: Image.fromarray(gray > 1),
    }[mode]()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.linspace(-1000, 300, 80, dtype=np.float32).reshape(8, 10), mode="F").save(
        buffer, format="TIFF")
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


SEEDS = {
    ".nii": _nifti_bytes(),
    ".nii.gz": gzip.compress(_nifti_bytes((7, 6, 1), np.float32)),
    ".png": _png_bytes("L"),
    ".tif": _tiff_bytes(),
    ".npy": _npy_bytes(np.linspace(-1000, 300, 60, dtype=np.float32).reshape(6, 10)),
}
SEEDS_PNG = [_png_bytes(mode) for mode in ("L", "I;16", "P", "RGB", "1")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path


def _check(folder: Path, suffix: str, data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libraries may warn about odd files; only exceptions count
        _readers_only_raise_covseg_errors(_write(folder, suffix, data))


@FUZZ
@given(suffix=st.sampled_from(sorted(SEEDS)), data=st.binary(max_size=2048))
def test_random_bytes(folder, suffix, data):
    _check(folder, suffix, data)


@FUZZ
@given(suffix=st.sampled_from(sorted(SEEDS)), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.integers(0, 511), st.integers(0, 255)), max_size=6))
def test_truncated_and_mutated_valid_files(folder, suffix, cut, flips):
    """Byte flips in the first 512 bytes, where every format keeps its header, then a cut."""
    data = bytearray(SEEDS[suffix])
    for where, value in flips:
        data[where % len(data)] = value
    _check(folder, suffix, bytes(data[: max(1, int(cut * len(data)))]))


@FUZZ
@given(seed=st.sampled_from(SEEDS_PNG), suffix=st.sampled_from([".png", ".jpg", ".tif"]),
       flips=st.lists(st.tuples(st.integers(0, 64), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_picture_headers(folder, seed, suffix, flips):
    """Flips in the first bytes: PNG chunk lengths, sizes, bit depths and colour types."""
    data = bytearray(seed)
    for where, value in flips:
        data[min(where, len(data) - 1)] = value
    _check(folder, suffix, bytes(data))


def _field_value(dtype: np.dtype):
    if dtype.kind == "f":
        return st.one_of(st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e30, 1e-30]),
                         st.floats(-1e6, 1e6, allow_nan=False))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.one_of(st.sampled_from([0, -1, 1, int(info.max), int(info.min)]),
                         st.integers(int(info.min), int(info.max)))
    return st.binary(min_size=dtype.itemsize, max_size=dtype.itemsize)


@st.composite
def _mutated_header(draw) -> tuple[bytes, str]:
    header_dtype = nib.Nifti1Header.template_dtype
    name = draw(st.sampled_from(NIFTI_FIELDS))
    field, offset = header_dtype.fields[name][:2]
    base = field.base if field.shape else field
    count = int(np.prod(field.shape)) if field.shape else 1
    index = draw(st.integers(0, count - 1))
    value = draw(_field_value(base))
    data = bytearray(_nifti_bytes(dtype=draw(st.sampled_from([np.int16, np.uint8, np.float32, np.float64]))))
    start = offset + index * base.itemsize
    stored = value if isinstance(value, bytes) else np.array(value).astype(base).tobytes()
    data[start : start + base.itemsize] = stored
    suffix = draw(st.sampled_from([".nii", ".nii.gz"]))
    return (gzip.compress(bytes(data)) if suffix == ".nii.gz" else bytes(data)), suffix


@FUZZ
@given(case=_mutated_header())
def test_mutated_nifti_header_fields(folder, case):
    data, suffix = case
    _check(folder, suffix, data)


DTYPES = ["uint8", "int8", "uint16", "int16", "int32", "int64", "uint64", "float16", "float32", "float64",
          "bool", "complex64", ">f4", ">i2"]


@FUZZ
@given(dtype=st.sampled_from(DTYPES), shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
       fill=st.sampled_from(["ramp", "nan", "zeros", "huge", "labels"]),
       suffix=st.sampled_from([".npy", ".nii"]))
def test_arrays_of_every_dtype_and_shape(folder, dtype, shape, fill, suffix):
    size = int(np.prod(shape)) if shape else 1
    values = {"ramp": np.linspace(-1500, 3000, size), "nan": np.full(size, np.nan), "zeros": np.zeros(size),
              "huge": np.full(size, 1e300), "labels": np.arange(size) % 4}[fill]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = values.astype(np.dtype(dtype)).reshape(shape)
    if suffix == ".npy":
        data = _npy_bytes(array)
    else:
        try:
            data = nib.Nifti1Image(array, np.eye(4)).to_bytes()
        except Exception:
            return
    _check(folder, suffix, data)


@FUZZ
@given(descr=st.sampled_from(["<f4", "|u1", "<f2", "|O", "<c8", "|b1", "<U3", "<i8"]),
       shape=st.lists(st.integers(0, 1 << 40), min_size=0, max_size=3), fortran=st.booleans())
def test_npy_headers_that_claim_anything(folder, descr, shape, fortran):
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + b"\0" * 64
    _check(folder, ".npy", data)
