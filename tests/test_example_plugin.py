"""A third-party plugin, pip-installed from examples/, is found like the built-ins and trains."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "covseg-plugin-example"
COVSEG = str(Path(sys.executable).with_name("covseg"))


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed_example():
    _pip("install", "--no-deps", "--no-build-isolation", "--no-cache-dir", str(EXAMPLE))
    try:
        yield
    finally:
        _pip("uninstall", "-y", "covseg-unet-lite")
    listed = subprocess.run([COVSEG, "models"], capture_output=True, text=True, check=True)
    assert "unet-lite" not in listed.stdout, "uninstalling the plugin removes its model"


def test_models_lists_the_plugin_model_with_its_package(installed_example):
    result = subprocess.run([COVSEG, "models"], capture_output=True, text=True, check=True,
                            env={**os.environ, "COLUMNS": "120"})
    lines = result.stdout.splitlines()
    row = next(index for index, line in enumerate(lines) if line.split()[:1] == ["unet-lite"])
    assert "Two-level UNet, 16-64 channels (example plugin)." in lines[row]
    assert "family unet" in lines[row + 1]
    assert "covseg_unet_lite.plugin (covseg-unet-lite)" in lines[row + 1]
    assert result.stderr == ""


def test_the_plugin_module_imports_no_torch(installed_example):
    script = "import sys, covseg_unet_lite.plugin; print(sorted({'torch', 'timm'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_plugin_model_runs_forward_backward_and_an_optimizer_step(installed_example):
    script = textwrap.dedent("""
        import torch
        from covseg.core.registry import create_model
        torch.manual_seed(0)
        model = create_model("unet-lite", num_classes=4)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        images, masks = torch.randn(2, 3, 45, 61), torch.randint(0, 4, (2, 45, 61))
        losses = []
        for _ in range(3):
            logits = model(images)
            assert logits.shape == (2, 4, 45, 61)
            loss = torch.nn.functional.cross_entropy(logits, masks)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], losses
        print("ok", losses)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
