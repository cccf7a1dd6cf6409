"""Scoring a model against masks with fewer classes: ``covseg eval --merge SRC1,SRC2=TARGET``.

A MedSeg model predicts ground-glass, consolidation and effusion; a binary infection set (Zenodo
COVID-19-CT-Seg, MosMedData) marks only infection. Scored class by class against each other the
numbers mean nothing (a 4-class confusion of 2-class masks reads as about 0.25 mIoU), so covseg
refuses a model whose classes differ from the data's labels unless ``--merge`` says how they
correspond: ``--merge ground-glass,consolidation,effusion=infection`` (repeatable, one target
each). Model classes no ``--merge`` names keep their names (``background`` stays ``background``)
and must be labels of the data too.

The merge acts on the model's answer: each pixel's class is chosen first (argmax of the logits,
or of the flip-averaged softmax under TTA) and then relabelled. Summing the probabilities of the
merged classes before the argmax would be another model, one that may call a pixel "infection"
where the model itself chose background; what is scored here is what ``covseg predict`` shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from covseg.core.errors import CovsegError

if TYPE_CHECKING:
    import torch

EXAMPLE = "ground-glass,consolidation,effusion=infection"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class ClassMerge:
    """How a model's classes become the evaluation data's labels.

    ``mapping[i]`` is the data label (index into ``target_names``) of the model's class ``i``
    (``source_names[i]``).
    """

    source_names: tuple[str, ...]
    target_names: tuple[str, ...]
    mapping: tuple[int, ...]

    def relabel(self, predictions: torch.Tensor) -> torch.Tensor:
        """(N, H, W) model classes -> the same shape of data labels, on the tensors' device."""
        import torch

        table = torch.tensor(self.mapping, dtype=predictions.dtype, device=predictions.device)
        return table[predictions]

    def as_dict(self) -> dict[str, str]:
        """Model class name -> data label name, for the eval JSON."""
        return {name: self.target_names[to] for name, to in zip(self.source_names, self.mapping, strict=True)}

    def describe(self) -> str:
        """``ground-glass+consolidation+effusion -> infection``, one group per merged target."""
        groups = []
        for target, name in enumerate(self.target_names):
            sources = [self.source_names[i] for i, to in enumerate(self.mapping) if to == target]
            if sources and sources != [name]:
                groups.append(f"{'+'.join(sources) or 'nothing'} -> {name}")
        return ", ".join(groups) or "classes matched by name"


def parse_merges(specs: Sequence[str]) -> list[tuple[tuple[str, ...], str]]:
    """``["a,b=c"]`` -> ``[(("a", "b"), "c")]``; a one-line :class:`CovsegError` for bad text."""
    parsed = []
    for spec in specs:
        sources_text, separator, target = spec.partition("=")
        sources = tuple(part.strip() for part in sources_text.split(","))
        target = target.strip()
        if not separator or not all(_NAME.fullmatch(name) for name in (*sources, target)):
            raise CovsegError(f"--merge '{spec}' is not SOURCE[,SOURCE...]=TARGET with class names "
                              f"(e.g. --merge {EXAMPLE})")
        parsed.append((sources, target))
    return parsed


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names)


def check_merge_sources(model_names: Sequence[str], specs: Sequence[str]) -> dict[str, str]:
    """Model class -> merge target for every class ``specs`` merge, checked against the model
    alone, so that ``covseg eval`` refuses a bad ``--merge`` before reading any data.

    Raises a one-line :class:`CovsegError` for bad syntax, a class the model does not have, or a
    class merged twice.
    """
    chosen: dict[str, str] = {}
    for sources, target in parse_merges(specs):
        for source in sources:
            if source not in model_names:
                raise CovsegError(f"--merge {','.join(sources)}={target}: the model has no class "
                                  f"'{source}' (its classes: {_listed(model_names)})")
            if source in chosen:
                raise CovsegError(f"--merge: model class '{source}' is merged twice (into "
                                  f"'{chosen[source]}' and '{target}')")
            chosen[source] = target
    return chosen


def plan_merge(model_names: Sequence[str], data_names: Sequence[str], specs: Sequence[str],
               data: str) -> ClassMerge | None:
    """The merge that scores a model of classes ``model_names`` on masks labelled ``data_names``.

    None when no ``specs`` are given and the names agree (nothing to merge). ``data`` names the
    evaluation data in messages. Raises a one-line :class:`CovsegError` when the classes differ and
    no ``--merge`` is given (suggesting one), or when a ``--merge`` names a class the model does not
    have, a class twice (:func:`check_merge_sources`), a target that is not a data label, or leaves
    a model class with no label.
    """
    model_names, data_names = tuple(model_names), tuple(data_names)
    chosen = check_merge_sources(model_names, specs)
    if not specs:
        if model_names == data_names:
            return None
        extra = [name for name in model_names if name not in data_names]
        targets = [name for name in data_names[1:] if name not in model_names]
        target = targets[0] if len(targets) == 1 else "TARGET"
        hint = (f"; score it with --merge {','.join(extra)}={target}" if extra
                else "; --merge SOURCE[,SOURCE...]=TARGET says which model class is which label")
        raise CovsegError(f"the model predicts {len(model_names)} classes ({_listed(model_names)}) but "
                          f"{data} is labelled with {len(data_names)} ({_listed(data_names)}): "
                          f"scoring them class by class would be meaningless{hint}")
    for target in dict.fromkeys(chosen.values()):
        if target not in data_names:
            raise CovsegError(f"--merge ...={target}: '{target}' is not a label of {data} "
                              f"({_listed(data_names)})")
    mapping = []
    for name in model_names:
        target = chosen.get(name, name)
        if target not in data_names:
            raise CovsegError(f"model class '{name}' is not a label of {data} ({_listed(data_names)}); "
                              f"merge it too, e.g. --merge {name}=TARGET")
        mapping.append(data_names.index(target))
    return ClassMerge(model_names, data_names, tuple(mapping))
