"""PyTorch -> ONNX with dynamic batch, height and width, checked against PyTorch before it is written.

Two exporters, both verified on all seven built-in models (logits within 1e-5 relative, dynamic
H and W at sizes not divisible by 32):

- ``torchscript`` (default): the tracing exporter. Three times faster to export (unet 1.3 s,
  deeplab-resnet101 8 s on 2 CPU cores) with the same parity. torch marks it deprecated; covseg
  silences that warning and keeps ``dynamo`` ready as the drop-in replacement.
- ``dynamo``: ``torch.export`` + onnxscript, ``dynamic_shapes`` with named dimensions (a
  specialised, i.e. baked-in, size is an export error instead of a silently wrong graph).

Every export is checked twice before a byte reaches the disk: ``onnx.checker`` (full check with
shape inference), then onnxruntime vs PyTorch on random inputs at the trace size and at an odd
second size of another batch, so a resize baked in as a constant fails the check.

The file's metadata and the onnxruntime session used for the check come from :mod:`covseg.onnx`,
which :mod:`covseg.inference` shares; export never imports inference. The options and their
defaults are in :mod:`covseg.export.settings`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from covseg import CLASS_NAMES
from covseg.core.errors import CovsegError
from covseg.data.intensity import Normalisation
from covseg.export.model_card import CardFacts, attach_card, card_file_text, collect_facts
from covseg.export.settings import (
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    DEFAULT_TRACE_SIZE,
    DYNAMIC_AXES,
    EXPORTERS,
    INPUT_NAME,
    OUTPUT_NAME,
    check_export_options,
)
from covseg.files import child_path, one_line, safe_file_name, write_bytes, write_text
from covseg.onnx import ExportMetadata, OnnxSegmenter
from covseg.onnx.card import card_path


@dataclass
class ExportSource:
    """A model ready to export, with the metadata it will carry, a name for files and messages, and
    the facts of its model card (:mod:`covseg.export.model_card`; None: a card from the metadata alone)."""

    model: torch.nn.Module
    metadata: ExportMetadata
    name: str
    facts: CardFacts | None = None


@dataclass(frozen=True)
class ParityCheck:
    """onnxruntime vs PyTorch on one random batch: the largest logit difference and what was allowed."""

    shape: tuple[int, int, int, int]
    max_abs_diff: float
    logit_scale: float
    allowed: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.allowed

    def describe(self) -> str:
        batch, _, height, width = self.shape
        return (
            f"batch {batch} at {height}x{width}: max |logit difference| {self.max_abs_diff:.3g} "
            f"(largest |logit| {self.logit_scale:.3g}, allowed {self.allowed:.3g})"
        )


@dataclass(frozen=True)
class ExportResult:
    """A checked ONNX model in memory: its bytes, metadata, parity checks and export time."""

    model_bytes: bytes
    metadata: ExportMetadata
    checks: tuple[ParityCheck, ...]
    exporter: str
    opset: int
    export_seconds: float
    model_card: str = ""
    """The card in the metadata; ``MODEL.md`` beside the file adds the file's sha256."""


def load_export_source(spec: str | Path) -> ExportSource:
    """A run folder or checkpoint (its trained weights), a cross-validation folder or ensemble.json
    (its members, exported as one graph returning the log of their mean softmax), or a registered
    model name (untrained)."""
    from covseg.core.registry import create_model, get_registry
    from covseg.evaluation.trained import load_trained_model

    path = Path(spec)
    if path.exists():
        trained = load_trained_model(path, device="cpu")
        metrics = trained.checkpoint.get("metrics") or {}
        miou = metrics.get("miou")
        source = trained.run_dir or trained.checkpoint_path
        extra = {ENSEMBLE_KEY: ensemble_entry(trained.members)} if trained.is_ensemble else {}
        metadata = ExportMetadata(
            model_name=trained.model_name,
            num_classes=trained.num_classes,
            in_channels=trained.in_channels,
            class_names=trained.class_names,
            normalisation=trained.normalisation,
            image_size=trained.image_size,
            trained=True,
            source=str(Path(source).resolve()),  # meaningful from any folder the model is used in
            epoch=trained.checkpoint.get("epoch"),
            val_miou=float(miou) if miou is not None else None,
            intensity=trained.intensity,
            extra=extra,
        )
        if trained.is_ensemble:
            name = f"{trained.model_name}-{(trained.run_dir or trained.checkpoint_path.parent).name}-ensemble"
        elif trained.run_dir is not None:
            name = f"{trained.model_name}-{trained.run_dir.name}"
        else:
            name = f"{trained.model_name}-{trained.checkpoint_path.stem}"
        facts = _facts(trained.model_name, trained.model, trained.run_dir)
        return ExportSource(trained.model, metadata, name, facts)
    text = str(spec)
    if "/" in text or "\\" in text or text.endswith((".pt", ".pth", ".onnx")):
        raise CovsegError(f"{spec} does not exist; give a run folder, a .pt checkpoint or a model name")
    text = get_registry().model(text).name  # unknown names fail here with the close matches
    model = create_model(text, num_classes=len(CLASS_NAMES), in_channels=3, pretrained=False)
    metadata = ExportMetadata(
        model_name=text,
        num_classes=len(CLASS_NAMES),
        in_channels=3,
        class_names=CLASS_NAMES,
        normalisation=Normalisation(),
    )
    return ExportSource(model.eval(), metadata, text, _facts(text, model, None))


