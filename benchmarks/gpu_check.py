"""The GPU check, step by step, within a time budget (run it through benchmarks/gpu_check.sh).

Steps, in order of what matters most:

1. environment: the card, its memory and driver, torch, CUDA, cuDNN, onnxruntime, CPU cores;
2. speed: benchmarks/train_speed.py for every model at full size (covseg's step with augmentation
   in the loop against the plain fp32 eager loop, same run; target b/a >= 2);
3. training: ``covseg train`` of every model on the real slices with a held-out test set, the
   same split and schedule for all. One epoch of the slowest model is measured first; the
   speed table scales it to each model, and the epochs are chosen so that all models fit the
   time left (at most ``GPU_CHECK_MAX_EPOCHS``);
4. compile: ``covseg train --compile`` of one model, its speed against the same model's eager run.

Every step checks the clock: one that would overrun its share is skipped, and the report says
so with the numbers. Everything lands in ``GPU_CHECK_OUT`` as at most five small files:
``report.md`` (all tables), ``results.json`` (the same, machine-readable, with the timeline),
``train_speed.md`` and ``train_speed.json`` (step 2), ``gpu_check.log`` (written by the shell
script: everything printed). The training runs (checkpoints) go to ``GPU_CHECK_WORK``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_FRACTION = 0.2
VAL_FRACTION = 0.2
SEED = 0
BATCH = 8
REPORT, RESULTS, SPEED_JSON, SPEED_MD = "report.md", "results.json", "train_speed.json", "train_speed.md"


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise SystemExit(f"error: {name}={text}: expected a number") from None
    if not math.isfinite(value) or value < 0:
        raise SystemExit(f"error: {name}={text}: expected a number of 0 or more")
    return value


@dataclass
class CheckSettings:
    """The check's settings, from ``GPU_CHECK_*`` variables; ``GPU_CHECK_DRY_RUN=1`` makes every size tiny."""

    dry_run: bool
    data: Path
    out: Path
    work: Path
    budget_s: float
    models: str
    device: str
    image_size: int
    speed_size: int
    speed_steps: int
    speed_warmup: int
    max_epochs: int
    compile_model: str
    compile_epochs: int
    compile_reserve_s: float
    speed_share: float
    workers: int
    precision: str = "bf16"
    margin_s: float = 10.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> CheckSettings:
        dry = environ.get("GPU_CHECK_DRY_RUN", "") not in ("", "0")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(environ.get("GPU_CHECK_OUT") or REPO_ROOT / "runs" / f"gpu-check-{stamp}")

        def number(name: str, gpu: float, cpu: float) -> float:
            return _number(environ, name, cpu if dry else gpu)

        return cls(
            dry_run=dry,
            data=Path(environ.get("COVSEG_MEDSEG100") or REPO_ROOT.parent / "shared" / "data" / "medseg100"),
            out=out,
            work=Path(environ.get("GPU_CHECK_WORK") or out.parent / f"{out.name}-work"),
            budget_s=number("GPU_CHECK_BUDGET_S", 480, 3600),
            models=environ.get("GPU_CHECK_MODELS") or "all",
            device=environ.get("GPU_CHECK_DEVICE") or ("cpu" if dry else "cuda"),
            image_size=int(number("GPU_CHECK_IMAGE_SIZE", 512, 32)),
            speed_size=int(number("GPU_CHECK_SPEED_SIZE", 512, 32)),
            speed_steps=int(number("GPU_CHECK_SPEED_STEPS", 15, 1)),
            speed_warmup=int(number("GPU_CHECK_SPEED_WARMUP", 3, 1)),
            max_epochs=max(1, int(number("GPU_CHECK_MAX_EPOCHS", 20, 1))),
            compile_model=environ.get("GPU_CHECK_COMPILE_MODEL") or "unet",
            compile_epochs=max(1, int(number("GPU_CHECK_COMPILE_EPOCHS", 3, 1))),
            compile_reserve_s=number("GPU_CHECK_COMPILE_RESERVE_S", 100, 0),
            speed_share=min(1.0, number("GPU_CHECK_SPEED_SHARE", 0.35, 0.35)),
            workers=int(number("GPU_CHECK_WORKERS", 4, 0)),
            precision=environ.get("GPU_CHECK_PRECISION") or "bf16",
        )


