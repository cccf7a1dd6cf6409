"""Device bookkeeping without devices: every CUDA branch runs here with the device queries faked.

``--device cuda:N`` validation, the precision and layout defaults per device, the NCCL/gloo
choice and per-rank GPU under torchrun, the CUDA RNG state in last.pt, the GPU slot of each
``benchmark --jobs`` worker (honouring CUDA_VISIBLE_DEVICES) and pinned memory on CUDA.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from covseg.benchmark import runner
from covseg.checkpoint import load_checkpoint, save_checkpoint
from covseg.core.errors import CovsegError
from covseg.data.loading import load_slices
from covseg.devices import default_channels_last, default_precision, resolve_device
from covseg.training import TrainConfig
from covseg.training import distributed as distributed_module
from covseg.training.distributed import DistributedContext, backend_for, distributed, process_device
from covseg.training.loaders import build_training_data, choose_split
from covseg.training.loop import StepSettings, device_defaults
from covseg.training.state import capture_rng_state, restore_rng_state

CPU, CUDA, CUDA1 = torch.device("cpu"), torch.device("cuda"), torch.device("cuda", 1)


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: torch.cuda answers as on a machine with n GPUs (0: none)."""

    def fake(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return fake


# ---- --device ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "expected"), [
    ("auto", CUDA), ("cuda", CUDA), ("cuda:0", torch.device("cuda", 0)), ("cuda:1", CUDA1), ("cpu", CPU)])
def test_devices_resolve_on_a_machine_with_two_gpus(gpus, name, expected):
    gpus(2)
    assert resolve_device(name) == expected


@pytest.mark.parametrize(("count", "name", "message"), [
    (2, "cuda:2", "--device cuda:2: this machine has 2 CUDA device(s), numbered from 0"),
    (2, "cuda:-1", "--device cuda:-1: expected auto, cpu, cuda or cuda:N"),
    (2, "gpu", "--device gpu: expected auto, cpu, cuda or cuda:N"),
    (2, "cuda:", "--device cuda:: expected auto, cpu, cuda or cuda:N"),
    # exact spelling: a stray space or capital is a typo, refused like the others (not silently fixed)
    (2, "cuda:0 ", "--device 'cuda:0 ': expected auto, cpu, cuda or cuda:N"),
    (2, "CUDA", "--device CUDA: expected auto, cpu, cuda or cuda:N"),
    (2, "CUDA:1 ", "--device 'CUDA:1 ': expected auto, cpu, cuda or cuda:N"),
    (2, "cuda:\u0663", "--device cuda:\u0663: expected auto, cpu, cuda or cuda:N"),  # non-ASCII digit
    (2, "cpu:0", "--device cpu:0: expected auto, cpu, cuda or cuda:N"),
    (0, "cuda", "--device cuda: CUDA is not available on this machine"),
    (0, "cuda:0", "--device cuda:0: CUDA is not available on this machine"),
])
def test_bad_devices_are_one_line_errors(gpus, count, name, message):
    gpus(count)
    with pytest.raises(CovsegError) as error:
        resolve_device(name)
    assert str(error.value) == message


def test_auto_is_the_cpu_without_gpus(gpus):
    gpus(0)
    assert resolve_device("auto") == CPU


# ---- precision and layout follow the device unless chosen ------------------------------------------
def test_precision_and_layout_default_to_the_device_and_are_recorded_so():
    assert (default_precision(CUDA), default_channels_last(CUDA)) == ("bf16", True)
    assert (default_precision(CPU), default_channels_last(CPU)) == ("fp32", False)
    config = TrainConfig.from_recipe("unet")
    assert config.precision is None and config.channels_last is None
    on_cuda = device_defaults(config, CUDA)
    assert (on_cuda.precision, on_cuda.channels_last) == ("bf16", True)
    assert on_cuda.sources["precision"] == on_cuda.sources["channels_last"] == "default on cuda"
    # A run that followed one device's defaults follows the next device's when it resumes there.
    on_cpu = device_defaults(on_cuda, CPU)
    assert (on_cpu.precision, on_cpu.channels_last) == ("fp32", False)
    assert on_cpu.sources["precision"] == "default on cpu"
    # A choice stays a choice on any device: bf16 and channels-last run on the CPU too.
    chosen = TrainConfig.from_recipe("unet", precision="bf16", channels_last=True)
    assert device_defaults(chosen, CPU) == chosen
    assert device_defaults(TrainConfig.from_recipe("unet", precision="fp32"), CUDA).precision == "fp32"


