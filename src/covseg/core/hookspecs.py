"""Hook specifications: the plugin author's manual.

A covseg plugin is a Python module (or object) with functions named like the hooks below,
decorated with :data:`covseg.plugins.hookimpl`, and announced through the ``covseg`` entry-point
group of its package::

    # pyproject.toml of your package
    [project.entry-points.covseg]
    unet-lite = "covseg_unet_lite.plugin"

After ``pip install``, covseg finds it: ``covseg plugins`` lists it and ``covseg models`` lists its
models. covseg's own seven models, datasets and metrics are registered in exactly this way.

Import only :mod:`covseg.plugins` from covseg (the public plugin surface; the rest is internal),
and nothing heavy at import time: covseg imports every plugin module at every start, also for
``covseg models`` and ``covseg plugins``, which import no torch. Import torch, timm, torchvision,
:mod:`covseg.plugins.layers` and your network code inside the factory or loader.

Each hook returns a list of entries; a plugin implements only the hooks it needs. A plugin cannot
take covseg down: a failing import (``sys.exit`` included), a hook that raises or returns
something else than entries, a factory or loader that raises, are each reported in one line naming
the package, and the other plugins keep working. A name (or model alias) offered by two plugins is
refused when used, naming both packages; ``COVSEG_DISABLE_PLUGINS=plugin,...`` disables one.
``COVSEG_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import pluggy

from covseg.core.entries import DatasetEntry, MetricEntry, ModelEntry

PROJECT_NAME = "covseg"
ENTRY_POINT_GROUP = "covseg"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def covseg_models() -> list[ModelEntry]:
    """Return the segmentation models this plugin offers.

    Each :class:`~covseg.plugins.ModelEntry` carries a ``name`` (lower case, dashes, what users
    type: ``covseg train NAME``), a ``factory(num_classes=4, in_channels=3, pretrained=False)``
    that returns a ``torch.nn.Module``, a one-line ``description``, a ``family`` and optional
    ``aliases`` (older names that keep working). Spell each entry out, one ``ModelEntry`` per
    name, so that ``grep NAME`` finds it.

    The module must take (N, in_channels, H, W) for any H, W >= 32, also sizes not divisible by 32,
    and return logits (N, num_classes, H, W) as a plain tensor (not a dict); covseg checks the
    first forward. Build it in the factory: covseg calls this hook at every start, so the hook and
    the plugin module must import nothing heavy (no torch, timm or torchvision at import time).
    Example::

        from covseg.plugins import CovsegError, ModelEntry, hookimpl

        def build_tiny(num_classes=4, in_channels=3, pretrained=False):
            import torch  # here, not at the top: listing models must not import torch

            if pretrained:
                raise CovsegError("tiny-net has no pretrained weights")
            return torch.nn.Conv2d(in_channels, num_classes, 3, padding=1)

        @hookimpl
        def covseg_models():
            return [ModelEntry("tiny-net", build_tiny, "One 3x3 convolution.", family="toy")]
    """


@hookspec
def covseg_datasets() -> list[DatasetEntry]:
    """Return the data sets this plugin can read.

    Each :class:`~covseg.plugins.DatasetEntry` carries a ``name`` (``--dataset NAME``), a
    ``load(path, options)`` function, a one-line ``description`` and ``needs_path`` (False for
    generated data). ``load`` returns :class:`~covseg.plugins.CTSlices`: 2-D slices in memory, in
    Hounsfield units (``intensity="hu"``) or 8-bit (``intensity="uint8"``), with uint8 label masks
    0 background, 1 ground-glass, 2 consolidation, 3 effusion. covseg does the rest (intensity
    window, resizing, augmentation, split). Bad input raises
    :class:`~covseg.plugins.CovsegError` with one line naming the file; any other exception is
    reported as a fault of the plugin, naming the dataset and package. ``covseg.plugins`` has the
    readers (``read_image``, ``read_ct_volume``, ...) and option helpers (``check_known``,
    ``int_option``). Import nothing heavy at import time. Example::

        @hookimpl
        def covseg_datasets():
            return [DatasetEntry("npz-slices", load_npz, "Slices in one .npz file.")]

        def load_npz(path, options):
            arrays = np.load(path)
            return CTSlices(ids=[...], images=list(arrays["images"]),
                            masks=list(arrays["masks"]), intensity="hu", source=str(path))
    """


@hookspec
def covseg_metrics() -> list[MetricEntry]:
    """Return validation metrics computed from the confusion matrix.

    Each :class:`~covseg.plugins.MetricEntry` carries a ``name``, a ``compute(confusion)`` function,
    a one-line ``description`` and ``higher_is_better``. ``confusion`` is a (C, C) integer array
    summed over the whole validation set, rows the true class, columns the prediction; ``compute``
    returns a float, or a mapping of floats (reported as ``name/key``). Import nothing heavy at
    import time. Example::

        @hookimpl
        def covseg_metrics():
            return [MetricEntry("recall-effusion", effusion_recall, "Recall of class 3.")]

        def effusion_recall(confusion):
            return float(confusion[3, 3] / max(confusion[3].sum(), 1))
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in list(globals().items()) if hasattr(value, f"{PROJECT_NAME}_spec")
)
"""The hooks above, by name: what a plugin module defines."""