def _facts(model_name: str, model: torch.nn.Module, run_dir: Path | None) -> CardFacts:
    from covseg.core.registry import get_registry

    entry = get_registry().model(model_name)
    params = sum(parameter.numel() for parameter in model.parameters())
    return collect_facts(entry.description, entry.family, params, run_dir)


ENSEMBLE_KEY = "ensemble"
"""The one metadata entry (``covseg.ensemble``) of an exported ensemble."""


def ensemble_entry(members: int) -> str:
    """``covseg.ensemble``: JSON saying the graph averages ``members`` models and what it returns.

    The graph's ``logits`` output is log(mean softmax) of the members
    (:class:`~covseg.evaluation.ensemble.MeanSoftmaxEnsemble`): argmax and softmax of it are the
    ensemble's labels and probabilities.
    """
    return json.dumps({"members": members, "combine": "mean softmax",
                       "output": "log of the mean softmax (argmax and softmax apply as to logits)"})


def check_sizes(trace_size: int) -> list[tuple[int, int, int]]:
    """(batch, height, width) of the parity checks: the trace size, then an odd size of another batch.

    Odd sides are never divisible by 32 and differ from the trace, so a baked-in size shows.
    """
    return [(1, trace_size, trace_size), (2, (trace_size + 8) | 1, (trace_size + 24) | 1)]


def _torchscript_export(model: torch.nn.Module, example: torch.Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    axes = {INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES}
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation on every call; the choice is documented above.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
        )
    return buffer.getvalue()


def _dynamo_export(model: torch.nn.Module, example: torch.Tensor, opset: int) -> bytes:
    dims = {axis: torch.export.Dim(name) for axis, name in DYNAMIC_AXES.items()}
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        verbose=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=(dims,),
    )
    return program.model_proto.SerializeToString()


def to_onnx(
    model: torch.nn.Module,
    metadata: ExportMetadata,
    trace_size: int = DEFAULT_TRACE_SIZE,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> bytes:
    """Export ``model`` (eval mode, CPU) with dynamic batch/H/W, attach metadata, run onnx.checker."""
    import onnx

    if exporter not in EXPORTERS:
        raise CovsegError(f"--exporter {exporter}: expected one of {', '.join(EXPORTERS)}")
    check_export_options(trace_size, DEFAULT_TOLERANCE)
    # batch 2: a batch of 1 could be specialised to a constant by the tracer.
    example = torch.rand(
        2, metadata.in_channels, trace_size, trace_size, generator=torch.Generator().manual_seed(0)
    )
    export = _torchscript_export if exporter == "torchscript" else _dynamo_export
    try:
        with torch.inference_mode(False), torch.no_grad():
            data = export(model.eval().float().cpu(), example, opset)
        proto = onnx.load_from_string(data)
    except Exception as error:  # exporters raise many kinds; the user needs one line
        raise CovsegError(
            f"{metadata.model_name} could not be exported to ONNX (opset {opset}, "
            f"{exporter} exporter): {one_line(error)}"
        ) from None
    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"covseg {metadata.model_name}: {metadata.describe()}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise CovsegError(
            f"the ONNX export of {metadata.model_name} fails onnx.checker: {one_line(error)}"
        ) from None
    return proto.SerializeToString()


