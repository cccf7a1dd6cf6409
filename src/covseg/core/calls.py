"""Calling into a plugin (a model factory, a dataset loader): its faults become one line.

A factory that raises (``sys.exit`` included) or returns something that is not a
``torch.nn.Module``, a model whose first forward returns logits of the wrong shape, a loader that
raises: each is one :class:`~covseg.core.errors.CovsegError` naming the entry and its package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from covseg.core.errors import CovsegError
from covseg.files import describe_os_error, one_line

if TYPE_CHECKING:
    import torch

    from covseg.core.entries import ModelEntry
    from covseg.core.registry import Provided


@contextlib.contextmanager
def plugin_call(provided: Provided, action: str) -> Iterator[None]:
    """Run a plugin's function (a factory, a loader): its faults become one line naming the entry
    and its package, e.g. ``model 'x' (covseg-x 1.0) failed to build: RuntimeError: ...``.

    CovsegError (already a one-line message), MemoryError and KeyboardInterrupt pass unchanged.
    """
    try:
        yield
    except (CovsegError, MemoryError, KeyboardInterrupt):
        raise
    except (Exception, SystemExit) as error:
        raise CovsegError(f"{_named(provided)} failed {action}: {error_text(error)}") from error


def _named(provided: Provided) -> str:
    plugin = provided.plugin
    return f"{provided.kind} '{provided.entry.name}' ({f'{plugin.package} {plugin.version}'.strip()})"


def error_text(error: BaseException) -> str:
    """An exception as one line; sys.exit and OS errors said the way users read them."""
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r})"
    if isinstance(error, OSError):
        return describe_os_error(error, action="use")  # names the file the system named
    return one_line(error)


def build_model(
    provided: Provided[ModelEntry], num_classes: int = 4, in_channels: int = 3, pretrained: bool = False
) -> torch.nn.Module:
    """Call a model entry's factory, guarded: a factory that raises, or returns something that is not
    a ``torch.nn.Module``, is one CovsegError naming the model and its package. The module's first
    eager forward is checked too: logits must be a tensor (N, num_classes, H, W) for input
    (N, in_channels, H, W), else CovsegError, naming the model and package again.
    """
    import torch

    with plugin_call(provided, "to build"):
        factory = provided.entry.factory
        model = factory(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained)
    if not isinstance(model, torch.nn.Module):
        raise CovsegError(f"{_named(provided)}: its factory returned {a_value(model)}, not a torch.nn.Module")
    _check_first_forward(model, provided, num_classes)
    return model


def _check_first_forward(model: torch.nn.Module, provided: Provided, num_classes: int) -> None:
    """Check the logits of the first eager forward, then remove the check (no cost afterwards)."""
    import torch

    def check(module: torch.nn.Module, args: tuple, output: object) -> None:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return  # checked on the first plain call instead; tracers must not see Python checks
        if not args or not isinstance(args[0], torch.Tensor) or args[0].ndim != 4:
            return
        inputs = args[0]
        expected = (inputs.shape[0], num_classes, *inputs.shape[2:])
        if not isinstance(output, torch.Tensor):
            raise CovsegError(f"{_named(provided)} returned {a_value(output)}, not a logits tensor "
                              f"(N, num_classes, H, W) = {expected}")
        if tuple(output.shape) != expected:
            raise CovsegError(f"{_named(provided)} returned logits of shape {tuple(output.shape)} for "
                              f"input {tuple(inputs.shape)}; expected (N, num_classes, H, W) = {expected}")
        handle.remove()

    handle = model.register_forward_hook(check)


def a_value(value: object) -> str:
    """``None`` or ``a str``: what a plugin handed over, for messages."""
    return "None" if value is None else f"a {type(value).__name__}"
