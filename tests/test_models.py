"""Every built-in model meets the shape contract: (N, 3, H, W) in, (N, C, H, W) logits out."""

from __future__ import annotations

import pytest
import torch

from covseg.core.registry import create_model, get_registry

MODEL_NAMES = [
    "unet",
    "deeplabv3plus-resnet101",
    "deeplabv3plus-xception",
    "fcn-resnet50",
    "fcn-resnet101",
    "deeplab-resnet50",
    "deeplab-resnet101",
]
ODD_SIZES = [(97, 131), (33, 50)]  # not divisible by 32; the second near the 32-pixel minimum


def test_the_seven_models_are_registered():
    names = {entry.name for entry in get_registry().models()}
    assert set(MODEL_NAMES) <= names


@pytest.fixture(scope="module", params=MODEL_NAMES)
def model_and_name(request):
    torch.manual_seed(0)
    return create_model(request.param, num_classes=4), request.param


def test_shape_contract_in_eval_mode_at_odd_sizes_batch_one_and_two(model_and_name):
    model, _ = model_and_name
    model.eval()
    with torch.no_grad():
        for height, width in ODD_SIZES:
            inputs = torch.randn(2, 3, height, width)
            both = model(inputs)
            first = model(inputs[:1])
            assert isinstance(both, torch.Tensor)
            assert both.shape == (2, 4, height, width)
            assert first.shape == (1, 4, height, width)
            assert torch.isfinite(both).all()
            # Eval mode: a sample's logits do not depend on what else is in the batch (up to
            # float rounding, which grows with the logits of untrained deep networks).
            scale = float(both.abs().max())
            torch.testing.assert_close(first, both[:1], rtol=1e-3, atol=1e-3 * scale)


def test_backward_pass_reaches_every_trainable_parameter(model_and_name):
    model, name = model_and_name
    model.train()
    height, width = ODD_SIZES[1]
    logits = model(torch.randn(2, 3, height, width))
    assert logits.shape == (2, 4, height, width)
    target = torch.randint(0, 4, (2, height, width))
    torch.nn.functional.cross_entropy(logits, target).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["unet", "fcn-resnet50", "deeplabv3plus-resnet101"])
def test_other_class_and_channel_counts(name):
    model = create_model(name, num_classes=2, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 48, 64)).shape == (1, 2, 48, 64)
