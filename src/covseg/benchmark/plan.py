"""The benchmark plan: which model/seed pairs, the settings they share, and which are done.

A benchmark folder (``--out DIR``) holds everything, so that any number of processes, GPUs or
Slurm array tasks can work on it and a rerun picks up where the last one stopped:

- ``benchmark.json``: the settings every pair trains under and the pairs asked for so far
- ``split.json``: the one split every model and seed trains on (training, validation and test ids;
  with ``--folds K`` the K folds and the test ids: every pair is then a K-fold cross-validation)
- ``runs/seed<k>/<model>/<timestamp>/``: the training runs (``covseg train`` run folders)
- ``jobs/<model>-seed<k>.json``: each pair's status, run folder and error (the jobs index)
- ``logs/<model>-seed<k>.log``: output of worker processes and tracebacks of failures
- ``measurements/<model>.json``: parameters, GFLOPs and ONNX CPU latency, measured once per model
- ``results.md``, ``results.csv``, ``results.json`` and the PNG plots: the report

A pair is finished when its run has a summary.json; finished pairs are never run again.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.data.fingerprint import slice_hashes
from covseg.data.loading import load_slices
from covseg.data.split import Folds, Split, carve_test, make_folds, make_split, read_split_file
from covseg.files import read_json, write_json
from covseg.runs import LAST_CHECKPOINT, RUN_CONFIG, SUMMARY, is_cross_validation
from covseg.training.config import TrainConfig, shared_settings
from covseg.training.settings import BENCHMARK, MACHINE, explicit, format_number, option_name

FORMAT = "covseg-benchmark-2"
ADDED_SETTINGS = ("test_fraction", "test_dataset", "test_data", "test_dataset_options", "folds",
                  "num_classes", "momentum", "foreground_oversampling", "ema_decay")
"""Shared settings added after the format was fixed. Each was added with a default that keeps the
earlier behaviour (no test set, no folds, classes from the data, sgd's momentum 0.9, no
oversampling, no EMA), so a folder that lacks one ran with its TrainConfig default."""
SETTINGS_FILE = "benchmark.json"
SPLIT_FILE = "split.json"
RUNS_DIR = "runs"
JOBS_DIR = "jobs"
LOGS_DIR = "logs"

DONE, FAILED, RUNNING, PENDING = "done", "failed", "running", "pending"


@dataclass(frozen=True)
class Pair:
    """One job of the benchmark: train ``model`` with ``seed``."""

    model: str
    seed: int

    @property
    def key(self) -> str:
        """``unet-seed0``: the name of the pair's job record and log file."""
        return f"{self.model}-seed{self.seed}"


