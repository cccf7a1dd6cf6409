"""`covseg benchmark`: every output file, the same numbers everywhere, resuming, failure isolation,
Slurm array tasks, worker processes and the GPU check script (run on the CPU at toy sizes).

Runs are small models on tiny phantom slices (1 epoch, 64x64 or 32x32) on the CPU: a two-layer
``tiny-net`` registered here, fcn-resnet50 (a real network, whose FLOPs the report counts) and, in
the Slurm test's processes, the tiny plugin of tests/tiny_model.py. A full unet would spend most of
the time writing its 370 MB checkpoints.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from covseg.benchmark import measure, runner
from covseg.benchmark.plan import (
    ADDED_SETTINGS,
    BenchmarkSettings,
    Pair,
    RunOptions,
    load_plan,
    make_pairs,
    parse_models,
    parse_seeds,
    prepare_plan,
    read_record,
    select_pair,
)
from covseg.benchmark.report import COLUMNS, MAIN_KEYS, SPLITS, Stat, format_stat, split_metrics
from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.plugins import ModelEntry, hookimpl
from covseg.training.recipes import REFERENCE_STUDY
from tests.tiny_model import MODEL as TINY_PLUGIN_MODEL
from tests.tiny_model import write_tiny_plugin

REPO_ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()
RESULT_FILES = ("results.md", "results.csv", "results.json", "miou_per_model.png", "validation_curves.png",
                "montage.png", "benchmark.json", "split.json")


def tiny(size: int, count: int = 8) -> list[str]:
    """Options of a toy benchmark: few phantom slices drawn at ``size``, 1 epoch, CPU, no workers."""
    return ["--epochs", "1", "--image-size", str(size), "--batch-size", "4",
            "--dataset-option", f"count={count}", "--dataset-option", f"size={size}",
            "--device", "cpu", "--workers", "0"]


def build_broken(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False):
    raise RuntimeError("factory exploded on purpose")


def build_one_by_one(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False):
    return torch.nn.Conv2d(in_channels, num_classes, kernel_size=1)


def build_tiny(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False):
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                               torch.nn.ReLU(), torch.nn.Conv2d(8, num_classes, 1))


class BenchmarkTestModels:
    @hookimpl
    def covseg_models(self):
        return [ModelEntry("broken-net", build_broken, "Raises when built (test).", family="test"),
                ModelEntry("one-by-one", build_one_by_one, "One 1x1 convolution (test).", family="test"),
                ModelEntry("tiny-net", build_tiny, "Conv-BN-ReLU-conv (test).", family="test")]


@pytest.fixture
def test_models():
    """Two extra models in this process's registry; a fresh registry afterwards."""
    get_registry().register(BenchmarkTestModels(), name="benchmark-test-models", package="covseg-tests")
    yield
    get_registry.cache_clear()


@pytest.fixture
def tiny_plugin_everywhere(tmp_path, monkeypatch):
    """tests/tiny_model.py's plugin installed for this process and every process it starts (PYTHONPATH):
    a Slurm task and a benchmark worker find the model as a user's installed plugin; forgotten after."""
    plugins = write_tiny_plugin(tmp_path / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(plugins))
    get_registry.cache_clear()
    try:
        yield TINY_PLUGIN_MODEL
    finally:
        get_registry.cache_clear()