# ---- sizing the schedule ----------------------------------------------------------------------------
@dataclass
class Schedule:
    """The epochs every model trains for, the models that fit, and those left out (with why)."""

    epochs: int
    models: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    estimates_s: dict[str, float] = field(default_factory=dict)


def epoch_seconds(probe_model: str, probe_epoch_s: float, speeds: Mapping[str, float | None],
                  models: Sequence[str]) -> dict[str, float]:
    """Each model's epoch time: the probe's, scaled by the speed table's images/s (probe's / model's).

    A model without a speed (its row was skipped or failed) is given the probe's time; the probe is
    the slowest model measured, so that errs on the long side.
    """
    probe_speed = speeds.get(probe_model)
    estimates = {}
    for model in models:
        speed = speeds.get(model)
        scale = probe_speed / speed if probe_speed and speed else 1.0
        estimates[model] = probe_epoch_s * scale
    return estimates


def plan_schedule(seconds_left: float, overhead_s: float, epoch_s: Mapping[str, float],
                  max_epochs: int) -> Schedule:
    """The most epochs (1..max_epochs) for which every model's run fits in ``seconds_left``.

    A run costs ``overhead_s`` (start-up, data, model, first checkpoint) plus its epochs. When even
    one epoch of every model does not fit, models are left out from the end of the list until
    the rest do.
    """
    models = list(epoch_s)
    skipped: dict[str, str] = {}
    while models:
        per_epoch = sum(epoch_s[model] for model in models)
        available = seconds_left - overhead_s * len(models)
        epochs = min(max_epochs, math.floor(available / per_epoch)) if per_epoch > 0 else max_epochs
        if epochs >= 1:
            estimates = {model: overhead_s + epochs * epoch_s[model] for model in models}
            return Schedule(epochs, models, skipped, estimates)
        needed = overhead_s * len(models) + per_epoch
        skipped[models.pop()] = (f"not started: one epoch of every model needs ~{needed:.0f} s, "
                                 f"{max(seconds_left, 0):.0f} s were left for training")
    return Schedule(0, [], skipped, {})


# ---- the check ----------------------------------------------------------------------------------------
def say(text: str) -> None:
    print(f"gpu_check: {text}", flush=True)


