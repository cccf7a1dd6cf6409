"""Model cards of exported models: where they live, how they are tied to the file, which one applies.

``covseg export`` writes each model's card twice (:mod:`covseg.export.model_card` writes the text):

- in the ONNX file's metadata, ``covseg.model_card``, with ``covseg.graph_sha256``: the sha256 of the
  serialised graph (operators and weights, no metadata), which :func:`graph_sha256` recomputes;
- beside the file as ``<name>.MODEL.md`` (``unet-20250101.onnx`` -> ``unet-20250101.MODEL.md``; one
  per export, since exports share a folder), the same text plus the sha256 of the ONNX file on the
  line :data:`FILE_HASH_LABEL`. A file's own hash cannot be stored inside the file it hashes (writing
  it would change the hash), hence the graph hash inside and the file hash outside.

:func:`applicable_card` tells ``covseg predict`` which card describes the model it runs. Nothing
here imports torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from covseg.core.errors import CovsegError
from covseg.files import one_line

if TYPE_CHECKING:
    import onnx

CARD_SUFFIX = ".MODEL.md"
CARD_KEY = "model_card"
GRAPH_HASH_KEY = "graph_sha256"
"""Keys (after the ``covseg.`` prefix) of the card and the graph hash in the metadata."""
FILE_HASH_LABEL = "sha256 of the ONNX file"
_FILE_HASH = re.compile(re.escape(FILE_HASH_LABEL) + r":\s*`?([0-9a-f]{64})`?")


def card_path(onnx_path: Path) -> Path:
    """``<name>.MODEL.md`` beside ``<name>.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + CARD_SUFFIX)


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def graph_sha256(model: bytes | onnx.ModelProto) -> str:
    """The sha256 (hex) of an ONNX model's graph (operators, weights, inputs and outputs), without
    its metadata: ``ModelProto.graph`` serialised deterministically. ``model``: the file's bytes
    or the parsed model."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else model
    return hashlib.sha256(proto.graph.SerializeToString(deterministic=True)).hexdigest()


def card_file_hash(text: str) -> str | None:
    """The ONNX file's sha256 a MODEL.md states, None when it states none."""
    match = _FILE_HASH.search(text)
    return match.group(1) if match else None


@dataclass(frozen=True)
class CardCheck:
    """Which card applies to a model, in one line (:attr:`line`), and any warning about it."""

    line: str
    warning: str | None = None
    path: Path | None = None


def applicable_card(model_path: Path | None, props: dict[str, str], origin: str) -> CardCheck:
    """The card that describes the model ``model_path`` (None: a model exported in memory) with
    metadata ``props``; checks the file hash of a MODEL.md beside it and the graph hash of the
    card in the metadata.

    Never raises for a missing or foreign card (a warning says what is wrong); an unreadable
    MODEL.md is a :class:`CovsegError` naming it.
    """
    embedded = props.get("covseg." + CARD_KEY)
    stated_graph = props.get("covseg." + GRAPH_HASH_KEY)
    if model_path is None:
        if embedded:
            return CardCheck(f"model card: in the metadata of {origin} (generated with it)")
        return CardCheck("model card: none", f"{origin} carries no model card")
    beside = card_path(model_path)
    warning = None
    if beside.is_file():
        try:
            text = beside.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CovsegError(f"model card {beside} cannot be read: {one_line(error)}") from None
        stated = card_file_hash(text)
        actual = file_sha256(model_path)
        if stated == actual:
            return CardCheck(
                f"model card: {beside} (sha256 of {model_path.name} matches: {actual[:12]}...)", path=beside
            )
        warning = f"{beside} does not describe {model_path.name}: " + (
            "it states no file sha256"
            if stated is None
            else f"it states sha256 {stated[:12]}..., the file has {actual[:12]}..."
        )
    if not embedded:
        return CardCheck(
            "model card: none",
            warning
            or f"{model_path} carries no model card (exported by an older covseg or another tool) and has no "
            + beside.name
            + " beside it",
        )
    actual_graph = graph_sha256(model_path.read_bytes())
    if stated_graph != actual_graph:
        return CardCheck(
            f"model card: in the metadata of {model_path}, for ANOTHER graph",
            f"the card in {model_path} was written for graph sha256 {str(stated_graph)[:12]}..., "
            f"but the file's graph has {actual_graph[:12]}...: the weights were changed after export",
        )
    where = f"model card: in the metadata of {model_path} (graph sha256 matches: {actual_graph[:12]}...)"
    return CardCheck(where, warning)