def table_row(markdown: str, model: str) -> dict[str, str]:
    """The results.md row of ``model`` as header -> cell."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    headers = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if cells[0] == model:
            return dict(zip(headers, cells, strict=True))
    raise AssertionError(f"no row for {model} in results.md")


def csv_number(text: str) -> float | None:
    return float(text) if text else None


def summary_of(out: Path, run_dir: str) -> dict:
    return json.loads((out / run_dir / "summary.json").read_text())


def run_dirs(out: Path) -> set[Path]:
    return {path for path in (out / "runs").glob("seed*/*/*") if path.is_dir()}


@pytest.mark.slow
def test_benchmark_writes_every_file_with_the_same_numbers_isolates_failures_and_resumes(
    tmp_path, test_models
):
    out = tmp_path / "bench"
    args = ["benchmark", "--models", "tiny-net,fcn-resnet50,broken-net", *tiny(64), "--lr", "0.002",
            "--no-pretrained", "--latency-size", "32", "--out", str(out)]
    first = cli.invoke(app, args)
    assert first.exit_code == 1, first.output  # the broken model fails; the report is still written
    for name in RESULT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    rows = {row["model"]: row for row in csv.DictReader((out / "results.csv").open())}
    by_model = {entry["model"]: entry for entry in results["models"]}
    assert list(by_model) == ["tiny-net", "fcn-resnet50", "broken-net"]
    split_file = str(out / "split.json")
    for model in ("tiny-net", "fcn-resnet50"):
        entry = by_model[model]
        assert entry["status"] == "done" and entry["finished_seeds"] == [0]
        seed = entry["per_seed"][0]
        summary = summary_of(out, seed["run_dir"])
        config = json.loads((out / seed["run_dir"] / "config.json").read_text())
        assert config["split_file"] == split_file and config["epochs"] == 1 and config["image_size"] == 64
        assert config["lr"] == 0.002 and config["sources"]["lr"] == "--lr"  # shared: reaches every pair
        row = table_row(markdown, model)
        for column in COLUMNS:
            if column.source == "measure":
                continue
            expected = (split_metrics(summary, column.source).get(column.metric) if column.source in SPLITS
                        else summary[column.key])
            assert seed[column.key] == expected == entry["mean"][column.key], column.key
            interval = entry["interval"].get(column.key)
            if column.key in MAIN_KEYS:
                assert row[column.header] == format_stat(Stat.of([expected]), column, interval), column.key
            assert csv_number(rows[model][column.key]) == expected, column.key
        assert entry["interval"]["test/miou"] is None  # no test set
        assert entry["interval"]["validation/miou"] == summary["validation"]["intervals"]["miou"]
        measured = entry["measurements"]
        assert measured["params_m"] == pytest.approx(summary["params_m"])
        assert measured["gflops"] > (100 if model == "fcn-resnet50" else 0)  # counted at 512x512
        assert measured["latency_ms"] > 0 and measured["latency_size"] == 32
        assert row["Params (M)"] == f"{measured['params_m']:.1f}"
        assert row["ONNX CPU latency (ms)"] == f"{measured['latency_ms']:.1f}"
        assert row["Validation mIoU"].startswith(f"{summary['best_metrics']['miou']:.4f} [")
        assert row["Test mIoU"] == "n/a"
        assert row["Status"] == "done"
        in_the_study = model == "fcn-resnet50"  # the reference study reported its seven models only
        assert rows[model]["reference_miou"] == (REFERENCE_STUDY["miou"] if in_the_study else "")
    broken = by_model["broken-net"]
    assert broken["status"] == "failed" and broken["finished_seeds"] == []
    assert "factory exploded on purpose" in broken["errors"][0]
    assert table_row(markdown, "broken-net")["Status"].startswith(
        "failed (0/1 done): seed 0: model 'broken-net' (covseg-tests) failed to build: RuntimeError: factory")
    assert "factory exploded on purpose" in (out / "logs" / "broken-net-seed0.log").read_text()
    reference = table_row(markdown, REFERENCE_STUDY["label"])
    assert reference["Validation mIoU"] == REFERENCE_STUDY["miou"] == "0.70-0.72"
    assert reference["Validation accuracy"] == REFERENCE_STUDY["pixel_accuracy"] == "~0.97"
    assert results["settings"]["lr"] == 0.002 and results["settings_sources"]["lr"] == "--lr"
    assert json.loads((out / "benchmark.json").read_text())["settings"]["lr"] == 0.002
    # Both finished runs trained on the one split of the benchmark.
    for model in ("tiny-net", "fcn-resnet50"):
        run_split = json.loads((out / by_model[model]["per_seed"][0]["run_dir"] / "split.json").read_text())
        assert run_split == json.loads((out / "split.json").read_text())

    # A rerun skips the finished pairs: no new run folder, their records and measurements untouched.
    before = run_dirs(out)
    records = {name: (out / "jobs" / f"{name}-seed0.json").read_text()
               for name in ("tiny-net", "fcn-resnet50")}
    measured_at = (out / "measurements" / "tiny-net.json").stat().st_mtime_ns
    second = cli.invoke(app, args)
    assert second.exit_code == 1, second.output
    assert "skipped: tiny-net-seed0, fcn-resnet50-seed0" in second.output
    assert run_dirs(out) == before
    for name, text in records.items():
        assert (out / "jobs" / f"{name}-seed0.json").read_text() == text
    assert (out / "measurements" / "tiny-net.json").stat().st_mtime_ns == measured_at
    assert json.loads((out / "results.json").read_text())["models"][0] == results["models"][0]

    # benchmarks/paired_differences.py reads the same folder: one pair, its difference the means'.
    script = subprocess.run([sys.executable, "paired_differences.py", str(out), "--split", "val",
                             "--resamples", "50"], cwd=REPO_ROOT / "benchmarks", capture_output=True,
                            text=True, check=True)
    (pair,) = [line.split(" | ") for line in script.stdout.splitlines() if line.startswith("| tiny-net")
               or line.startswith("| fcn-resnet50")]
    means = {model: by_model[model]["mean"]["validation/miou"] for model in ("tiny-net", "fcn-resnet50")}
    first, second = pair[0].removeprefix("| "), pair[1]
    assert float(pair[3]) == pytest.approx(means[first] - means[second], abs=5e-4)
    assert pair[5] in ("yes", "no") and pair[6] in ("yes |", "no |")

    # --latency-size 0 on a rerun: test_latency_size_0_keeps_the_latency_measured_before_on_the_same_run.


@pytest.mark.slow
def test_slurm_array_tasks_fill_one_folder_then_workers_resume_and_report_only_gathers(tmp_path,
                                                                                      tiny_plugin_everywhere):
    out = tmp_path / "shared"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "COVSEG_BENCHMARK_OUT": str(out), "COVSEG_BENCHMARK_MODELS": TINY_PLUGIN_MODEL,
           "COVSEG_BENCHMARK_SEEDS": "0,1"}
    script = str(REPO_ROOT / "benchmarks" / "slurm_array.sh")
    for index in ("0", "1"):  # what sbatch --array=0-1 runs, one task after the other
        task = subprocess.run(["bash", script, *tiny(32, count=6)],
                              env={**env, "SLURM_ARRAY_TASK_ID": index}, capture_output=True, text=True,
                              timeout=300)
        assert task.returncode == 0, task.stdout + task.stderr
        assert "--report-only" in task.stdout
    assert not (out / "results.md").exists()  # array tasks train only; the gather step reports
    seeds = {seed: read_record(out, Pair(TINY_PLUGIN_MODEL, seed)) for seed in (0, 1)}
    assert all(record.status == "done" for record in seeds.values())
    assert [record.run_dir.split("/")[:3] for record in seeds.values()] == [
        ["runs", "seed0", TINY_PLUGIN_MODEL], ["runs", "seed1", TINY_PLUGIN_MODEL]]

    # Seed 1 "was cut off" after its last checkpoint: a --jobs 2 rerun over seeds 0..2 skips seed 0,
    # resumes seed 1 in its own run folder and trains seed 2, in two worker processes.
    (out / seeds[1].run_dir / "summary.json").unlink()
    before = run_dirs(out)
    rerun = cli.invoke(app, ["benchmark", "--models", TINY_PLUGIN_MODEL, "--seeds", "0,1,2",
                             *tiny(32, count=6), "--jobs", "2", "--latency-size", "0", "--out", str(out)])
    assert rerun.exit_code == 0, rerun.output
    assert f"skipped: {TINY_PLUGIN_MODEL}-seed0" in rerun.output and "started on CPU worker" in rerun.output
    new = run_dirs(out) - before
    assert [path.parent.parent.name for path in new] == ["seed2"]
    assert read_record(out, Pair(TINY_PLUGIN_MODEL, 1)).run_dir == seeds[1].run_dir
    assert "Resuming" in (out / "logs" / f"{TINY_PLUGIN_MODEL}-seed1.log").read_text()

    gathered = cli.invoke(app, ["benchmark", "--report-only", "--latency-size", "0", "--out", str(out)])
    assert gathered.exit_code == 0, gathered.output
    entry = json.loads((out / "results.json").read_text())["models"][0]
    assert entry["finished_seeds"] == [0, 1, 2]
    values = [summary_of(out, seed["run_dir"])["best_metrics"]["pixel_accuracy"]
              for seed in entry["per_seed"]]
    assert entry["mean"]["validation/pixel_accuracy"] == pytest.approx(statistics.mean(values))
    assert entry["std"]["validation/pixel_accuracy"] == pytest.approx(statistics.stdev(values))
    cell = table_row((out / "results.md").read_text(), TINY_PLUGIN_MODEL)["Validation accuracy"]
    assert cell.startswith(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} [")
    assert entry["measurements"]["latency_ms"] is None


# ---- pieces ---------------------------------------------------------------------------------------
def test_flops_and_params_are_counted_on_the_meta_device(test_models):
    params_m, gflops = measure.params_and_gflops("one-by-one", size=512)
    assert params_m * 1e6 == pytest.approx(3 * 4 + 4)
    assert gflops * 1e9 == pytest.approx(2 * 3 * 4 * 512 * 512)  # a multiply-add is 2 FLOPs


def test_latency_size_0_keeps_the_latency_measured_before_on_the_same_run(tmp_path, monkeypatch):
    timed: list[int] = []

    def fake_latency(run_dir, size):
        timed.append(size)
        return 12.5, 2

    monkeypatch.setattr(measure, "onnx_cpu_latency", fake_latency)
    run = tmp_path / "runs" / "unet"
    first = measure.measure_model(tmp_path, "unet", run, 256)
    assert (first.latency_ms, first.latency_size, first.latency_earlier) == (12.5, 256, False)
    cache = (tmp_path / "measurements" / "unet.json").read_text()
    again = measure.measure_model(tmp_path, "unet", run, 0)
    assert (again.latency_ms, again.latency_size, again.latency_earlier) == (12.5, 256, True)
    assert timed == [256] and (tmp_path / "measurements" / "unet.json").read_text() == cache
    other_run = measure.measure_model(tmp_path, "unet", tmp_path / "runs" / "other", 0)
    assert other_run.latency_ms is None and other_run.latency_size == 0  # another best.pt: not its latency


def test_mean_and_sample_std_formatting():
    column = next(column for column in COLUMNS if column.key == "validation/miou")
    stat = Stat.of([0.70, 0.72, None, math.nan])
    assert stat.n == 2 and stat.mean == pytest.approx(0.71) and stat.std == pytest.approx(0.0141421356)
    assert format_stat(stat, column) == "0.7100 ± 0.0141"
    assert format_stat(Stat.of([0.5]), column) == "0.5000"
    assert format_stat(Stat.of([]), column) == "n/a"
    epoch = next(column for column in COLUMNS if column.key == "best_epoch")
    assert format_stat(Stat.of([12.0]), epoch) == "12"


def test_pairs_are_model_major_and_only_pair_checks_its_range():
    pairs = make_pairs(["unet", "fcn-resnet50"], [0, 1, 2])
    assert [pair.key for pair in pairs[:4]] == [
        "unet-seed0", "unet-seed1", "unet-seed2", "fcn-resnet50-seed0"]
    assert select_pair(pairs, 5) == Pair("fcn-resnet50", 2)
    with pytest.raises(CovsegError, match=r"--only-pair 6: the plan has 6 pair\(s\).*numbered 0..5"):
        select_pair(pairs, 6)


@pytest.mark.parametrize(("text", "message"), [
    ("0,x", r"--seeds '0,x': expected comma-separated integers"),
    ("-1", r"--seeds '-1': expected comma-separated integers from 0 to 4294967295"),
    ("0,4294967296", r"--seeds '0,4294967296': expected comma-separated integers from 0 to"),
    ("", r"--seeds '': expected"),
    ("0,1,0", r"--seeds '0,1,0': seed 0 given twice; each seed runs once"),
])
def test_bad_seeds(text, message):
    with pytest.raises(CovsegError, match=message):
        parse_seeds(text)


def test_models_are_checked_against_the_registry():
    assert parse_models("unet, fcn-resnet50,") == ["unet", "fcn-resnet50"]
    with pytest.raises(CovsegError, match=r"^--models 'unet, unet': unet given twice; each model runs once"):
        parse_models("unet, unet")
    assert len(parse_models("all")) >= 7
    with pytest.raises(CovsegError, match=r"--models: unknown model 'unet2'.*Did you mean unet"):
        parse_models("unet,unet2")


def test_a_benchmark_folder_keeps_its_settings(tmp_path):
    settings = BenchmarkSettings.resolve({"epochs": 1, "image_size": 64})
    plan = prepare_plan(tmp_path, settings, make_pairs(["unet"], [0]))
    assert load_plan(tmp_path).settings == plan.settings and plan.settings.epochs == 1
    prepare_plan(tmp_path, settings, make_pairs(["fcn-resnet50"], [1]))
    assert load_plan(tmp_path).pairs == [Pair("unet", 0), Pair("fcn-resnet50", 1)]
    with pytest.raises(CovsegError, match=r"holds a benchmark run with --epochs 1, not 2; every pair must"):
        prepare_plan(tmp_path, BenchmarkSettings.resolve({"epochs": 2, "image_size": 64}), [])
    with pytest.raises(CovsegError, match=r"holds a benchmark run with --lr 0.001, not 0.002"):
        prepare_plan(tmp_path, BenchmarkSettings.resolve({"epochs": 1, "image_size": 64, "lr": 0.002}), [])


def test_a_folder_from_before_a_setting_existed_reads_with_the_value_it_ran_with(tmp_path):
    # A benchmark.json written before the test set, folds, label sets and recipe candidates existed
    # lacks them; those runs had no test set, no EMA, ..., so a rerun with the same options adds
    # seeds to the folder instead of refusing it.
    settings = BenchmarkSettings.resolve({"epochs": 1, "image_size": 64})
    prepare_plan(tmp_path, settings, make_pairs(["unet"], [0]))
    record = json.loads((tmp_path / "benchmark.json").read_text())
    for name in ADDED_SETTINGS:
        del record["settings"][name]
    (tmp_path / "benchmark.json").write_text(json.dumps(record))
    assert load_plan(tmp_path).settings.values == settings.values
    plan = prepare_plan(tmp_path, settings, make_pairs(["unet"], [1]))
    assert plan.pairs == [Pair("unet", 0), Pair("unet", 1)]
    # A setting of the format itself is still required.
    del record["settings"]["lr"]
    (tmp_path / "benchmark.json").write_text(json.dumps(record))
    with pytest.raises(CovsegError, match=r"benchmark.json: settings has no 'lr'"):
        load_plan(tmp_path)


@pytest.mark.parametrize(("args", "message"), [
    (["--report-only"], "holds no benchmark (benchmark.json is missing)"),
    (["--report-only", "--epochs", "3"], "--report-only reads the settings from"),
    (["--only-pair", "0", "--jobs", "2"], "--only-pair 0 runs one pair in this process; drop --jobs 2"),
    (["--jobs", "0"], "--jobs 0: must be at least 1"),
    (["--device", "tpu"], "--device tpu: expected auto, cpu, cuda or cuda:N"),
    (["--epochs", "0"], "--epochs 0: must be between 1 and 100000"),
    (["--checkpoint-every", "0", "--device", "cpu"], "--checkpoint-every 0: must be between 1 and 100000"),
    (["--latency-size", "8", "--device", "cpu"], "--latency-size 8: must be 0 (no latency) or between 32"),
    (["--latency-size", "100000", "--device", "cpu"], "--latency-size 100000: must be 0 (no latency) or"),
    (["--models", "nope"], "--models: unknown model 'nope'"),
    (["--only-pair", "3", "--models", "unet"], "--only-pair 3: the plan has 1 pair(s)"),
    (["--recipe", "fast"], "--recipe fast: unknown recipe; choose one of reference, default"),
    (["--data", "no-such-folder", "--models", "unet", "--device", "cpu"], "no-such-folder does not exist"),
    (["--dataset-option", "count", "--device", "cpu"], "--dataset-option 'count' is not key=value"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    result = cli.invoke(app, ["benchmark", "--out", str(tmp_path / "bench"), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "bench" / "benchmark.json").exists()  # a typo does not lock the folder


def test_jobs_take_one_gpu_each_through_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")
    slots = runner.worker_slots(2, "auto")
    assert [(slot.device, slot.env["CUDA_VISIBLE_DEVICES"]) for slot in slots] == [
        ("cuda", "3"), ("cuda", "5")]
    with pytest.raises(CovsegError, match=r"--jobs 5: this machine has 4 GPU\(s\) and each job takes one"):
        runner.worker_slots(5, "cuda")
    with pytest.raises(CovsegError, match=r"--device cuda:1 pins one GPU, but --jobs 2"):
        runner.worker_slots(2, "cuda:1")


def test_cpu_jobs_share_the_cores(monkeypatch):
    monkeypatch.setattr(runner, "cpu_cores", lambda: 8)
    slots = runner.worker_slots(3, "cpu")
    assert [slot.threads for slot in slots] == [2, 2, 2]
    assert slots[0].env["CUDA_VISIBLE_DEVICES"] == "" and slots[0].env["OMP_NUM_THREADS"] == "2"
    with pytest.raises(CovsegError, match=r"--jobs 9: this machine has 8 CPU core\(s\) and each job needs"):
        runner.worker_slots(9, "cpu")


def test_a_worker_that_dies_is_recorded_as_failed(tmp_path, monkeypatch):
    plan = prepare_plan(tmp_path, BenchmarkSettings.resolve({"epochs": 1}), make_pairs(["unet"], [0, 1]))
    monkeypatch.setattr(runner, "worker_command", lambda *args: [
        sys.executable, "-c", "print('out of memory, pretend'); import os; os._exit(3)"])
    records = runner.run_pairs(plan, plan.pairs, jobs=2, options=RunOptions({"device": "cpu"}))
    for record in records:
        assert record.status == "failed"
        assert record.error == "worker process exited with code 3; last output: out of memory, pretend"
        assert read_record(tmp_path, record.pair) == record


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_needs_an_array_task_id(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "SLURM_ARRAY_TASK_ID"}
    task = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "slurm_array.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert task.returncode != 0 and "run as a Slurm array task" in task.stderr