@dataclass(frozen=True)
class RunOptions:
    """How this machine runs its pairs: the per-machine settings given explicitly (``--device``,
    ``--workers``, ``--precision``, ...: TrainConfig fields of benchmark scope "machine"). Unlike
    :class:`BenchmarkSettings` these may differ between workers; the rest keep covseg train's
    defaults.
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        machine = machine_settings()
        for name in self.values:
            if name not in machine:
                raise CovsegError(f"{name} is not a per-machine setting (those are "
                                  f"{', '.join(machine)})")

    @property
    def device(self) -> str:
        return self.values.get("device", "auto")

    def overrides(self) -> dict[str, Any]:
        """The TrainConfig fields these options set."""
        return dict(self.values)

    def to_json(self) -> str:
        """The form a worker process receives (``--run-options``)."""
        return json.dumps({"values": self.values, "sources": self.sources})

    @classmethod
    def from_json(cls, text: str) -> RunOptions:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CovsegError(f"--run-options is not JSON: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
            raise CovsegError("--run-options must be a JSON object with 'values'")
        values = TrainConfig.check_layer(data["values"], "--run-options", BENCHMARK)
        return cls(values, {key: str(value) for key, value in dict(data.get("sources") or {}).items()})


def _added_setting_defaults() -> dict[str, Any]:
    """What a benchmark folder written before :data:`ADDED_SETTINGS` existed ran with."""
    defaults = {item.name: item.default_factory() if item.default_factory is not dataclasses.MISSING
                else item.default for item in dataclasses.fields(TrainConfig)}
    return {name: defaults[name] for name in ADDED_SETTINGS}


def machine_settings() -> list[str]:
    """The settings each machine (worker) of a benchmark chooses for itself."""
    return [name for name, info in TrainConfig.settings().items()
            if info.scope == MACHINE and BENCHMARK in info.commands]


@dataclass(frozen=True)
class BenchmarkSettings:
    """What every pair shares; a benchmark folder keeps one set of settings for good.

    ``values`` holds every shared TrainConfig setting (benchmark scope "shared"), resolved as
    ``covseg train`` resolves them (option > config file > recipe > default), so that a rerun that
    leaves one out is recognised as different from one that set it. ``sources`` says where each
    came from. The values read as attributes: ``settings.epochs``.
    """

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    split_seed: int = 0

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    @classmethod
    def resolve(
        cls,
        options: Mapping[str, Any] | None = None,
        *,
        config_file: str | Path | None = None,
        model: str = "unet",
        from_cli: bool = False,
    ) -> BenchmarkSettings:
        """The shared settings of ``options`` over ``config_file`` over the recipe (one-line errors)."""
        return resolve_settings(model, options or {}, config_file, from_cli)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"settings": dict(self.values), "sources": dict(self.sources), "split_seed": self.split_seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> BenchmarkSettings:
        values, sources, seed = data.get("settings"), data.get("sources", {}), data.get("split_seed", 0)
        if not isinstance(values, dict) or not isinstance(sources, dict) or not isinstance(seed, int):
            raise CovsegError(f"{source} is not a covseg benchmark settings file (no 'settings' table)")
        values = {**_added_setting_defaults(), **values}
        missing = [name for name in shared_settings() if name not in values]
        if missing:
            raise CovsegError(f"{source}: settings has no '{missing[0]}'")
        checked = TrainConfig.check_layer(values, str(source), BENCHMARK)
        return cls(checked, {str(key): str(value) for key, value in sources.items()}, seed)

    def describe(self) -> str:
        """One line: recipe, epochs, batch, size, data, and the settings given explicitly."""
        data = self.data or self.dataset or "the embedded phantom"
        options = ", ".join(f"{key}={value}" for key, value in self.dataset_options.items())
        size = f"{self.image_size}x{self.image_size}" if self.image_size else "native size"
        shown = {"recipe", "epochs", "batch_size", "image_size", "data", "dataset", "dataset_options",
                 "test_fraction", "folds"}
        settings = TrainConfig.settings()
        given = [f"{settings[name].option} {_shown(value)}" for name, value in self.values.items()
                 if name not in shown and explicit(self.sources.get(name))]
        held_out = f", test fraction {_shown(self.test_fraction)}" if self.test_fraction else ""
        folds = f", {self.folds} folds" if self.folds else ""
        return (f"recipe {self.recipe}, epochs {self.epochs}, batch {self.batch_size}, {size}, data "
                f"{data}{f' ({options})' if options else ''}{held_out}{folds}"
                f"{'; also ' + ', '.join(given) if given else ''}")

    def train_config(self, pair: Pair, out: Path, run_options: RunOptions | None = None) -> TrainConfig:
        """The TrainConfig of one pair: the shared settings, the shared split file, the pair's seed."""
        run_options = run_options or RunOptions()
        values = {**self.values, **run_options.values, "model": pair.model, "seed": pair.seed,
                  "split_file": str(Path(out) / SPLIT_FILE), "val_fraction": None, "test_fraction": None,
                  "out": str(runs_root(out, pair))}
        sources = {**self.sources, **run_options.sources, "model": "--models", "seed": "--seeds",
                   "split_file": "the benchmark's split", "out": "the benchmark's --out",
                   "val_fraction": "not used: the benchmark's split file fixes the validation slices"}
        if self.values.get("test_fraction") is not None:
            sources["test_fraction"] = "not used: the benchmark's split file fixes the test slices"
        else:
            sources.pop("test_fraction", None)
        config = TrainConfig(**values, sources=sources)
        config.validate()
        return config


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return format_number(value) if isinstance(value, float) else str(value)


