"""Training augmentation with albumentations: rotation, scaling, elastic deformation, flips, and
intensity changes (Gaussian noise, blur, brightness/contrast, gamma).

Image and mask go through one ``albumentations.Compose`` call, so they move together; the image
is interpolated linearly, the mask by nearest neighbour (labels stay labels). Rotation, scaling
and elastic deformation fill what they uncover by repeating the edge pixels (air around the
patient) in image and mask alike, so no artificial black wedges appear in windowed CT. The
intensity transforms touch the image only. Augmentation runs after normalisation (see
:mod:`covseg.data.dataset`), so every intensity change works in the [0, 1] intensity space (noise
std 0.01-0.03 is 15-45 HU in the default lung window) and albumentations clips each result of a
float image to [0, 1].
Validation uses no augmentation.

Presets (:data:`PRESETS`): ``reference`` (the study's rotation, flips and noise; the transforms
added later are off, p=0, so configs recorded before them mean the same) and ``nnunet``
(nnU-Net's default 2D augmentation, :meth:`AugmentationConfig.nnunet`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import albumentations as A
import cv2

from covseg.core.errors import CovsegError

RANGES = ("noise_std_range", "scale_range", "gamma_range", "blur_sigma_range")
"""The (low, high) fields of :class:`AugmentationConfig`."""
PROBABILITIES = ("rotation_p", "scale_p", "elastic_p", "hflip_p", "vflip_p", "noise_p", "blur_p",
                 "brightness_contrast_p", "gamma_p")
"""The probability fields of :class:`AugmentationConfig`."""


@dataclass(frozen=True)
class AugmentationConfig:
    """Each transform's strength and the probability it is applied to a training sample.

    Geometry: ``rotation_degrees`` (uniform in ±degrees), ``scale_range`` (zoom factor, uniform),
    ``elastic_alpha``/``elastic_sigma`` (displacement scale and Gaussian smoothing, in pixels, of
    albumentations' ElasticTransform; the defaults 34 and 4 are Simard et al. 2003's), flips.
    Intensity, on [0, 1] images:
    ``noise_std_range`` (Gaussian noise std), ``blur_sigma_range`` (Gaussian blur sigma, pixels),
    ``brightness_limit``/``contrast_limit`` (additive brightness shift and contrast factor - 1,
    uniform in ±limit), ``gamma_range`` (image ** gamma, gamma uniform in the range). The fields
    added after the reference recipe default to p=0: a config without them means what it meant.
    """

    rotation_degrees: float = 15.0
    rotation_p: float = 0.5
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    noise_std_range: tuple[float, float] = (0.01, 0.03)
    noise_p: float = 0.5
    scale_range: tuple[float, float] = (0.7, 1.4)
    scale_p: float = 0.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0
    elastic_p: float = 0.0
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    blur_p: float = 0.0
    brightness_limit: float = 0.1
    contrast_limit: float = 0.25
    brightness_contrast_p: float = 0.0
    gamma_range: tuple[float, float] = (0.7, 1.5)
    gamma_p: float = 0.0

    def __post_init__(self) -> None:
        for name in RANGES:
            object.__setattr__(self, name, tuple(float(value) for value in getattr(self, name)))
        for name in PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise CovsegError(f"augmentation {name}={value}: a probability must be in [0, 1]")
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise CovsegError(f"augmentation rotation_degrees={self.rotation_degrees}: must be in [0, 180]")
        bounds = {"noise_std_range": (0.0, 1.0), "scale_range": (0.1, 10.0), "gamma_range": (0.1, 10.0),
                  "blur_sigma_range": (0.0, 20.0)}
        for name, (lowest, highest) in bounds.items():
            value = getattr(self, name)
            low, high = value if len(value) == 2 else (-1.0, -2.0)
            if not lowest <= low <= high <= highest:
                raise CovsegError(f"augmentation {name}={value}: expected (low, high) with "
                                  f"{lowest:g} <= low <= high <= {highest:g}")
        for name, highest in (("elastic_alpha", 1000.0), ("elastic_sigma", 1000.0),
                              ("brightness_limit", 1.0), ("contrast_limit", 1.0)):
            value = getattr(self, name)
            if not 0.0 <= value <= highest:
                raise CovsegError(f"augmentation {name}={value}: must be in [0, {highest:g}]")

    @classmethod
    def reference(cls) -> AugmentationConfig:
        """The reference study's recipe: random rotation, horizontal and vertical flips, Gaussian noise."""
        return cls()

    @classmethod
    def nnunet(cls) -> AugmentationConfig:
        """nnU-Net's default data augmentation for 2D, in the [0, 1] intensity space.

        Source: Isensee et al. 2021, "nnU-Net: a self-configuring method for deep learning-based
        biomedical image segmentation", Nature Methods 18:203-211, supplementary note "data
        augmentation": rotation (2D: ±180°, p=0.2), scaling 0.7-1.4 (p=0.2), Gaussian noise (p=0.1),
        Gaussian blur sigma 0.5-1 (p=0.2), brightness (multiplier 0.75-1.25, p=0.15), contrast
        (0.75-1.25, p=0.15), gamma 0.7-1.5 (p=0.3), mirroring along each axis (p=0.5). Kept as
        there, except: brightness is additive here (±0.1 of the [0, 1] range, about ±150 HU in the
        lung window) rather than a multiplier of z-scored intensities; noise keeps the reference
        std 0.01-0.03 (nnU-Net's variance is relative to z-scored data); elastic deformation stays
        off (nnU-Net's default leaves it off too); low-resolution simulation is not included.
        """
        return cls(rotation_degrees=180.0, rotation_p=0.2, hflip_p=0.5, vflip_p=0.5,
                   noise_std_range=(0.01, 0.03), noise_p=0.1, scale_range=(0.7, 1.4), scale_p=0.2,
                   elastic_p=0.0, blur_sigma_range=(0.5, 1.0), blur_p=0.2, brightness_limit=0.1,
                   contrast_limit=0.25, brightness_contrast_p=0.15, gamma_range=(0.7, 1.5), gamma_p=0.3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for run configs."""
        record = asdict(self)
        for name in RANGES:
            record[name] = list(getattr(self, name))
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentationConfig:
        """Inverse of :meth:`to_dict`; unknown keys and bad values raise one-line errors.

        Keys left out keep their defaults (a record of an older covseg lacks the later transforms,
        whose p=0 defaults leave them off).
        """
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise CovsegError(f"augmentation setting '{unknown[0]}' is unknown (known: {names})")
        try:
            values = {key: tuple(map(float, value)) if key in RANGES else float(value)
                      for key, value in data.items()}
        except (TypeError, ValueError) as error:
            raise CovsegError(f"augmentation record {dict(data)!r} is malformed: {error}") from None
        return cls(**values)

    def describe(self) -> str:
        """One line for logs and tables (transforms that are off are left out)."""
        low, high = self.noise_std_range
        parts = [f"rotate ±{self.rotation_degrees:g}° (p={self.rotation_p:g}), hflip p={self.hflip_p:g}, "
                 f"vflip p={self.vflip_p:g}, noise std {low:g}-{high:g} (p={self.noise_p:g})"]
        if self.scale_p:
            parts.append(f"scale {self.scale_range[0]:g}-{self.scale_range[1]:g} (p={self.scale_p:g})")
        if self.elastic_p:
            parts.append(f"elastic alpha {self.elastic_alpha:g} sigma {self.elastic_sigma:g} "
                         f"(p={self.elastic_p:g})")
        if self.blur_p:
            parts.append(f"blur sigma {self.blur_sigma_range[0]:g}-{self.blur_sigma_range[1]:g} "
                         f"(p={self.blur_p:g})")
        if self.brightness_contrast_p:
            parts.append(f"brightness ±{self.brightness_limit:g} contrast ±{self.contrast_limit:g} "
                         f"(p={self.brightness_contrast_p:g})")
        if self.gamma_p:
            parts.append(f"gamma {self.gamma_range[0]:g}-{self.gamma_range[1]:g} (p={self.gamma_p:g})")
        return ", ".join(parts)


PRESETS: dict[str, Callable[[], AugmentationConfig]] = {
    "reference": AugmentationConfig.reference,
    "nnunet": AugmentationConfig.nnunet,
}
"""Named augmentation settings (the ``augmentation`` setting takes a name or a table)."""


def build_augmentation(config: AugmentationConfig, seed: int) -> A.Compose:
    """The albumentations pipeline of a config, seeded; transforms with p=0 are left out.

    Geometry first (one spatial resampling after another, mask by nearest neighbour), then the
    intensity transforms on the image only (albumentations clips float images to [0, 1]).
    """
    geometry = {"interpolation": cv2.INTER_LINEAR, "mask_interpolation": cv2.INTER_NEAREST,
                "border_mode": cv2.BORDER_REPLICATE}
    transforms: list[A.BasicTransform] = []
    if config.rotation_p > 0 and config.rotation_degrees > 0:
        transforms.append(A.Rotate(limit=(-config.rotation_degrees, config.rotation_degrees), **geometry,
                                   p=config.rotation_p))
    if config.scale_p > 0 and config.scale_range != (1.0, 1.0):
        transforms.append(A.Affine(scale=config.scale_range, keep_ratio=True, **geometry, p=config.scale_p))
    if config.elastic_p > 0 and config.elastic_alpha > 0:
        transforms.append(A.ElasticTransform(alpha=config.elastic_alpha, sigma=config.elastic_sigma,
                                             **geometry, p=config.elastic_p))
    if config.hflip_p > 0:
        transforms.append(A.HorizontalFlip(p=config.hflip_p))
    if config.vflip_p > 0:
        transforms.append(A.VerticalFlip(p=config.vflip_p))
    if config.noise_p > 0 and config.noise_std_range[1] > 0:
        transforms.append(A.GaussNoise(std_range=config.noise_std_range, mean_range=(0.0, 0.0),
                                       per_channel=False, p=config.noise_p))
    if config.blur_p > 0 and config.blur_sigma_range[1] > 0:
        # blur_limit 0: the kernel size follows sigma (round(sigma * 3.5) * 2 + 1 in albumentations)
        transforms.append(A.GaussianBlur(blur_limit=0, sigma_limit=config.blur_sigma_range, p=config.blur_p))
    if config.brightness_contrast_p > 0 and (config.brightness_limit or config.contrast_limit):
        transforms.append(A.RandomBrightnessContrast(
            brightness_limit=config.brightness_limit, contrast_limit=config.contrast_limit,
            brightness_by_max=True, p=config.brightness_contrast_p))
    if config.gamma_p > 0 and config.gamma_range != (1.0, 1.0):
        low, high = config.gamma_range
        # albumentations takes gamma in percent
        transforms.append(A.RandomGamma(gamma_limit=(low * 100, high * 100), p=config.gamma_p))
    return A.Compose(transforms, seed=seed)