def test_step_settings_follow_the_config():
    settings = StepSettings.for_device(CUDA)
    assert (settings.autocast_dtype, settings.channels_last, settings.describe()) == (
        torch.bfloat16, True, "bf16, channels-last")
    assert StepSettings.for_device(CPU).describe() == "fp32"
    config = TrainConfig.from_recipe("unet", precision="bf16", channels_last=False)
    assert StepSettings.for_config(config, CPU).describe() == "bf16"
    with pytest.raises(CovsegError, match=r"^--precision fp16: choose one of bf16, fp32$"):
        StepSettings.for_device(CPU, "fp16")
    with pytest.raises(CovsegError, match=r"^--precision fp16: choose one of bf16, fp32"):
        TrainConfig.from_recipe("unet", precision="fp16")


# ---- torchrun: NCCL on GPUs, gloo on CPUs, one GPU per local rank -----------------------------------
class FakeProcessGroup:
    """Records what :func:`distributed` asks of torch.distributed instead of starting a group."""

    def __init__(self, monkeypatch):
        self.joined: dict | None = None
        self.left = False
        self.current_device: torch.device | None = None
        monkeypatch.setattr(dist, "init_process_group", self.init)
        monkeypatch.setattr(dist, "destroy_process_group", self.destroy)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device)

    def init(self, **kwargs):
        self.joined = kwargs

    def destroy(self):
        self.left = True

    def set_device(self, device):
        self.current_device = device


def torchrun_environment(monkeypatch, rank: int, local_rank: int, world_size: int) -> None:
    for name, value in (("RANK", rank), ("LOCAL_RANK", local_rank), ("WORLD_SIZE", world_size)):
        monkeypatch.setenv(name, str(value))


def test_torchrun_on_gpus_joins_with_nccl_on_the_gpu_of_the_local_rank(monkeypatch, gpus):
    gpus(4)
    group = FakeProcessGroup(monkeypatch)
    torchrun_environment(monkeypatch, rank=5, local_rank=1, world_size=8)
    with distributed(resolve_device("auto")) as context:
        assert context == DistributedContext(rank=5, world_size=8, local_rank=1, device=CUDA1)
        assert group.joined == {"backend": "nccl", "init_method": "env://", "rank": 5, "world_size": 8,
                                "device_id": CUDA1}
        assert group.current_device == CUDA1 and not group.left
    assert group.left


def test_torchrun_on_cpus_joins_with_gloo(monkeypatch, gpus):
    gpus(0)
    group = FakeProcessGroup(monkeypatch)
    torchrun_environment(monkeypatch, rank=1, local_rank=1, world_size=2)
    with distributed(CPU) as context:
        assert context.device == CPU and context.enabled and not context.is_main
    assert group.joined["backend"] == "gloo" and group.joined["device_id"] is None
    assert group.current_device is None and group.left


def test_without_torchrun_no_group_is_joined(monkeypatch):
    group = FakeProcessGroup(monkeypatch)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with distributed(CUDA1) as context:
        assert context == DistributedContext(0, 1, 0, CUDA1)  # one process keeps --device cuda:1
    assert group.joined is None and not group.left


def test_torchrun_refuses_a_pinned_gpu_and_a_rank_without_a_gpu(monkeypatch, gpus):
    gpus(2)
    assert backend_for(CUDA) == "nccl" and backend_for(CPU) == "gloo"
    assert process_device(CPU, 3) == CPU
    with pytest.raises(CovsegError, match=r"^--device cuda:1 pins one GPU, but under torchrun each process"):
        process_device(CUDA1, 0)
    with pytest.raises(CovsegError, match=r"^torchrun started local rank 2 but this machine has 2 CUDA"):
        process_device(CUDA, 2)
    group = FakeProcessGroup(monkeypatch)
    torchrun_environment(monkeypatch, rank=2, local_rank=2, world_size=3)
    with pytest.raises(CovsegError), distributed(CUDA):
        pass
    assert group.joined is None  # refused before joining: no process waits for this one
    assert distributed_module.synchronises_batch_norm(DistributedContext(0, 2, 0, CUDA))


# ---- the CUDA RNG state in last.pt ----------------------------------------------------------------
class FakeCudaGenerators:
    """torch.cuda's per-device generator states, as byte tensors like the real ones."""

    def __init__(self, monkeypatch, count: int):
        self.states = {index: torch.full((16,), index, dtype=torch.uint8) for index in range(count)}
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)

    @staticmethod
    def index(device) -> int:
        return torch.device(device).index or 0

    def get(self, device="cuda"):
        return self.states[self.index(device)].clone()

    def set(self, state, device="cuda"):
        self.states[self.index(device)] = state.clone()


