"""Every built-in model meets the shape contract: (N, 3, H, W) in, (N, C, H, W) logits out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from covseg.core.errors import CovsegError
from covseg.core.registry import create_model, get_registry

MODEL_NAMES = [
    "unet",
    "deeplabv3plus-resnet101",
    "deeplabv3plus-xception",
    "fcn-resnet50",
    "fcn-resnet101",
    "deeplabv3-resnet50",
    "deeplabv3-resnet101",
]
ALIASES = {"deeplab-resnet50": "deeplabv3-resnet50", "deeplab-resnet101": "deeplabv3-resnet101"}
"""The reference study's names, kept as aliases of the canonical ones."""
ODD_SIZES = [(97, 131), (33, 50)]  # not divisible by 32; the second near the 32-pixel minimum


def test_the_seven_models_are_registered():
    names = {entry.name for entry in get_registry().models()}
    assert set(MODEL_NAMES) <= names


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_the_studys_names_resolve_to_the_canonical_models(alias, name):
    provided = get_registry().get("model", alias)
    assert provided.entry.name == name
    assert provided.entry.aliases == (alias,)
    assert provided.entry is get_registry().model(name), "the same entry, so the same factory"
    assert alias not in {entry.name for entry in get_registry().models()}, "an alias is not a second model"


def test_each_builtin_name_is_spelled_out_once_in_its_plugin_module():
    # `grep NAME plugins_builtin` finds the entry: every ModelEntry names its model and aliases as
    # string literals, none is built from pieces, and each is said once.
    root = Path(__file__).resolve().parents[1] / "plugins_builtin" / "covseg_builtin" / "models"
    names, aliases = [], {}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ModelEntry":
                name = node.args[0]
                assert isinstance(name, ast.Constant), f"{path.name}:{node.lineno}: name is not a literal"
                names.append(name.value)
                for keyword in node.keywords:
                    if keyword.arg == "aliases":
                        aliases.update({alias: name.value for alias in ast.literal_eval(keyword.value)})
    assert sorted(names) == sorted(MODEL_NAMES)
    assert aliases == ALIASES


def test_an_old_checkpoint_under_the_studys_name_still_loads(tmp_path):
    from covseg.checkpoint import save_checkpoint
    from covseg.data.intensity import Normalisation
    from covseg.evaluation.trained import load_trained_model

    torch.manual_seed(3)
    weights = create_model("deeplabv3-resnet50", num_classes=2).state_dict()
    path = tmp_path / "best.pt"
    save_checkpoint({"model_name": "deeplab-resnet50", "num_classes": 2, "in_channels": 3,
                     "normalisation": Normalisation().to_dict(), "state_dict": weights}, path)
    trained = load_trained_model(path)
    assert trained.model_name == "deeplabv3-resnet50"
    loaded = trained.model.state_dict()
    assert all(torch.equal(loaded[key], weights[key]) for key in weights)


def test_benchmark_models_accept_the_studys_names():
    from covseg.benchmark.plan import parse_models

    assert parse_models("unet,deeplab-resnet101") == ["unet", "deeplabv3-resnet101"]
    with pytest.raises(CovsegError, match=r"deeplab-resnet101 and deeplabv3-resnet101 \(both "
                       r"deeplabv3-resnet101\) given twice"):
        parse_models("unet,deeplab-resnet101,deeplabv3-resnet101")