def resolve_settings(
    model: str, options: Mapping[str, Any], config_file: str | Path | None = None, from_cli: bool = False
) -> tuple[BenchmarkSettings, RunOptions]:
    """The shared settings and this machine's options, from ``options`` > ``config_file`` > recipe."""
    config = TrainConfig.resolve(model, options=options, config_file=config_file, command=BENCHMARK,
                                 from_cli=from_cli)
    values = {name: getattr(config, name) for name in shared_settings()}
    for name in ("data", "split_file", "test_data"):  # workers and array tasks may start elsewhere
        if values[name] is not None:
            values[name] = str(Path(values[name]).resolve())
    sources = {name: config.sources[name] for name in values if name in config.sources}
    machine = {name: getattr(config, name) for name in machine_settings()
               if explicit(config.sources.get(name))}
    return (BenchmarkSettings(values, sources),
            RunOptions(machine, {name: config.sources[name] for name in machine}))


@dataclass
class Plan:
    """A benchmark folder, its settings and the pairs recorded in it, in the order they were asked for."""

    out: Path
    settings: BenchmarkSettings
    pairs: list[Pair] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """The models of the plan, each once, in plan order."""
        return list(dict.fromkeys(pair.model for pair in self.pairs))

    @property
    def split_path(self) -> Path:
        return self.out / SPLIT_FILE

    def save(self) -> None:
        write_json(
            self.out / SETTINGS_FILE,
            {"format": FORMAT, **self.settings.to_dict(),
             "pairs": [[pair.model, pair.seed] for pair in self.pairs]},
        )


# ---- parsing the command line -------------------------------------------------------------------
def parse_models(text: str) -> list[str]:
    """``all`` (every installed model) or comma-separated names, checked against the registry."""
    registry = get_registry()
    if text.strip() == "all":
        return [entry.name for entry in registry.models()]
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise CovsegError(f"--models '{text}': give 'all' or comma-separated names (see `covseg models`)")
    canonical: dict[str, str] = {}  # canonical name -> as given
    for name in names:
        try:
            model = registry.model(name).name  # an alias runs under its canonical name
        except CovsegError as error:
            raise CovsegError(f"--models: {error}") from None
        if model in canonical:  # a typo more likely than a wish: say it rather than drop it
            same = name if canonical[model] == name else f"{canonical[model]} and {name} (both {model})"
            raise CovsegError(f"--models '{text}': {same} given twice; each model runs once per seed")
        canonical[model] = name
    return list(canonical)


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; integers within the seed's bounds, each once."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CovsegError(f"--seeds '{text}': expected comma-separated integers such as 0,1,2") from None
    highest = int(TrainConfig.settings()["seed"].high)
    if not seeds or any(not 0 <= seed <= highest for seed in seeds):
        raise CovsegError(f"--seeds '{text}': expected comma-separated integers from 0 to {highest} "
                          "such as 0,1,2")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise CovsegError(f"--seeds '{text}': seed {repeated[0]} given twice; each seed runs once")
    return seeds


def make_pairs(models: Sequence[str], seeds: Sequence[int]) -> list[Pair]:
    """Every model with every seed, model-major: the order ``--only-pair INDEX`` counts in."""
    return [Pair(model, seed) for model in models for seed in seeds]


def select_pair(pairs: Sequence[Pair], index: int) -> Pair:
    """The pair a Slurm array task runs: ``--only-pair INDEX`` counted from 0."""
    if not 0 <= index < len(pairs):
        raise CovsegError(f"--only-pair {index}: the plan has {len(pairs)} pair(s) (models x seeds), "
                          f"numbered 0..{len(pairs) - 1}")
    return pairs[index]


# ---- the benchmark folder -----------------------------------------------------------------------
def load_plan(out: Path) -> Plan:
    """The plan a benchmark folder records; one-line error when ``out`` is not one."""
    out = Path(out)
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise CovsegError(f"--out {out} holds no benchmark ({SETTINGS_FILE} is missing); "
                          "run `covseg benchmark --out DIR` first")
    record = read_json(path)
    if isinstance(record, dict) and record.get("format") == "covseg-benchmark-1":
        raise CovsegError(f"{path} was written by an older covseg (it records fewer shared settings); "
                          "start the benchmark in a new --out")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CovsegError(f"{path} is not a covseg benchmark settings file (no '{FORMAT}' format tag)")
    settings = BenchmarkSettings.from_dict(record, path)
    try:
        pairs = [Pair(str(model), int(seed)) for model, seed in record.get("pairs", [])]
    except (TypeError, ValueError):
        raise CovsegError(f"{path}: 'pairs' must be a list of [model, seed]") from None
    recorded = [Pair(record.model, record.seed) for record in read_records(out)]
    return Plan(out, settings, list(dict.fromkeys(pairs + recorded)))


