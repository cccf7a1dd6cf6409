"""`covseg train --compile` on the CPU: torch.compile (inductor) builds and runs the training step of
a tiny model in bf16 and channels-last; the run saves the plain model's weights (no ``_orig_mod.``
prefixes), which resume and export as those of any run.

It runs in child processes whose inductor files stay in the test's folder (inductor writes under
the system temp folder otherwise), on the tiny plugin model: compiling unet's training step takes
minutes on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from covseg.checkpoint import load_checkpoint
from tests.tiny_model import MODEL, write_tiny_plugin

TINY = ["--dataset-option", "count=10", "--dataset-option", "size=48", "--image-size", "32", "--batch-size",
        "4", "--workers", "0", "--device", "cpu", "--precision", "bf16", "--channels-last"]


def covseg(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covseg", *arguments], env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_compiled_run_saves_plain_weights_resumes_and_exports(tmp_path):
    plugins = write_tiny_plugin(tmp_path / "plugins")
    cache, temp = tmp_path / "inductor", tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "2", "COLUMNS": "250",
           # Everything inductor writes stays in tmp_path (precompiled headers go to the temp folder
           # whatever the cache setting); no precompiled headers (150 MB, worth it only over many
           # compilations) and no pool of compile processes for a handful of kernels.
           "TORCHINDUCTOR_CACHE_DIR": str(cache), "TMPDIR": str(temp),
           "TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS": "0", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    out = tmp_path / "runs"
    first = covseg(["train", MODEL, "--compile", "--epochs", "1", "--out", str(out), *TINY], env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "bf16, channels-last, compiled" in " ".join(first.stdout.split())
    assert any(cache.rglob("*.py")), "inductor generated no code: the step did not run compiled"
    (run,) = list((out / MODEL).iterdir())
    expected_keys = {
        "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
        "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked",
        "head.weight", "head.bias"}
    for name in ("best.pt", "last.pt"):
        assert set(load_checkpoint(run / name)["state_dict"]) == expected_keys, name

    # --compile may change on resume: the plain model takes the compiled run's last.pt as it is.
    resumed = covseg(["train", "--resume", str(run), "--epochs", "2", "--no-compile"], env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"Resuming {run} after epoch 1 of 2" in " ".join(resumed.stdout.split())
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2
    assert set(load_checkpoint(run / "last.pt")["state_dict"]) == expected_keys

    exported = covseg(["export", str(run), "--onnx", "--out", str(tmp_path / "tiny.onnx")], env)
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    assert (tmp_path / "tiny.onnx").is_file()
