"""``--format dicom-seg``: labels as a DICOM Segmentation (SEG) object over the source series.

Written with highdicom (the optional extra ``covseg[dicom]``): a BINARY Segmentation Storage
object (DICOM PS3.3 A.51) that references every source CT slice, one segment per lesion class
(segment number = label value), each with coded terms from DICOM PS3.16, so a DICOM viewer
(3D Slicer, OHIF, ...) shows it over the series:

| label | segment | type (CID 7151) | anatomic region |
|---|---|---|---|
| 1 | ground-glass | DCM 112120 Ground glass opacity (also in CID 6104) | SCT 39607008 Lung |
| 2 | consolidation | SCT 95436008 Lung consolidation | SCT 39607008 Lung |
| 3 | effusion | SCT 60046008 Pleural effusion | SCT 3120008 Pleura |

Every segment's category (CID 7150) is SCT 49755003 Morphologically Abnormal Structure.

Algorithm: type AUTOMATIC, family DCM 123110 Artificial Intelligence (CID 7162), named after the
model and covseg's version. A model whose classes have no coded terms here is refused for SEG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from covseg import __version__
from covseg.core.errors import CovsegError
from covseg.data.dicom import EXTRA, DicomVolume
from covseg.files import atomic_write, one_line
from covseg.visualize import CLASS_COLOURS

SEG_SUFFIX = ".seg.dcm"
SEG_SERIES_NUMBER = 900
"""SeriesNumber of the SEG series (any number; viewers list it beside the source series)."""
_MORPHOLOGICALLY_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
_LUNG = ("39607008", "SCT", "Lung")
_PLEURA = ("3120008", "SCT", "Pleura")
SEGMENT_CODES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str], tuple[str, str, str]]] = {
    "ground-glass": (_MORPHOLOGICALLY_ABNORMAL, ("112120", "DCM", "Ground glass opacity"), _LUNG),
    "consolidation": (_MORPHOLOGICALLY_ABNORMAL, ("95436008", "SCT", "Lung consolidation"), _LUNG),
    "effusion": (_MORPHOLOGICALLY_ABNORMAL, ("60046008", "SCT", "Pleural effusion"), _PLEURA),
}
"""(category, type, anatomic region) of each lesion class, as (code value, scheme, meaning)."""


def check_dicom_seg(class_names: Sequence[str]) -> None:
    """Refuse, before any work, a SEG that cannot be written: highdicom missing, or classes
    (other than background, label 0) without coded terms in :data:`SEGMENT_CODES`."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise CovsegError(f"--format dicom-seg needs highdicom, which is not installed: {EXTRA}") from None
    unknown = [name for name in class_names[1:] if name not in SEGMENT_CODES]
    if unknown:
        raise CovsegError(f"--format dicom-seg: no coded terms for class(es) {', '.join(unknown)}; "
                          f"covseg codes {', '.join(SEGMENT_CODES)} (use the default NIfTI labels)")


def _code(triple: tuple[str, str, str]):
    from pydicom.sr.coding import Code

    return Code(*triple)


def segmentation_frames(labels: np.ndarray, volume: DicomVolume) -> np.ndarray:
    """Display-order labels (Z, H, W) -> one frame per source slice (slices, rows, columns), in
    the order of ``volume.sources``, each frame laid out as its slice's pixels."""
    return np.ascontiguousarray(volume.reoriented.to_stored(labels).transpose(2, 1, 0))


def write_dicom_seg(
    labels: np.ndarray, volume: DicomVolume, class_names: Sequence[str], path: Path, model_label: str
) -> None:
    """Write ``labels`` (Z, H, W uint8, display order) as a SEG over ``volume``'s series, atomically.

    Raises :class:`CovsegError` (one line) when highdicom is missing, a class has no coded terms,
    or highdicom refuses the source headers.
    """
    check_dicom_seg(class_names)
    import highdicom as hd
    from pydicom.sr.codedict import codes

    frames = segmentation_frames(labels, volume)
    stacked = np.stack([frames == label for label in range(1, len(class_names))], axis=-1).astype(np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"covseg {model_label}"[:64], family=codes.cid7162.ArtificialIntelligence, version=__version__)
    segments = []
    for label, name in enumerate(class_names[1:], start=1):
        category, kind, region = SEGMENT_CODES[name]
        colour = CLASS_COLOURS[label % len(CLASS_COLOURS)]
        segments.append(hd.seg.SegmentDescription(
            segment_number=label, segment_label=name, segmented_property_category=_code(category),
            segmented_property_type=_code(kind), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, anatomic_regions=[_code(region)],
            display_color=hd.color.CIELabColor.from_rgb(*(int(value) for value in colour)),
        ))
    try:
        seg = hd.seg.Segmentation(
            source_images=list(volume.sources), pixel_array=stacked,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
            series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="covseg", manufacturer_model_name=model_label[:64],
            software_versions=__version__, device_serial_number="none", content_label="COVSEG",
            content_description="covseg lesion segmentation"[:64],
            series_description=f"covseg {model_label}"[:64], omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise CovsegError(f"{path}: highdicom cannot build a SEG over {volume.series.where}: "
                          f"{one_line(error)}") from None
    atomic_write(path, lambda handle: seg.save_as(handle, enforce_file_format=True))
