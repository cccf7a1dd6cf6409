"""ImageNet weights load through timm's and torchvision's own loaders, from a local file or a
server on 127.0.0.1, and fail in one line (fast) when neither is there."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import threading
import time
from pathlib import Path

import pytest
import timm
import torch
from torchvision.models import ResNet50_Weights, resnet50

from covseg.core.errors import CovsegError
from covseg.core.registry import create_model
from covseg.plugins import pretrained


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """Nothing cached, and the weight hosts answer 'connection refused' at once."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(pretrained.WEIGHTS_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(pretrained, "_HUB_HOST", "127.0.0.1")
    return tmp_path


def test_timm_encoder_weights_from_covseg_weights_dir(offline_hub, monkeypatch):
    torch.manual_seed(1)
    reference = timm.create_model("resnet101", pretrained=False)
    weights_dir = offline_hub / "weights"
    weights_dir.mkdir()
    torch.save(reference.state_dict(), weights_dir / "resnet101.pth")
    monkeypatch.setenv(pretrained.WEIGHTS_DIR_VARIABLE, str(weights_dir))

    model = create_model("deeplabv3plus-resnet101", pretrained=True)

    torch.testing.assert_close(model.encoder.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(model.encoder.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)


def test_timm_weights_offline_fail_in_one_line_without_hanging(offline_hub):
    started = time.monotonic()
    with pytest.raises(CovsegError) as raised:
        create_model("deeplabv3plus-xception", pretrained=True)
    assert time.monotonic() - started < 15
    message = str(raised.value)
    assert "\n" not in message
    assert "xception65" in message and "unreachable" in message and "COVSEG_WEIGHTS_DIR" in message


def test_torchvision_weights_offline_fail_in_one_line(offline_hub, monkeypatch):
    monkeypatch.setattr(ResNet50_Weights.IMAGENET1K_V1.value, "url", "https://127.0.0.1/resnet50-0676ba61.pth")
    with pytest.raises(CovsegError, match=r"resnet50-0676ba61\.pth.*without --pretrained"):
        create_model("fcn-resnet50", pretrained=True)


@pytest.fixture
def weights_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving a random ResNet-50 state dict under a torchvision-style
    name whose hash prefix matches the file, so torchvision's check_hash passes."""
    torch.manual_seed(2)
    state = resnet50().state_dict()
    serve_dir = tmp_path / "served"
    serve_dir.mkdir()
    staging = serve_dir / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    name = f"resnet50-{digest[:8]}.pth"
    staging.rename(serve_dir / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{name}", state
    server.shutdown()
    thread.join()


def test_torchvision_backbone_weights_download_from_local_server(offline_hub, weights_server, monkeypatch):
    url, state = weights_server
    monkeypatch.setattr(ResNet50_Weights.IMAGENET1K_V1.value, "url", url)

    model = create_model("deeplabv3-resnet50", pretrained=True)

    backbone = model.model.backbone
    torch.testing.assert_close(backbone.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(backbone.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    assert cached.is_file(), "torchvision's loader keeps the download in the user's cache"


class _RunsCode:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a crafted file could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_pickle_in_torchs_cache_is_refused_without_running(offline_hub):
    marker = offline_hub / "code-ran"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet50_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    pickle.loads(cached.read_bytes()).close()  # the file does run code when unpickled ...
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CovsegError) as raised:  # ... and covseg does not unpickle it
        create_model("fcn-resnet50", pretrained=True)

    assert str(raised.value) == (
        f"refusing {cached}: it is not a plain weights file (loading it would run code); "
        "delete it to download it again, or train without --pretrained"
    )
    assert not marker.exists()


def test_models_without_pretrained_weights_say_so():
    with pytest.raises(CovsegError, match="unet has no ImageNet weights"):
        create_model("unet", pretrained=True)