class Check:
    """The steps of the check, their timeline and results (``results.json``)."""

    def __init__(self, settings: CheckSettings):
        self.settings = settings
        self.started = time.monotonic()
        self.results: dict[str, Any] = {"settings": {key: str(value) for key, value in
                                                     dataclasses.asdict(settings).items()},
                                        "timeline": [], "skipped": [], "failed": []}
        self.child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}

    # ---- clock --------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self, share: float = 1.0, reserve: float = 0.0) -> float:
        """Seconds until ``share`` of the budget, less ``reserve`` and the closing margin, is spent."""
        return self.settings.budget_s * share - reserve - self.settings.margin_s - self.elapsed()

    def skip(self, what: str, reason: str) -> None:
        say(f"SKIPPED {what}: {reason}")
        self.results["skipped"].append({"what": what, "reason": reason})

    def fail(self, what: str, error: str) -> None:
        say(f"FAILED {what}: {error}")
        self.results["failed"].append({"what": what, "error": error})

    def step(self, name: str, started: float, status: str) -> None:
        self.results["timeline"].append({"step": name, "start_s": round(started, 1),
                                         "seconds": round(self.elapsed() - started, 1), "status": status})

    def run(self, arguments: list[str], timeout: float) -> tuple[int, float]:
        """Run a child process (its output goes to ours); returns (exit code, seconds); 124: timed out."""
        started = time.monotonic()
        say("$ " + " ".join(arguments))
        try:
            code = subprocess.run(arguments, env=self.child_env, timeout=max(timeout, 1.0), check=False,
                                  stdin=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            code = 124
        return code, time.monotonic() - started

    # ---- 1. environment -------------------------------------------------------------------------------
    def environment(self) -> None:
        started = self.elapsed()
        import torch

        info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                                "cuda_runtime": torch.version.cuda, "cpu_cores": os.cpu_count(),
                                "machine": platform.platform()}
        if shutil.which("nvidia-smi"):
            query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                    "--format=csv,noheader"], capture_output=True, text=True, check=False)
            info["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
        if torch.cuda.is_available():
            properties = torch.cuda.get_device_properties(0)
            info.update(gpu=properties.name, gpu_count=torch.cuda.device_count(),
                        gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                        compute_capability=f"{properties.major}.{properties.minor}",
                        multiprocessors=properties.multi_processor_count,
                        cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
        else:
            info["gpu"] = None
        from importlib.metadata import PackageNotFoundError, version

        for package in ("torchvision", "timm", "albumentations", "covseg"):
            try:
                info[package] = version(package)
            except PackageNotFoundError:
                info[package] = None
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        info["onnxruntime"] = f"{onnxruntime.__version__} ({providers})"
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False)
        info["covseg_commit"] = commit.stdout.strip() or None
        from covseg.training import TrainConfig

        info["test_fraction_option"] = "test_fraction" in TrainConfig.settings()
        self.results["environment"] = info
        for key, value in info.items():
            say(f"{key}: {value}")
        self.step("environment", started, "done")

    # ---- 2. speed -------------------------------------------------------------------------------------
    def speed(self) -> None:
        started = self.elapsed()
        settings = self.settings
        budget = self.left(settings.speed_share)
        if budget <= 0:
            self.skip("speed table", f"no time left in its share ({settings.speed_share:.0%} of the budget)")
            self.step("speed", started, "skipped")
            return
        arguments = [sys.executable, str(REPO_ROOT / "benchmarks" / "train_speed.py"),
                     "--models", settings.models, "--size", str(settings.speed_size),
                     "--steps", str(settings.speed_steps), "--warmup", str(settings.speed_warmup),
                     "--workers", str(settings.workers), "--device", settings.device,
                     "--precision", settings.precision, "--channels-last", "--data", str(settings.data),
                     "--json", str(settings.out / SPEED_JSON), "--markdown", str(settings.out / SPEED_MD),
                     "--budget-s", f"{budget:.0f}"]
        code, _ = self.run(arguments, timeout=budget + 60)
        speed_file = settings.out / SPEED_JSON
        if code != 0 or not speed_file.is_file():
            self.fail("speed table", f"train_speed.py exited with {code}")
            self.step("speed", started, "failed")
            return
        report = json.loads(speed_file.read_text())
        self.results["speed"] = report
        for row in report["rows"]:
            if row.get("skipped"):
                self.skip(f"speed of {row['model']}", row["skipped"])
            elif row.get("error"):
                self.fail(f"speed of {row['model']}", row["error"])
        self.step("speed", started, "done")

    def speeds(self) -> dict[str, float | None]:
        rows = self.results.get("speed", {}).get("rows", [])
        return {row["model"]: row.get("covseg_img_s") for row in rows}

    # ---- 3. training ----------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        from covseg.core.registry import get_registry

        registry = get_registry()
        if self.settings.models == "all":
            return [entry.name for entry in registry.models()]
        return [registry.model(name.strip()).name for name in self.settings.models.split(",")]

    def held_out(self) -> dict[str, Any]:
        """How the test slices are kept out: ``--test-fraction`` when covseg offers it, else a split file."""
        if self.results["environment"]["test_fraction_option"]:
            return {"arguments": ["--test-fraction", str(TEST_FRACTION)], "test_ids": None,
                    "how": f"covseg train --test-fraction {TEST_FRACTION}"}
        import numpy as np

        from covseg.data.loading import load_slices
        from covseg.data.split import make_split

        ids = sorted(load_slices(None, self.settings.data, {}).ids)
        order = np.random.default_rng(SEED).permutation(len(ids))
        test_count = max(1, round(len(ids) * TEST_FRACTION))
        test_ids = sorted(ids[index] for index in order[:test_count])
        rest = [name for name in ids if name not in set(test_ids)]
        split = make_split(rest, val_fraction=VAL_FRACTION, seed=SEED)
        path = self.settings.work / "split-without-test.json"
        split.save(path)
        how = (f"this covseg has no --test-fraction: {len(test_ids)} slices drawn with seed {SEED} are left "
               f"out of the split file {path.name} and scored after training (fallback)")
        say(how)
        return {"arguments": ["--split", str(path)], "test_ids": test_ids, "how": how}

    def train_arguments(self, model: str, epochs: int, out: Path, extra: Sequence[str] = ()) -> list[str]:
        settings = self.settings
        return [sys.executable, "-m", "covseg", "train", model, "--data", str(settings.data),
                "--image-size", str(settings.image_size), "--epochs", str(epochs), "--batch-size", str(BATCH),
                "--seed", str(SEED), "--workers", str(settings.workers), "--device", settings.device,
                "--precision", settings.precision, "--channels-last", "--checkpoint-every", str(epochs),
                "--out", str(out), *self.held["arguments"], *extra]

    def train_one(self, label: str, model: str, epochs: int, timeout: float,
                  extra: Sequence[str] = ()) -> dict[str, Any]:
        """One ``covseg train`` run and what its files say."""
        out = self.settings.work / "runs" / label
        code, seconds = self.run(self.train_arguments(model, epochs, out, extra), timeout)
        record: dict[str, Any] = {"model": model, "label": label, "epochs": epochs, "exit_code": code,
                                  "process_s": round(seconds, 1)}
        runs = sorted((out / model).glob("*/summary.json")) if (out / model).is_dir() else []
        if code != 0 or not runs:
            record["status"] = "timed out" if code == 124 else f"failed (exit {code})"
            return record
        run_dir = runs[-1].parent
        summary = json.loads(runs[-1].read_text())
        record.update(status="done", run_dir=str(run_dir), summary_wall_s=summary.get("wall_time_s"),
                      best_epoch=summary.get("best_epoch"), val=summary.get("best_metrics", {}),
                      train_img_s=summary.get("train_images_per_s"), precision=summary.get("precision"),
                      params_m=summary.get("params_m"))
        test = summary.get("test")
        if isinstance(test, dict):
            record["test"] = test
        elif self.held["test_ids"] is not None:
            record["test"] = self.score_test(run_dir)
        return record

    def score_test(self, run_dir: Path) -> dict[str, Any]:
        """best.pt on the held-out slices (the fallback when covseg train has no --test-fraction)."""
        import torch
        from torch.utils.data import DataLoader

        from covseg.data.dataset import SliceDataset
        from covseg.data.loading import load_slices
        from covseg.devices import resolve_device
        from covseg.evaluation.evaluate import evaluate_model
        from covseg.evaluation.trained import load_trained_model
        from covseg.training.loop import StepSettings

        device = resolve_device(self.settings.device)
        step = StepSettings.for_device(device, self.settings.precision, channels_last=True)
        trained = load_trained_model(run_dir, device)
        slices = load_slices(None, self.settings.data, {})
        ids = self.held["test_ids"]
        dataset = SliceDataset(slices, ids, trained.normalisation, image_size=trained.image_size)
        loader = DataLoader(dataset, batch_size=BATCH, pin_memory=device.type == "cuda")
        _, metrics = evaluate_model(step.prepare_model(trained.model), loader, device, trained.num_classes,
                                    step.autocast_dtype, channels_last=step.channels_last)
        del trained
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"what": "best.pt on the held-out slices, scored by gpu_check (fallback)", "slices": len(ids),
                "metrics": metrics}

    def training(self) -> None:
        started = self.elapsed()
        settings = self.settings
        models = self.model_names()
        self.held = self.held_out()
        self.results["held_out"] = self.held["how"]
        reserve = settings.compile_reserve_s
        speeds = self.speeds()
        measured = {model: speed for model, speed in speeds.items() if speed and model in models}
        probe_model = min(measured, key=measured.get) if measured else models[0]
        if self.left(reserve=reserve) <= 0:
            for model in models:
                self.skip(f"training of {model}", "no time left before the compile step's reserve")
            self.step("training", started, "skipped")
            return
        say(f"measuring one epoch of {probe_model} (the slowest in the speed table) to size the schedule")
        probe = self.train_one(f"probe-{probe_model}", probe_model, 1, self.left(reserve=reserve))
        self.results["probe"] = probe
        if probe["status"] == "done":
            wall = probe["summary_wall_s"] or probe["process_s"]
            overhead = max(probe["process_s"] - wall, 0.0)
            estimates = epoch_seconds(probe_model, wall, speeds, models)
        else:
            self.fail(f"probe epoch of {probe_model}", probe["status"])
            overhead, estimates = 0.0, {model: 0.0 for model in models}
        schedule = plan_schedule(self.left(reserve=reserve), overhead, estimates, settings.max_epochs)
        if probe["status"] != "done":
            schedule = Schedule(1, models, {}, {})
        self.results["schedule"] = {"epochs": schedule.epochs, "models": schedule.models,
                                    "probe_model": probe_model, "overhead_s": round(overhead, 1),
                                    "epoch_s": {model: round(value, 2) for model, value in estimates.items()},
                                    "estimates_s": {model: round(value, 1)
                                                    for model, value in schedule.estimates_s.items()}}
        say(f"schedule: {schedule.epochs} epoch(s) for {len(schedule.models)} model(s), about "
            f"{sum(schedule.estimates_s.values()):.0f} s in all; {self.left(reserve=reserve):.0f} s left")
        for model, reason in schedule.skipped.items():
            self.skip(f"training of {model}", reason)
        records = []
        for model in schedule.models:
            left = self.left(reserve=reserve)
            estimate = schedule.estimates_s.get(model, 0.0)
            if left <= 0 or estimate > left * 1.25:
                reason = f"not started: ~{estimate:.0f} s needed, {max(left, 0):.0f} s left"
                self.skip(f"training of {model}", reason)
                continue
            record = self.train_one(model, model, schedule.epochs, timeout=left)
            records.append(record)
            if record["status"] != "done":
                self.fail(f"training of {model}", record["status"])
        self.results["models"] = records
        self.step("training", started, "done")

    # ---- 4. compile -----------------------------------------------------------------------------------
    def compile_check(self) -> None:
        started = self.elapsed()
        model = self.settings.compile_model
        left = self.left()
        if left < min(self.settings.compile_reserve_s, 60) * 0.5:
            self.skip(f"--compile of {model}", f"{max(left, 0):.0f} s left of the budget")
            self.step("compile", started, "skipped")
            return
        if not hasattr(self, "held"):
            self.held = self.held_out()
        record = self.train_one(f"compile-{model}", model, self.settings.compile_epochs, timeout=left,
                                extra=["--compile"])
        if record["status"] == "done":
            from covseg.checkpoint import load_checkpoint

            keys = load_checkpoint(Path(record["run_dir"]) / "best.pt")["state_dict"]
            record["plain_weights"] = not any("_orig_mod." in key for key in keys)
        else:
            self.fail(f"--compile of {model}", record["status"])
        eager = next((item for item in self.results.get("models", []) if item["model"] == model
                      and item["status"] == "done"), None)
        record["eager_img_s"] = eager["train_img_s"] if eager else None
        self.results["compile"] = record
        self.step("compile", started, record["status"])

    # ---- report ---------------------------------------------------------------------------------------
    def report(self) -> str:
        results = self.results
        environment = results.get("environment", {})
        card = environment.get("gpu") or f"no GPU ({platform.processor() or platform.machine()} CPU)"
        lines = [f"# covseg GPU check: {card}", ""]
        if self.settings.dry_run:
            lines += ["**Dry run** (GPU_CHECK_DRY_RUN=1): tiny sizes on the CPU; the numbers check the "
                      "script, not a GPU.", ""]
        lines += ["## Environment", "", "| item | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in environment.items()]
        lines += ["", "## Training speed", ""]
        speed_md = self.settings.out / SPEED_MD
        lines += [speed_md.read_text().strip() if speed_md.is_file() else "not measured (see below)", ""]
        lines += self._models_table() + self._compile_table()
        lines += ["## Time", "", f"Budget {self.settings.budget_s:.0f} s; used {self.elapsed():.0f} s.", "",
                  "| step | started at s | seconds | status |", "|---|---|---|---|"]
        lines += [f"| {item['step']} | {item['start_s']} | {item['seconds']} | {item['status']} |"
                  for item in results["timeline"]]
        for title, key, field_name in (("Skipped", "skipped", "reason"), ("Failed", "failed", "error")):
            if results[key]:
                lines += ["", f"## {title}", ""]
                lines += [f"- {item['what']}: {item[field_name]}" for item in results[key]]
        return "\n".join(lines) + "\n"

    def _models_table(self) -> list[str]:
        schedule = self.results.get("schedule")
        lines = ["## The models on the real slices", ""]
        if not schedule:
            return [*lines, "not run (see below)", ""]
        lines += [f"{schedule['epochs']} epoch(s) each, default recipe, batch {BATCH}, "
                  f"{self.settings.image_size}x{self.settings.image_size}, seed {SEED}; held-out test: "
                  f"{self.results.get('held_out')}. Validation mIoU is the best epoch's (the one best.pt "
                  "holds); test metrics are best.pt's on slices no run trained or selected on.", "",
                  "| model | precision | val mIoU | test mIoU | test lesion mIoU | test accuracy | "
                  "train img/s | run s | status |", "|---|---|---|---|---|---|---|---|---|"]

        def cell(value: Any) -> str:
            return f"{value:.4f}" if isinstance(value, float) else "—"

        for record in self.results.get("models", []):
            test = (record.get("test") or {}).get("metrics", {})
            speed = record.get("train_img_s")
            lines.append(f"| {record['model']} | {record.get('precision') or '—'} | "
                         f"{cell(record.get('val', {}).get('miou'))} | {cell(test.get('miou'))} | "
                         f"{cell(test.get('lesion_miou'))} | {cell(test.get('pixel_accuracy'))} | "
                         f"{f'{speed:.1f}' if speed else '—'} | {record['process_s']:.0f} | "
                         f"{record['status']} |")
        return [*lines, ""]

    def _compile_table(self) -> list[str]:
        record = self.results.get("compile")
        lines = ["## torch.compile", ""]
        if not record:
            return [*lines, "not run (see below)", ""]
        compiled, eager = record.get("train_img_s"), record.get("eager_img_s")
        ratio = f"{compiled / eager:.2f}" if compiled and eager else "—"
        lines += [f"`covseg train {record['model']} --compile`, {record['epochs']} epoch(s) (the first "
                  "compiles; img/s is the median of the later ones) against the eager run above.", "",
                  "| model | eager img/s | compiled img/s | compiled/eager | run s | "
                  "plain weights in best.pt | status |", "|---|---|---|---|---|---|---|",
                  f"| {record['model']} | {f'{eager:.1f}' if eager else '—'} | "
                  f"{f'{compiled:.1f}' if compiled else '—'} | {ratio} | {record['process_s']:.0f} | "
                  f"{record.get('plain_weights', '—')} | {record['status']} |", ""]
        return lines

    def finish(self) -> int:
        from covseg.files import write_json, write_text

        self.results["elapsed_s"] = round(self.elapsed(), 1)
        report = self.report()
        write_text(self.settings.out / REPORT, report)
        write_json(self.settings.out / RESULTS, self.results)
        print(report, flush=True)
        say(f"{self.elapsed():.0f} s of {self.settings.budget_s:.0f}; {len(self.results['skipped'])} "
            f"skipped, {len(self.results['failed'])} failed; files in {self.settings.out}")
        return 1 if self.results["failed"] else 0


def main() -> int:
    settings = CheckSettings.from_environment(os.environ)
    settings.out.mkdir(parents=True, exist_ok=True)
    settings.work.mkdir(parents=True, exist_ok=True)
    check = Check(settings)
    check.environment()
    if not settings.dry_run and check.results["environment"].get("gpu") is None:
        say("no CUDA GPU is visible; GPU_CHECK_DRY_RUN=1 runs every step on the CPU at tiny sizes")
        check.fail("environment", "no CUDA GPU")
        check.finish()
        return 2
    check.speed()
    check.training()
    check.compile_check()
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