def prepare_plan(out: Path, settings: BenchmarkSettings, pairs: Iterable[Pair]) -> Plan:
    """Open (or start) the benchmark in ``out`` with ``settings`` and add ``pairs`` to it.

    An existing benchmark must have the same settings: a comparison is only fair under identical
    data, split and schedule, so a change needs a new ``--out``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CovsegError(f"--out {out} is a file; give a folder for the benchmark")
    if (out / SETTINGS_FILE).is_file():
        plan = load_plan(out)
        settings_of = TrainConfig.settings()
        stored, wanted = plan.settings, settings
        for name, value in wanted.values.items():
            if stored.values.get(name) != value:
                raise CovsegError(
                    f"--out {out} holds a benchmark run with {option_name(name, settings_of[name])} "
                    f"{stored.values.get(name)!r}, not {value!r}; every pair must share the settings: use a "
                    "new --out or the same settings"
                )
        if stored.split_seed != wanted.split_seed:
            raise CovsegError(f"--out {out} holds a benchmark split with seed {stored.split_seed}, not "
                              f"{wanted.split_seed}; use a new --out")
    else:
        plan = Plan(out, settings)
    plan.pairs = list(dict.fromkeys([*plan.pairs, *pairs]))
    plan.save()
    return plan


def load_benchmark_slices(settings: BenchmarkSettings) -> CTSlices:
    """The benchmark's data, as every pair's training run loads it."""
    data = Path(settings.data) if settings.data else None
    slices = load_slices(settings.dataset, data, settings.dataset_options)
    if slices.masks is None:
        raise CovsegError(f"{slices.source} has no label masks; the benchmark trains and scores on them")
    return slices


def ensure_split(plan: Plan, slices: CTSlices) -> Split | Folds:
    """The benchmark's one split: made once (seeded, or read from ``--split-file``), then read back by
    every pair. The test set is carved out first (``--test-fraction``); with ``--folds K`` the other
    slices are dealt into K folds, shared by every model and seed."""
    settings = plan.settings
    path = plan.split_path
    if path.is_file():
        split = read_split_file(path)
        split.check_ids(slices.ids, slices.source)
        _check_kind(path, split, settings.folds)
        return split
    given = settings.split_file
    if given is not None:
        split = read_split_file(Path(given))
        split.check_ids(slices.ids, slices.source)
        if settings.folds is not None and isinstance(split, Split):
            split = make_folds([*split.train_ids, *split.val_ids], settings.folds, settings.split_seed,
                               split.test_ids, split.test_fraction)
        _check_kind(Path(given), split, settings.folds)
    elif settings.folds is not None:
        pool, test_ids = carve_test(slices.ids, settings.test_fraction, settings.split_seed)
        split = make_folds(pool, settings.folds, settings.split_seed, test_ids, settings.test_fraction)
    else:
        split = make_split(slices.ids, val_fraction=settings.val_fraction, seed=settings.split_seed,
                           test_fraction=settings.test_fraction)
    # The same slice hashes a run's split.json records, so each pair's split equals the benchmark's.
    ids = split.all_ids if isinstance(split, Split) else [*split.pool, *split.test_ids]
    split = dataclasses.replace(split, slice_hashes=slice_hashes(slices, ids))
    split.save(path)
    return split


def _check_kind(path: Path, split: Split | Folds, folds: int | None) -> None:
    if isinstance(split, Folds) and split.count != folds:
        raise CovsegError(f"{path} holds {split.count} cross-validation folds; the benchmark has "
                          f"{'--folds ' + str(folds) if folds else 'no --folds'}")
    if isinstance(split, Split) and folds is not None:
        raise CovsegError(f"{path} holds one split, not the {folds} folds of --folds {folds}")


# ---- the jobs index -----------------------------------------------------------------------------
@dataclass
class JobRecord:
    """``jobs/<model>-seed<k>.json``: what happened to one pair. ``run_dir`` is relative to the
    benchmark folder when the run lies inside it, so the folder can be moved as a whole."""

    model: str
    seed: int
    status: str
    run_dir: str | None = None
    error: str | None = None
    started: str | None = None
    finished: str | None = None
    host: str = field(default_factory=socket.gethostname)
    device: str | None = None
    hardware: str | None = None

    @property
    def pair(self) -> Pair:
        return Pair(self.model, self.seed)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def record_path(out: Path, pair: Pair) -> Path:
    return Path(out) / JOBS_DIR / f"{pair.key}.json"


def log_path(out: Path, pair: Pair) -> Path:
    return Path(out) / LOGS_DIR / f"{pair.key}.log"


def runs_root(out: Path, pair: Pair) -> Path:
    """Where the pair's training writes: ``runs/seed<k>`` (the run lands in ``<model>/<timestamp>``)."""
    return Path(out) / RUNS_DIR / f"seed{pair.seed}"