def test_the_cuda_generator_of_the_training_device_is_saved_and_restored(tmp_path, monkeypatch):
    generators = FakeCudaGenerators(monkeypatch, count=2)
    generators.states[1] = torch.arange(16, dtype=torch.uint8)
    save_checkpoint({"rng": capture_rng_state(CUDA1)}, tmp_path / "last.pt")  # weights_only-loadable
    state = load_checkpoint(tmp_path / "last.pt")["rng"]
    assert torch.equal(state["cuda"], torch.arange(16, dtype=torch.uint8))
    generators.states[1] = torch.zeros(16, dtype=torch.uint8)
    restore_rng_state(state, CUDA1)
    assert torch.equal(generators.states[1], torch.arange(16, dtype=torch.uint8))
    assert torch.equal(generators.states[0], torch.zeros(16, dtype=torch.uint8))  # the other GPU untouched

    # Resumed on the CPU, the CUDA state is left alone (nothing draws from it); a CPU run keeps none.
    generators.states[1] = torch.zeros(16, dtype=torch.uint8)
    restore_rng_state(state, CPU)
    assert torch.equal(generators.states[1], torch.zeros(16, dtype=torch.uint8))
    assert "cuda" not in capture_rng_state(CPU) and "cuda" not in capture_rng_state()


def test_a_cuda_state_of_earlier_versions_restores_the_devices_own_entry(monkeypatch):
    """Earlier last.pt files hold one state per visible GPU; a resume may see fewer GPUs."""
    generators = FakeCudaGenerators(monkeypatch, count=2)
    states = [torch.full((16,), 7, dtype=torch.uint8), torch.full((16,), 9, dtype=torch.uint8)]
    restore_rng_state({**capture_rng_state(), "cuda": states}, CUDA1)
    assert torch.equal(generators.states[1], states[1])
    restore_rng_state({**capture_rng_state(), "cuda": states[:1]}, CUDA1)  # a machine with one GPU then
    assert torch.equal(generators.states[1], states[0])


# ---- benchmark --jobs: one worker per GPU -----------------------------------------------------------
@pytest.mark.parametrize(("visible", "count", "jobs", "expected"), [
    (None, 4, 4, ["0", "1", "2", "3"]),
    ("", 2, 2, ["0", "1"]),  # empty: every GPU the driver shows
    ("3,5,6,7", 4, 2, ["3", "5"]),
    (" 2 , 0 ", 2, 2, ["2", "0"]),
    ("GPU-8f2a,GPU-91bc", 2, 2, ["GPU-8f2a", "GPU-91bc"]),
    ("1,7", 1, 1, ["1"]),  # CUDA stops at an entry it cannot use: the driver shows one GPU
])
def test_each_worker_gets_one_visible_gpu(monkeypatch, gpus, visible, count, jobs, expected):
    gpus(count)
    monkeypatch.setattr(runner, "cpu_cores", lambda: 16)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    slots = runner.worker_slots(jobs, "auto")
    assert [slot.env["CUDA_VISIBLE_DEVICES"] for slot in slots] == expected
    assert all(slot.device == "cuda" for slot in slots)  # each worker sees its GPU as cuda:0
    assert [slot.threads for slot in slots] == [16 // jobs] * jobs
    assert slots[0].env["OMP_NUM_THREADS"] == str(16 // jobs)


def test_gpu_workers_run_with_device_cuda_and_their_thread_share(monkeypatch, gpus, tmp_path):
    from covseg.benchmark.plan import BenchmarkSettings, Pair, RunOptions, prepare_plan

    gpus(2)
    monkeypatch.setattr(runner, "cpu_cores", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    (slot, _) = runner.worker_slots(2, "cuda")
    plan = prepare_plan(tmp_path, BenchmarkSettings.resolve({"epochs": 1}), [])
    options = RunOptions({"device": "cuda", "precision": "fp32"}, {"device": "--device",
                                                                   "precision": "--precision"})
    command = runner.worker_command(plan, Pair("unet", 0), slot, options)
    sent = RunOptions.from_json(command[command.index("--run-options") + 1])
    assert sent.values == {"device": "cuda", "precision": "fp32"}
    assert command[-2:] == ["--threads", "4"] and slot.env["CUDA_VISIBLE_DEVICES"] == "4"


def test_more_jobs_than_gpus_or_a_pinned_gpu_are_refused(monkeypatch, gpus):
    gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(CovsegError, match=r"^--jobs 3: this machine has 2 GPU\(s\) and each job takes one"):
        runner.worker_slots(3, "cuda")
    with pytest.raises(CovsegError, match=r"^--device cuda:1 pins one GPU, but --jobs 2"):
        runner.worker_slots(2, "cuda:1")
    with pytest.raises(CovsegError, match=r"^--jobs 0: must be at least 1"):
        runner.worker_slots(0, "cuda")


# ---- pinned memory ------------------------------------------------------------------------------------
def test_loaders_pin_memory_for_a_cuda_process_only():
    options = {"count": "6", "size": "32"}
    config = TrainConfig.from_recipe("unet", dataset_options=options, batch_size=2, workers=0)
    slices = load_slices(None, None, options)
    split = choose_split(config, slices)
    for device, pinned in ((CUDA, True), (CPU, False)):
        data = build_training_data(config, slices, split, DistributedContext(0, 1, 0, device))
        loaders = (data.train_loader, data.val_loader, data.calibration_loader)
        assert [loader.pin_memory for loader in loaders] == [pinned] * 3
