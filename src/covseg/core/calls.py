"""Calling into a plugin (a model factory, a dataset loader, a loss, a logger): its faults become one line.

A factory that raises (``sys.exit`` included) or returns something that is not a
``torch.nn.Module``, a model whose first forward returns logits of the wrong shape, an option the
factory does not take, a loss whose first result is not a scalar, a loader or logger that raises:
each is one :class:`~covseg.core.errors.CovsegError` naming the entry and its package.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from covseg.core.errors import CovsegError
from covseg.files import describe_os_error, one_line

if TYPE_CHECKING:
    import torch

    from covseg.core.entries import LoggerEntry, LossEntry, ModelEntry
    from covseg.core.registry import Provided

SET_BY_COVSEG = ("num_classes", "in_channels", "pretrained")
"""Factory arguments covseg sets itself: never model options."""


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


def model_options(provided: Provided[ModelEntry]) -> dict[str, Any] | None:
    """The options a model's factory takes, with their defaults (``inspect.Parameter.empty`` for
    none): its keyword parameters other than num_classes, in_channels and pretrained. None when they
    cannot be listed (a factory taking ``**kwargs``, or without a readable signature)."""
    try:
        parameters = inspect.signature(provided.entry.factory).parameters.values()
    except (TypeError, ValueError):  # a callable without a readable signature
        return None
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {parameter.name: parameter.default for parameter in parameters
            if parameter.kind in keyword and parameter.name not in SET_BY_COVSEG}


def check_model_options(provided: Provided[ModelEntry], options: Mapping[str, Any]) -> None:
    """Refuse, in one line naming the model and the option, an option its factory does not take.

    The options it does take are listed when its signature tells them.
    """
    for key in options:
        if key in SET_BY_COVSEG:
            raise CovsegError(f"{_named(provided)}: '{key}' is set by covseg, not a model option")
    taken = model_options(provided)
    if taken is None:
        return
    unknown = [key for key in options if key not in taken]
    if unknown:
        has = f"its options: {', '.join(taken)}" if taken else "it takes none"
        raise CovsegError(f"{_named(provided)} has no option '{unknown[0]}' ({has})")


def build_model(
    provided: Provided[ModelEntry],
    num_classes: int = 4,
    in_channels: int = 3,
    pretrained: bool = False,
    options: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """Call a model entry's factory with ``options`` as keyword arguments, guarded.

    An option the factory does not take (:func:`check_model_options`), a factory that raises or
    returns something that is not a ``torch.nn.Module``: one CovsegError naming the model and its
    package. The module's first eager forward is checked too: logits must be a tensor
    (N, num_classes, H, W) for input (N, in_channels, H, W), else CovsegError, naming the model and
    package again.
    """
    import torch

    options = dict(options or {})
    check_model_options(provided, options)
    with plugin_call(provided, "to build"):
        factory = provided.entry.factory
        model = factory(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **options)
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


def build_loss(
    provided: Provided[LossEntry], num_classes: int, class_weights: torch.Tensor | None = None
) -> torch.nn.Module:
    """Call a loss entry's build function, guarded like :func:`build_model`.

    A build that raises or returns something that is not a ``torch.nn.Module``, and a loss whose
    first result is not a 0-d floating tensor (or has no gradient for logits that need one), are one
    CovsegError naming the loss and its package.
    """
    import torch

    with plugin_call(provided, "to build"):
        loss = provided.entry.build(num_classes=num_classes, class_weights=class_weights)
    if not isinstance(loss, torch.nn.Module):
        raise CovsegError(f"{_named(provided)}: its build returned {a_value(loss)}, not a torch.nn.Module")

    def check(module: torch.nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 0 or not output.is_floating_point():
            shown = (f"a {output.dtype} tensor of shape {tuple(output.shape)}"
                     if isinstance(output, torch.Tensor) else a_value(output))
            raise CovsegError(f"{_named(provided)} returned {shown}, not the mean loss as a 0-d float tensor")
        logits = args[0] if args else None
        if isinstance(logits, torch.Tensor) and logits.requires_grad and not output.requires_grad:
            raise CovsegError(f"{_named(provided)} returned a loss without a gradient "
                              "(detached from the logits)")
        handle.remove()

    handle = loss.register_forward_hook(check)
    return loss


def start_logger(provided: Provided[LoggerEntry]) -> object:
    """Call a logger entry's ``create()``, guarded: its faults are one CovsegError naming the logger
    and its package (a CovsegError it raises, e.g. a missing package, passes unchanged)."""
    with plugin_call(provided, "to start"):
        return provided.entry.create()


def a_value(value: object) -> str:
    """``None`` or ``a str``: what a plugin handed over, for messages."""
    return "None" if value is None else f"a {type(value).__name__}"