def verify_parity(
    model: torch.nn.Module,
    model_bytes: bytes,
    in_channels: int,
    trace_size: int,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> tuple[ParityCheck, ...]:
    """Compare onnxruntime (CPU provider) with PyTorch on random inputs in [0, 1] at two sizes.

    The allowed difference is ``tolerance`` for logits within +-1 and ``tolerance`` times the
    largest |logit| beyond: float32 rounding grows with the magnitude (untrained ResNet-101 heads
    reach logits of 1e3-1e4).
    """
    segmenter = OnnxSegmenter(model_bytes, device="cpu", origin="the exported model")
    generator = np.random.default_rng(seed)
    checks = []
    for batch, height, width in check_sizes(trace_size):
        inputs = generator.random((batch, in_channels, height, width), dtype=np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(inputs)).float().numpy()
        actual = segmenter.logits(inputs)
        if actual.shape != expected.shape:
            raise CovsegError(
                f"the ONNX export returns shape {list(actual.shape)} for input {batch}x"
                f"{in_channels}x{height}x{width}, PyTorch {list(expected.shape)}: "
                "its size is not dynamic"
            )
        scale = float(np.abs(expected).max())
        difference = float(np.abs(actual.astype(np.float64) - expected).max())
        checks.append(
            ParityCheck((batch, in_channels, height, width), difference, scale, tolerance * max(1.0, scale))
        )
    return tuple(checks)


def export_model(
    source: ExportSource,
    trace_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Export and verify in memory; raises a one-line :class:`CovsegError` when a check fails.

    ``trace_size``: the square side traced and checked first; default the trained image size,
    else 64.
    """
    check_export_options(trace_size, tolerance)
    size = trace_size or source.metadata.image_size or DEFAULT_TRACE_SIZE
    start = time.perf_counter()
    data = to_onnx(source.model, source.metadata, size, opset, exporter)
    seconds = time.perf_counter() - start
    checks = verify_parity(source.model, data, source.metadata.in_channels, size, tolerance)
    failed = [check for check in checks if not check.passed]
    if failed:
        raise CovsegError(
            f"the ONNX export of {source.metadata.model_name} does not match PyTorch: "
            f"{failed[0].describe()} (--tolerance {tolerance:g}); nothing written"
        )
    facts = source.facts or CardFacts("no description recorded")
    data, metadata, card = attach_card(data, source.metadata, facts)
    return ExportResult(data, metadata, checks, exporter, opset, seconds, card)


def default_export_path(source: ExportSource, folder: Path = Path("exports")) -> Path:
    """``exports/<model>.onnx`` for an untrained model, ``exports/<model>-<run>.onnx`` for a run.

    The name comes from the checkpoint and the run folder's name, so it is made safe first: it
    stays inside ``folder`` whatever they hold.
    """
    return child_path(folder, safe_file_name(source.name, fallback="model") + ".onnx")


def export_path(out: str | Path | None, source: ExportSource) -> Path:
    """Where ``--out`` puts the export: a name ending in .onnx is the file; a folder (existing, a
    name without a suffix, or any name ending in a path separator, ``NAME.onnx/``) gets
    :func:`default_export_path`'s name; nothing given, ``exports/``.

    ``out`` is best given as the text typed: a ``Path`` has already lost a trailing separator.
    Raises CovsegError for an existing file without .onnx (``--out afile``) and for any other name
    (``model.pt``): neither a file covseg writes nor a folder.
    """
    if out is None:
        return default_export_path(source)
    text = str(out)
    folder_meant = text.endswith(("/", os.sep))  # a trailing separator says "folder", as in cp and rsync
    out = Path(text)
    if not folder_meant and out.suffix.lower() == ".onnx":
        return out
    if out.is_file() and not folder_meant:
        raise CovsegError(f"--out {out}: {out} is a file, not a folder; give a folder or a file name "
                          "ending in .onnx")
    if folder_meant or out.is_dir() or not out.suffix:
        return default_export_path(source, out)
    raise CovsegError(f"--out {out}: give a folder or a file name ending in .onnx")


def check_output_path(path: Path, overwrite: bool) -> None:
    """Refuse a non-.onnx name, and an existing file or model card unless ``overwrite``."""
    if path.suffix.lower() != ".onnx":
        raise CovsegError(f"--out {path}: the file name must end in .onnx")
    if path.is_dir():
        raise CovsegError(f"--out {path} is a folder named like a file; give another name")
    for target in (path, card_path(path)):
        if target.is_dir():
            raise CovsegError(f"{target} is a folder; the export writes a file there")
        if target.exists() and not overwrite:
            raise CovsegError(f"{target} exists; pass --overwrite to replace it")


def write_export(result: ExportResult, path: Path, overwrite: bool = False) -> Path:
    """Write a checked export and its model card (``<name>.MODEL.md``, with the file's sha256), each
    atomically; the card first, removed again if the model cannot be written. Returns the card's path."""
    check_output_path(path, overwrite)
    card = card_path(path)
    file_hash = hashlib.sha256(result.model_bytes).hexdigest()
    write_text(card, card_file_text(result.model_card, file_hash, path.name))
    try:
        write_bytes(path, result.model_bytes)
    except BaseException:
        card.unlink(missing_ok=True)
        raise
    return card


def export_onnx(
    spec: str | Path,
    out: Path | None = None,
    *,
    trace_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
) -> tuple[Path, ExportResult]:
    """``covseg export`` as a function: load, export, verify, write; returns (path, result)."""
    source = load_export_source(spec)
    path = Path(out) if out is not None else default_export_path(source)
    check_output_path(path, overwrite)
    result = export_model(source, trace_size, opset, exporter, tolerance)
    write_export(result, path, overwrite)
    return path, result