def relative_run_dir(out: Path, run_dir: Path) -> str:
    """The run folder relative to the benchmark folder when inside it, else absolute."""
    run_dir, out = Path(run_dir).resolve(), Path(out).resolve()
    return str(run_dir.relative_to(out)) if run_dir.is_relative_to(out) else str(run_dir)


def absolute_run_dir(out: Path, run_dir: str) -> Path:
    return Path(out) / run_dir


def write_record(out: Path, record: JobRecord) -> None:
    write_json(record_path(out, record.pair), dataclasses.asdict(record))


def read_record(out: Path, pair: Pair) -> JobRecord | None:
    path = record_path(out, pair)
    if not path.is_file():
        return None
    return _record_from(read_json(path), path)


def _record_from(data: Any, path: Path) -> JobRecord:
    names = {item.name for item in dataclasses.fields(JobRecord)}
    if not isinstance(data, dict):
        raise CovsegError(f"{path} is not a covseg benchmark job record")
    try:
        return JobRecord(**{key: value for key, value in data.items() if key in names})
    except TypeError as error:
        raise CovsegError(f"{path} is not a covseg benchmark job record: {error}") from None


def read_records(out: Path) -> list[JobRecord]:
    """Every job record of a benchmark folder, by file name."""
    folder = Path(out) / JOBS_DIR
    if not folder.is_dir():
        return []
    return [_record_from(read_json(path), path) for path in sorted(folder.glob("*.json"))]


def _pair_runs(out: Path, pair: Pair) -> list[Path]:
    """The pair's run folders, oldest first (timestamped names sort in time order)."""
    parent = runs_root(out, pair) / pair.model
    if not parent.is_dir():
        return []
    return sorted(path for path in parent.iterdir() if (path / RUN_CONFIG).is_file())


def finished_run(out: Path, pair: Pair) -> Path | None:
    """The pair's finished run (one with summary.json): the recorded one, else the newest on disk.

    A process killed between writing summary.json and its job record still counts as finished;
    the record is repaired.
    """
    record = read_record(out, pair)
    if record is not None and record.run_dir:
        recorded = absolute_run_dir(out, record.run_dir)
        if (recorded / SUMMARY).is_file():
            if record.status != DONE:
                write_record(out, dataclasses.replace(record, status=DONE, error=None))
            return recorded
    for run_dir in reversed(_pair_runs(out, pair)):
        if (run_dir / SUMMARY).is_file():
            repaired = record or JobRecord(pair.model, pair.seed, DONE)
            write_record(out, dataclasses.replace(repaired, status=DONE, error=None,
                                                  run_dir=relative_run_dir(out, run_dir)))
            return run_dir
    return None


def unfinished_run(out: Path, pair: Pair) -> Path | None:
    """The newest run of the pair that stopped part-way (last.pt, or a cross-validation folder, and no
    summary.json): resumed, not restarted."""
    for run_dir in reversed(_pair_runs(out, pair)):
        if (run_dir / SUMMARY).is_file():
            return None
        if (run_dir / LAST_CHECKPOINT).is_file() or is_cross_validation(run_dir):
            return run_dir
    return None


def newest_run(out: Path, pair: Pair) -> Path | None:
    runs = _pair_runs(out, pair)
    return runs[-1] if runs else None


def pair_status(out: Path, pair: Pair) -> str:
    """done, failed, running (or killed while running) or pending (never started)."""
    if finished_run(out, pair) is not None:
        return DONE
    record = read_record(out, pair)
    return record.status if record is not None else PENDING
