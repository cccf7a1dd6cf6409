"""The model card every export carries: what the model is, how it was trained, how well it did,
what it is for and what it is not for (Mitchell et al., "Model Cards for Model Reporting",
FAT* 2019, doi:10.1145/3287560.3287596, adapted to a segmentation model).

Built from the run the weights came from: ``config.json`` (data, recipe, settings), ``split.json``
(slice counts), ``summary.json`` (epochs, validation metrics and, where the run has them, test
metrics with their intervals: every key that starts with ``test``). Where the card lives and how it
is tied to the file (graph hash in the metadata, file hash in ``MODEL.md``) is
:mod:`covseg.onnx.card`. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from covseg.core.errors import CovsegError
from covseg.data.intensity import describe_input
from covseg.files import read_json_object
from covseg.onnx import ExportMetadata
from covseg.onnx.card import CARD_KEY, FILE_HASH_LABEL, GRAPH_HASH_KEY, graph_sha256
from covseg.runs import RUN_SPLIT, SUMMARY, read_run_config

INTENDED_USE = (
    "Research only: measuring COVID-19 lesions (ground-glass opacity, consolidation, pleural effusion) "
    "in chest CT for method development and comparison. Not a medical device: not for diagnosis, triage "
    "or treatment decisions; every output needs review by a radiologist."
)
HEADLINE = ("miou", "lesion_miou", "pixel_accuracy", "mean_lesion_dice")
"""Metrics shown first, then the per-class IoU and Dice."""


@dataclass(frozen=True)
class CardFacts:
    """What the card says beyond the metadata: the architecture and the run behind the weights."""

    description: str
    family: str | None = None
    params: int | None = None
    run_dir: Path | None = None
    config: Mapping[str, Any] | None = None
    split: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] | None = None


def collect_facts(
    description: str, family: str | None, params: int | None, run_dir: Path | None
) -> CardFacts:
    """The facts of a run folder (None: a checkpoint outside a run, or untrained weights).

    A run's ``config.json`` must read (it made the checkpoint); a missing or unreadable
    ``split.json`` or ``summary.json`` (an unfinished run) leaves its part of the card empty.
    """
    if run_dir is None:
        return CardFacts(description, family, params)
    config = read_run_config(run_dir)
    split = _optional_json(run_dir / RUN_SPLIT)
    summary = _optional_json(run_dir / SUMMARY)
    return CardFacts(description, family, params, Path(run_dir), config, split, summary)


def _optional_json(path: Path) -> dict[str, Any] | None:
    try:
        return read_json_object(path) if path.is_file() else None
    except CovsegError:
        return None


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{_number(value[0])} – {_number(value[1])}"
    if isinstance(value, Mapping) and {"low", "high"} <= set(value):
        return f"{_number(value['low'])} – {_number(value['high'])}"
    return "—"


def _metric_order(name: str) -> tuple[int, str]:
    base = name.partition("/")[0]
    if base in HEADLINE:
        return (HEADLINE.index(base), name)
    return (len(HEADLINE) + (0 if base == "iou" else 1 if base == "dice" else 2), name)


def _metric_table(block: Any) -> list[str]:
    """A Markdown table of a metrics block: ``{"metrics": {...}, "intervals": {...}}`` (covseg's
    summary), or a flat ``{name: value}`` mapping; intervals shown where present."""
    if not isinstance(block, Mapping):
        return []
    metrics = block.get("metrics") if isinstance(block.get("metrics"), Mapping) else block
    intervals = block.get("intervals") if isinstance(block.get("intervals"), Mapping) else {}
    names = sorted(
        (
            name
            for name, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ),
        key=_metric_order,
    )
    if not names:
        return []
    lines = ["| metric | value | interval |", "|---|---|---|"]
    lines += [f"| {name} | {_number(metrics[name])} | {_interval(intervals.get(name))} |" for name in names]
    return lines


def _describe_block(block: Mapping[str, Any]) -> str:
    parts = [str(block[key]) for key in ("what", "source") if block.get(key)]
    if block.get("slices") is not None:
        parts.append(f"{block['slices']} slices")
    return "; ".join(parts)


def _validation_section(summary: Mapping[str, Any] | None) -> list[str]:
    if not summary:
        return ["No summary.json: the run did not finish, so no validation score is recorded."]
    block = summary.get("validation")
    if isinstance(block, Mapping) and _metric_table(block):
        intro = _describe_block(block)
        return [*([intro, ""] if intro else []), *_metric_table(block)]
    best = summary.get("best_metrics")
    if isinstance(best, Mapping) and _metric_table(best):
        epoch = summary.get("best_epoch")
        return [
            f"Best validation epoch {epoch} (the slices that chose it: optimistic); no intervals recorded.",
            "",
            *_metric_table(best),
        ]
    return ["No validation metrics recorded."]


def _test_section(summary: Mapping[str, Any] | None) -> list[str]:
    blocks = {key: value for key, value in (summary or {}).items() if key.startswith("test") and value}
    lines: list[str] = []
    for key, block in blocks.items():
        table = _metric_table(block)
        if not table:
            continue
        intro = _describe_block(block) if isinstance(block, Mapping) else ""
        lines += [f"`{key}`" + (f": {intro}" if intro else ""), "", *table, ""]
    return lines[:-1] if lines else ["No held-out test score."]


def _split_line(split: Mapping[str, Any] | None, config: Mapping[str, Any]) -> str:
    if not split:
        return "Split: unknown (no split.json)."
    counts = [
        f"{len(split[key])} {label}"
        for key, label in (("train_ids", "training"), ("val_ids", "validation"), ("test_ids", "test"))
        if isinstance(split.get(key), list) and split[key]
    ]
    how = f"seed {split.get('seed', config.get('seed'))}"
    if config.get("split_file"):
        how = f"from {config['split_file']}"
    return f"Split: {' / '.join(counts)} slices ({how})."


def _training_section(facts: CardFacts, metadata: ExportMetadata) -> list[str]:
    config = facts.config or {}
    if not metadata.trained:
        return ["UNTRAINED: random weights, exported from the model name to try the pipeline."]
    if not config:
        return [
            f"Weights from {metadata.source} (a checkpoint outside a run folder): data, split and "
            "recipe unknown."
        ]
    data = config.get("data") or "the embedded phantom"
    options = config.get("dataset_options") or {}
    shown_options = ", ".join(f"{key}={value}" for key, value in sorted(options.items()))
    summary = facts.summary or {}
    epochs = summary.get("epochs_run", config.get("epochs"))
    lines = [
        f"- Run: {facts.run_dir}",
        f"- Data: {data} (dataset {config.get('dataset') or 'phantom'}"
        + (f", {shown_options}" if shown_options else "")
        + f"; intensities {config.get('intensity', '?')})",
        f"- {_split_line(facts.split, config)}",
        f"- Recipe: {config.get('recipe', '?')}: {config.get('optimizer', '?')} lr {config.get('lr', '?')}, "
        f"weight decay {config.get('weight_decay', '?')}, {config.get('scheduler', '?')} schedule, "
        f"loss {config.get('loss', '?')}, batch {config.get('batch_size', '?')}, "
        f"image size {config.get('image_size') or 'native'}, seed {config.get('seed', '?')}",
        f"- Epochs: {epochs} of {config.get('epochs', '?')}; weights of epoch {metadata.epoch}"
        + (
            f" (best validation epoch {summary['best_epoch']})"
            if summary.get("best_epoch") is not None
            else ""
        ),
    ]
    return lines


def _limitations(facts: CardFacts, metadata: ExportMetadata) -> list[str]:
    if not metadata.trained:
        return ["- Untrained: its labels mean nothing."]
    config = facts.config or {}
    split = facts.split or {}
    items = []
    trained_on = len(split["train_ids"]) if isinstance(split.get("train_ids"), list) else None
    if trained_on is not None:
        items.append(
            f"- Trained on {trained_on} slices from one data set ({config.get('data') or 'phantom'}); "
            "scanners, protocols and patients it has not seen may do worse."
        )
    if metadata.image_size:
        items.append(
            f"- Slices are resized to {metadata.image_size}x{metadata.image_size} for the model: "
            "detail finer than one model pixel (e.g. 512 / "
            f"{metadata.image_size} = {512 / metadata.image_size:g} native pixels) is lost."
        )
    items.append("- A 2-D model: each slice is segmented alone, without its neighbours.")
    items.append("- Validation scores come from the slices the best epoch was chosen on: optimistic.")
    if not any(key.startswith("test") and value for key, value in (facts.summary or {}).items()):
        items.append("- No held-out test score: its accuracy on unseen scans is unknown.")
    if not config:
        items.append("- The training data and recipe are unknown (a checkpoint outside its run folder).")
    return items


def render_card(metadata: ExportMetadata, facts: CardFacts, graph_hash: str) -> str:
    """The card's Markdown (without the file hash, which only MODEL.md holds)."""
    params = f", {facts.params / 1e6:.1f} M parameters" if facts.params else ""
    classes = ", ".join(f"{label} {name}" for label, name in enumerate(metadata.class_names))
    size = f"{metadata.image_size}x{metadata.image_size}" if metadata.image_size else "native size"
    lines = [
        f"# Model card: {metadata.model_name}" + (f" ({facts.run_dir.name})" if facts.run_dir else ""),
        "",
        f"Exported by covseg {metadata.covseg_version}. {INTENDED_USE.split(':')[0]}: not a medical device.",
        "",
        "## Model",
        "",
        f"- Architecture: {metadata.model_name}: {facts.description}"
        + (f" (family {facts.family}{params})" if facts.family else params),
        f"- Input: `image` (N, {metadata.in_channels}, H, W) float32 in [0, 1]: "
        f"{describe_input(metadata.normalisation, metadata.intensity)};"
        f" trained at {size} (covseg predict resizes slices to it)",
        f"- Output: `logits` (N, {metadata.num_classes}, H, W); classes {classes}",
        "",
        "## Training",
        "",
        *_training_section(facts, metadata),
        "",
        "## Validation metrics",
        "",
        *_validation_section(facts.summary if metadata.trained else None),
        "",
        "## Test metrics",
        "",
        *_test_section(facts.summary if metadata.trained else None),
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Known limitations",
        "",
        *_limitations(facts, metadata),
        "",
        "## Identity",
        "",
        f"- covseg version: {metadata.covseg_version}",
        f"- sha256 of the ONNX graph (operators and weights, without metadata): `{graph_hash}`",
    ]
    return "\n".join(lines) + "\n"


def card_file_text(card: str, file_hash: str, file_name: str) -> str:
    """MODEL.md: the card plus the ONNX file's sha256 (a file cannot hold its own hash)."""
    return card + (
        f"- {FILE_HASH_LABEL}: `{file_hash}` ({file_name}; only here, since writing a file's hash into "
        "the file would change it: the card in the file's metadata is this text without this line)\n"
    )


def attach_card(
    model_bytes: bytes, metadata: ExportMetadata, facts: CardFacts
) -> tuple[bytes, ExportMetadata, str]:
    """The model with its graph hash and card added to the metadata; (bytes, metadata, card)."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    graph_hash = graph_sha256(proto)
    card = render_card(metadata, facts, graph_hash)
    metadata = replace(metadata, extra={**metadata.extra, GRAPH_HASH_KEY: graph_hash, CARD_KEY: card})
    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString(), metadata, card
