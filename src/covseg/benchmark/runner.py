"""Running the pairs: in this process, or one worker process per GPU (``--jobs N``), failures isolated.

Every pair is an independent job whose state lives in the benchmark folder (see
:mod:`covseg.benchmark.plan`), so the same code serves one process, N worker processes on one
machine and Slurm array tasks on many. A pair that raises is recorded as failed with a one-line
error (traceback in ``logs/``) and the others go on; a worker process that dies outright (killed,
out of memory) is recorded the same way by the parent.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from covseg.benchmark.hardware import device_name
from covseg.benchmark.plan import (
    DONE,
    FAILED,
    RUNNING,
    JobRecord,
    Pair,
    Plan,
    RunOptions,
    log_path,
    newest_run,
    now,
    read_record,
    relative_run_dir,
    unfinished_run,
    write_record,
)
from covseg.core.errors import CovsegError
from covseg.devices import resolve_device
from covseg.files import one_line, write_text
from covseg.onnx import cpu_cores
from covseg.runs import RUN_CONFIG, read_summary
from covseg.training.settings import option_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSlot:
    """Where one worker process runs: its GPU (through CUDA_VISIBLE_DEVICES) or its share of the CPU."""

    name: str
    device: str
    env: dict[str, str]
    threads: int | None = None


def visible_gpus() -> list[str]:
    """The GPU ids this process may hand out: its CUDA_VISIBLE_DEVICES entries when set, else 0..count-1.

    Entries are kept as written (indices, ``GPU-<uuid>`` or ``MIG-<uuid>``), at most as many as the
    driver shows (CUDA stops reading the list at the first entry it cannot use).
    """
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None and listed.strip():
        return [item.strip() for item in listed.split(",") if item.strip()][:count]
    return [str(index) for index in range(count)]


def worker_slots(jobs: int, device: str) -> list[WorkerSlot]:
    """``jobs`` worker slots: one GPU each on a CUDA machine, an equal share of the cores on a CPU one.

    A job takes a whole GPU (one process per GPU, CUDA_VISIBLE_DEVICES set per worker to one of
    :func:`visible_gpus`, so each worker sees it as ``cuda:0``), so ``--jobs`` may not exceed the
    GPUs. Either way the workers split the cores between them (torch's CPU threads), so that N
    processes do not each start a thread per core.
    """
    if jobs < 1:
        raise CovsegError(f"--jobs {jobs}: must be at least 1")
    target = resolve_device(device)
    threads = max(1, cpu_cores() // jobs)
    share = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if target.type == "cuda":
        if target.index is not None and jobs > 1:
            raise CovsegError(f"--device {device} pins one GPU, but --jobs {jobs} gives each job its own "
                              "GPU; use --device cuda or auto")
        gpus = visible_gpus()
        if jobs > len(gpus):
            raise CovsegError(f"--jobs {jobs}: this machine has {len(gpus)} GPU(s) and each job takes one; "
                              f"use --jobs {len(gpus)} or fewer")
        return [WorkerSlot(f"GPU {gpu}", "cuda", {"CUDA_VISIBLE_DEVICES": gpu, **share}, threads)
                for gpu in gpus[:jobs]]
    cores = cpu_cores()
    if jobs > cores:
        raise CovsegError(f"--jobs {jobs}: this machine has {cores} CPU core(s) and each job needs one; "
                          f"use --jobs {cores} or fewer")
    env = {"CUDA_VISIBLE_DEVICES": "", **share}
    return [WorkerSlot(f"CPU worker {index}", "cpu", env, threads) for index in range(jobs)]


def run_pair(plan: Plan, pair: Pair, options: RunOptions | None = None,
             listeners: Sequence[object] = ()) -> JobRecord:
    """Train one pair in this process (resuming a run that stopped part-way) and record the outcome.

    Exceptions other than Ctrl-C are caught: the pair is recorded as failed, with a one-line error
    in its job record and the traceback in ``logs/<pair>.log``, and the caller goes on.
    ``listeners`` follow the run (see :func:`covseg.training.train`).
    """
    from covseg.training import TrainConfig, train

    options = options or RunOptions()
    out = plan.out
    resume = unfinished_run(out, pair)
    record = JobRecord(pair.model, pair.seed, RUNNING, started=now(), device=options.device,
                       hardware=device_name(options.device),
                       run_dir=relative_run_dir(out, resume) if resume else None)
    write_record(out, record)
    before = newest_run(out, pair)
    try:
        if resume is not None:
            recorded = TrainConfig.load(resume / RUN_CONFIG)
            settings = TrainConfig.settings()
            labels = {name: option_name(name, settings[name]) for name in options.values}
            config = recorded.resumed_with(options.values, labels)
            run_dir = train(config, resume=resume, listeners=listeners)
        else:
            run_dir = train(plan.settings.train_config(pair, out, options), listeners=listeners)
    except KeyboardInterrupt:
        write_record(out, _failed(record, out, pair, before, "interrupted (Ctrl-C); rerun to resume it"))
        raise
    except Exception as error:  # one failing model must not stop the others
        text = "".join(traceback.format_exception(error))
        log = log_path(out, pair)
        write_text(log, text)
        failed = _failed(record, out, pair, before, one_line(error))
        write_record(out, failed)
        return failed
    done = dataclasses.replace(record, status=DONE, run_dir=relative_run_dir(out, run_dir), finished=now())
    write_record(out, done)
    return done


def _failed(record: JobRecord, out: Path, pair: Pair, before: Path | None, error: str) -> JobRecord:
    """The failed record, pointing at the run folder the attempt created or resumed (if any)."""
    latest = newest_run(out, pair)
    run_dir = record.run_dir
    if latest is not None and latest != before:
        run_dir = relative_run_dir(out, latest)
    return dataclasses.replace(record, status=FAILED, error=error, run_dir=run_dir, finished=now())


def run_pairs(plan: Plan, pairs: Sequence[Pair], *, jobs: int = 1, options: RunOptions | None = None,
              listeners: Sequence[object] = ()) -> list[JobRecord]:
    """Run ``pairs``: in this process for ``jobs`` 1 (``listeners`` follow each run), else in ``jobs``
    worker processes at a time (each with its own output in ``logs/``)."""
    options = options or RunOptions()
    if jobs == 1:
        records = []
        for number, pair in enumerate(pairs, start=1):
            logger.info("pair %d/%d: %s seed %d", number, len(pairs), pair.model, pair.seed)
            records.append(run_pair(plan, pair, options, listeners))
            _announce(plan, records[-1])
        return records
    return _run_in_workers(plan, pairs, worker_slots(jobs, options.device), options)


def worker_command(plan: Plan, pair: Pair, slot: WorkerSlot, options: RunOptions) -> list[str]:
    """The command line of one worker process (``python -m covseg.benchmark.worker``)."""
    slot_options = RunOptions({**options.values, "device": slot.device},
                              {**options.sources, "device": options.sources.get("device", "--jobs")})
    command = [sys.executable, "-m", "covseg.benchmark.worker", str(plan.out), pair.model, str(pair.seed),
               "--run-options", slot_options.to_json()]
    if slot.threads is not None:
        command += ["--threads", str(slot.threads)]
    return command


def _run_in_workers(plan: Plan, pairs: Sequence[Pair], slots: list[WorkerSlot],
                    options: RunOptions) -> list[JobRecord]:
    free: queue.Queue[WorkerSlot] = queue.Queue()
    for slot in slots:
        free.put(slot)
    running: set[subprocess.Popen] = set()
    lock = threading.Lock()

    def run(pair: Pair) -> JobRecord:
        slot = free.get()
        try:
            return _run_worker(plan, pair, slot, options, running, lock)
        finally:
            free.put(slot)

    try:
        with ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="covseg-benchmark") as pool:
            return list(pool.map(run, pairs))
    except KeyboardInterrupt:
        with lock:
            for process in running:
                process.terminate()
        raise


def _run_worker(plan: Plan, pair: Pair, slot: WorkerSlot, options: RunOptions,
                running: set[subprocess.Popen], lock: threading.Lock) -> JobRecord:
    log = log_path(plan.out, pair)
    log.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s seed %d: started on %s (output: %s)", pair.model, pair.seed, slot.name, log)
    env = {**os.environ, **slot.env}
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(worker_command(plan, pair, slot, options), env=env, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with lock:
            running.add(process)
        code = process.wait()
        with lock:
            running.discard(process)
    record = read_record(plan.out, pair)
    if record is None or record.status == RUNNING:
        # The worker died before it could record anything (killed, out of memory, crashed).
        record = dataclasses.replace(
            record or JobRecord(pair.model, pair.seed, RUNNING, device=slot.device),
            status=FAILED, finished=now(), error=f"worker process {_exit_reason(code)}; {_last_line(log)}",
        )
        write_record(plan.out, record)
    _announce(plan, record)
    return record


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.strip()]
    return f"last output: {lines[-1][:200]}" if lines else f"no output in {log}"


def _announce(plan: Plan, record: JobRecord) -> None:
    if record.status == DONE and record.run_dir:
        summary = read_summary(plan.out / record.run_dir)
        miou = summary.get("best_metrics", {}).get("miou")
        shown = f"{miou:.4f}" if isinstance(miou, float) else "n/a"
        logger.info("%s seed %d: done, best validation mIoU %s (epoch %s) in %.0f s", record.model,
                    record.seed, shown, summary.get("best_epoch"), summary.get("wall_time_s", 0.0))
    else:
        logger.warning("%s seed %d: failed: %s", record.model, record.seed, record.error)
