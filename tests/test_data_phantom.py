"""The embedded phantom: deterministic, in Hounsfield units, masks that agree with the HU values."""

from __future__ import annotations

import numpy as np
import pytest
from covseg_builtin.datasets.phantom import (
    CONSOLIDATION_HU,
    EFFUSION_HU,
    GROUND_GLASS_HU,
    LUNG_HU,
    generate_phantom,
)

from covseg.core.errors import CovsegError
from covseg.data.loading import load_slices


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(count=60, size=128, seed=0)


def test_same_seed_same_slices_and_slice_independent_of_count(phantom):
    again = generate_phantom(count=60, size=128, seed=0)
    fewer = generate_phantom(count=5, size=128, seed=0)
    for index in (0, 4):
        assert np.array_equal(phantom.images[index], again.images[index])
        assert np.array_equal(phantom.masks[index], again.masks[index])
        assert np.array_equal(phantom.images[index], fewer.images[index])
    other = generate_phantom(count=1, size=128, seed=1)
    assert not np.array_equal(phantom.images[0], other.images[0])
    assert phantom.ids[:2] == ["phantom_0001", "phantom_0002"] and len(set(phantom.ids)) == 60


def test_layout_and_anatomy_in_hounsfield_units(phantom):
    image, mask = phantom.images[0], phantom.masks[0]
    assert phantom.intensity == "hu" and image.dtype == np.float32 and image.shape == (128, 128)
    assert mask.dtype == np.uint8 and set(np.unique(np.stack(phantom.masks))) == {0, 1, 2, 3}
    assert abs(float(np.median(image[:4, :4])) + 1000) < 40  # air in the corner
    assert abs(float(np.median(image[64:66, 62:66])) - 40) < 60  # mediastinum: soft tissue
    assert float(image.max()) > 450  # bone (ribs, spine)
    parenchyma = np.concatenate([im[(m == 0) & lu] for im, m, lu in
                                 zip(phantom.images, phantom.masks, phantom.lung_masks, strict=True)])
    assert abs(float(np.median(parenchyma)) - LUNG_HU) < 30
    # Vessels: a real share of healthy lung pixels is as bright as ground-glass (not a threshold task).
    assert 0.005 < np.mean((parenchyma > GROUND_GLASS_HU[0]) & (parenchyma < GROUND_GLASS_HU[1])) < 0.2


def test_masks_agree_with_hu_values(phantom):
    images, masks = np.stack(phantom.images), np.stack(phantom.masks)
    lungs = np.stack(phantom.lung_masks)
    values = {label: images[masks == label] for label in (1, 2, 3)}
    assert all(values[label].size > 500 for label in values)
    noise = 3 * 28.0  # three times the largest per-slice noise sigma

    consolidation = values[2]
    assert CONSOLIDATION_HU[0] <= np.median(consolidation) <= CONSOLIDATION_HU[1]
    inside = (consolidation > CONSOLIDATION_HU[0] - noise) & (consolidation < CONSOLIDATION_HU[1] + noise)
    assert inside.mean() > 0.85  # the rest: partial-volume pixels on the sharp edge

    effusion = values[3]
    assert EFFUSION_HU[0] - 15 <= np.median(effusion) <= EFFUSION_HU[1] + 15
    assert ((effusion > -noise) & (effusion < EFFUSION_HU[1] + noise)).mean() > 0.8

    ground_glass = values[1]
    lung_mean = images[(masks == 0) & lungs].mean()
    assert lung_mean + 150 < ground_glass.mean() < consolidation.mean() - 300
    assert GROUND_GLASS_HU[0] - 50 < np.median(ground_glass) < GROUND_GLASS_HU[1]
    # Lesions lie inside the lungs (effusion included).
    assert lungs[masks > 0].mean() > 0.97


def test_lesions_vary_in_size_and_presence(phantom):
    masks = np.stack(phantom.masks)
    for label in (1, 2):
        areas = (masks == label).sum(axis=(1, 2))
        present = areas[areas > 0]
        assert 0.2 < present.size / len(masks) < 0.95
        assert present.max() > 3 * present.min()
    assert 0 < (masks == 3).any(axis=(1, 2)).sum() < len(masks) / 2


def test_options_through_load_slices():
    slices = load_slices("phantom", None, {"count": "3", "size": "64", "seed": "5"})
    assert len(slices) == 3 and slices.images[0].shape == (64, 64)
    assert np.array_equal(slices.images[2], generate_phantom(3, 64, 5).images[2])
    assert load_slices(None, None, {"count": "2", "size": "32"}).source.startswith("phantom(")


@pytest.mark.parametrize(("options", "message"), [
    ({"count": "many"}, "option count=many: expected an integer"),
    ({"size": "8"}, "option size=8: must be between 32 and 4096"),
    ({"colour": "red"}, "dataset phantom has no option 'colour' (its options: count, size, seed)"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(CovsegError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        load_slices("phantom", None, options)
