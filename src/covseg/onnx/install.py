"""Which onnxruntime build is installed, and the one line that says how to repair a mixed install.

``onnxruntime`` (CPU, covseg's default dependency) and ``onnxruntime-gpu`` (``covseg[gpu]``) are two
distributions of one import package: both unpack into ``site-packages/onnxruntime/``. With both
installed, the files of whichever was installed last win (onnxruntime-gpu installed first and the
CPU build second: the CUDA provider is silently gone), and uninstalling either deletes the shared
files, so ``import onnxruntime`` of the other one breaks too (both checked with onnxruntime 1.31/1.32).
Nothing here imports onnxruntime or torch: the check reads installed metadata only
(:mod:`importlib.metadata`).
"""

from __future__ import annotations

from importlib import metadata

from covseg.core.errors import CovsegError

CPU_DISTRIBUTION = "onnxruntime"
GPU_DISTRIBUTION = "onnxruntime-gpu"


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (e.g. ``"onnxruntime-gpu"``), None when absent."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _reinstall(distribution: str) -> str:
    return (f"pip uninstall -y {CPU_DISTRIBUTION} {GPU_DISTRIBUTION} && pip install {distribution}")


def mixed_install_message(gpu_present: bool | None = None) -> str | None:
    """One line naming both onnxruntime builds and the command that keeps one; None unless both are there.

    ``gpu_present`` decides which build to keep (onnxruntime-gpu where a CUDA GPU is visible);
    None asks the CUDA driver (:func:`covseg.onnx.session.cuda_device_count`).
    """
    cpu, gpu = installed_version(CPU_DISTRIBUTION), installed_version(GPU_DISTRIBUTION)
    if cpu is None or gpu is None:
        return None
    if gpu_present is None:
        from covseg.onnx.session import cuda_device_count

        gpu_present = cuda_device_count() > 0
    keep, remove = ((GPU_DISTRIBUTION, CPU_DISTRIBUTION) if gpu_present
                    else (CPU_DISTRIBUTION, GPU_DISTRIBUTION))
    why = "this machine has a CUDA GPU" if gpu_present else "this machine shows no CUDA GPU"
    return (f"both {CPU_DISTRIBUTION} {cpu} and {GPU_DISTRIBUTION} {gpu} are installed; they share one "
            f"`onnxruntime` folder (the last installed wins, removing one breaks the other): "
            f"remove {remove} ({why}) with `{_reinstall(keep)}`")


def import_onnxruntime():
    """``import onnxruntime``, or one :class:`CovsegError` line saying how to reinstall a broken install.

    A half-removed mixed install (see the module doc) leaves an empty ``onnxruntime`` folder that
    imports as a namespace package without ``InferenceSession``.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise CovsegError(f"onnxruntime cannot be imported ({error}); reinstall it with "
                          f"`{_reinstall(CPU_DISTRIBUTION)}` (or {GPU_DISTRIBUTION} for NVIDIA GPUs)"
                          ) from None
    if not hasattr(onnxruntime, "InferenceSession"):
        keep = GPU_DISTRIBUTION if installed_version(GPU_DISTRIBUTION) else CPU_DISTRIBUTION
        folder = next(iter(onnxruntime.__path__))
        raise CovsegError(f"onnxruntime is broken: its folder {folder} lacks its files (one of two "
                          f"onnxruntime builds was uninstalled); repair it with `{_reinstall(keep)}`")
    return onnxruntime
