"""Training augmentation with albumentations: rotation, flips and Gaussian noise.

Image and mask go through one ``albumentations.Compose`` call, so they move together; the image
is interpolated linearly, the mask by nearest neighbour (labels stay labels). Rotation fills the
corners it uncovers by repeating the edge pixels (air around the patient) in image and mask alike,
so no artificial black wedges appear in windowed CT. Noise is added in the normalised [0, 1]
intensity space (std 0.01-0.03 is 15-45 HU in the default lung window) and clipped to [0, 1].
Validation uses no augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import albumentations as A
import cv2

from covseg.core.errors import CovsegError


@dataclass(frozen=True)
class AugmentationConfig:
    """Each transform's strength and the probability it is applied to a training sample."""

    rotation_degrees: float = 15.0
    rotation_p: float = 0.5
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    noise_std_range: tuple[float, float] = (0.01, 0.03)
    noise_p: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_std_range", tuple(float(value) for value in self.noise_std_range))
        for name in ("rotation_p", "hflip_p", "vflip_p", "noise_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise CovsegError(f"augmentation {name}={value}: a probability must be in [0, 1]")
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise CovsegError(f"augmentation rotation_degrees={self.rotation_degrees}: must be in [0, 180]")
        low, high = self.noise_std_range if len(self.noise_std_range) == 2 else (-1.0, -1.0)
        if not 0.0 <= low <= high <= 1.0:
            raise CovsegError(f"augmentation noise_std_range={self.noise_std_range}: "
                              "expected (low, high) with 0 <= low <= high <= 1")

    @classmethod
    def reference(cls) -> AugmentationConfig:
        """The reference study's recipe: random rotation, horizontal and vertical flips, Gaussian noise."""
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for run configs."""
        record = asdict(self)
        record["noise_std_range"] = list(self.noise_std_range)
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentationConfig:
        """Inverse of :meth:`to_dict`; unknown keys and bad values raise one-line errors."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise CovsegError(f"augmentation setting '{unknown[0]}' is unknown (known: {names})")
        try:
            values = {key: tuple(map(float, value)) if key == "noise_std_range" else float(value)
                      for key, value in data.items()}
        except (TypeError, ValueError) as error:
            raise CovsegError(f"augmentation record {dict(data)!r} is malformed: {error}") from None
        return cls(**values)

    def describe(self) -> str:
        """One line for logs and tables."""
        low, high = self.noise_std_range
        return (f"rotate ±{self.rotation_degrees:g}° (p={self.rotation_p:g}), hflip p={self.hflip_p:g}, "
                f"vflip p={self.vflip_p:g}, noise std {low:g}-{high:g} (p={self.noise_p:g})")


def build_augmentation(config: AugmentationConfig, seed: int) -> A.Compose:
    """The albumentations pipeline of a config, seeded; transforms with p=0 are left out."""
    transforms: list[A.BasicTransform] = []
    if config.rotation_p > 0 and config.rotation_degrees > 0:
        transforms.append(A.Rotate(limit=(-config.rotation_degrees, config.rotation_degrees),
                                   interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                                   border_mode=cv2.BORDER_REPLICATE, p=config.rotation_p))
    if config.hflip_p > 0:
        transforms.append(A.HorizontalFlip(p=config.hflip_p))
    if config.vflip_p > 0:
        transforms.append(A.VerticalFlip(p=config.vflip_p))
    if config.noise_p > 0 and config.noise_std_range[1] > 0:
        transforms.append(A.GaussNoise(std_range=config.noise_std_range, mean_range=(0.0, 0.0),
                                       per_channel=False, p=config.noise_p))
    return A.Compose(transforms, seed=seed)
