"""Pictures a person can look at: label maps in colour, overlays, side-by-side panels, captions
(what the picture shows and a legend of the class colours) and montages of many slices.

Captions are drawn with Pillow's built-in font (:func:`PIL.ImageFont.load_default`), so nothing is
read from the system; text that comes from files (slice ids, model names) is reduced to printable
ASCII first, so no glyph is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Background transparent; ground-glass yellow, consolidation red, effusion blue.
CLASS_COLOURS = np.array([[0, 0, 0], [255, 215, 0], [230, 25, 75], [0, 130, 200]], dtype=np.uint8)
CAPTION_BACKGROUND = (24, 24, 24)
CAPTION_TEXT = (235, 235, 235)
FONT_SIZE = 12
LINE_HEIGHT = 16
PADDING = 4
MIN_CAPTION_WIDTH = 320
"""A caption band is at least this wide (a small slice gets a wider canvas, the slice top-left)."""
TEXT_LIMIT = 160
MONTAGE_TILE = 160
MONTAGE_COLUMNS = 6


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """A model-input image (H, W) or (H, W, C) in [0, 1] as an 8-bit RGB picture."""
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] in (1, 3) else image[0]
    gray = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


@lru_cache(maxsize=4)
def _blend_table(alpha: float) -> np.ndarray:
    """(classes, 256, 3) uint8: grey level g of class c blended as round((1 - alpha) g + alpha colour_c),
    in float32; class 0 (background) keeps its grey."""
    gray = np.arange(256, dtype=np.float32)[None, :, None]
    table = (
        ((1 - alpha) * gray + alpha * CLASS_COLOURS.astype(np.float32)[:, None, :]).round().astype(np.uint8)
    )
    table[0] = np.arange(256, dtype=np.uint8)[:, None]
    return table


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours onto the grayscale image where labels are not background: (H, W, 3) uint8.

    One table look-up per pixel (:func:`_blend_table`); labels beyond the colours take the last one.
    """
    gray = to_gray_uint8(image)[..., 0]
    return _blend_table(alpha)[np.clip(labels, 0, len(CLASS_COLOURS) - 1), gray]


def side_by_side(image: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray) -> np.ndarray:
    """image | truth overlay | prediction overlay, separated by a thin white line."""
    panels = [to_gray_uint8(image)]
    if truth is not None:
        panels.append(overlay(image, truth))
    panels.append(overlay(image, prediction))
    height = panels[0].shape[0]
    gap = np.full((height, 2, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


PNG_COMPRESSION = 1
"""zlib level of the PNGs covseg writes, with the "sub" row filter: an overlay encodes in about a
sixth of the time of Pillow's default (level 6, adaptive filters) for a file about a sixth larger
(``benchmarks/volume_speed.py``); PNG stays lossless."""


def png_bytes(picture: np.ndarray) -> bytes:
    """An RGB (H, W, 3) or grey (H, W) uint8 picture as PNG bytes (OpenCV's encoder, which releases
    the GIL, so pictures encode in parallel threads)."""
    import cv2

    image = picture[..., ::-1] if picture.ndim == 3 else picture  # OpenCV stores BGR
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        PNG_COMPRESSION,
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_SUB,
    ]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a picture of shape {picture.shape} as PNG")
    return encoded.tobytes()


def save_png(picture: np.ndarray, path: Path) -> None:
    """Write an RGB picture atomically (:func:`png_bytes`)."""
    from covseg.files import write_bytes

    write_bytes(Path(path), png_bytes(picture))


def caption_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` as printable ASCII (others become ``?``), cut to ``limit`` characters."""
    clean = "".join(char if " " <= char <= "~" else "?" for char in str(text))
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (OSError, ValueError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _wrap(font, text: str, width: int) -> list[str]:
    """Greedy word wrap of one line to ``width`` pixels (a single over-long word stays whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and _text_width(font, candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current]


def legend_entries(class_names: Sequence[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(``name (label)``, RGB colour) of every lesion class that has an overlay colour."""
    count = min(len(class_names), len(CLASS_COLOURS))
    return [
        (
            f"{caption_text(class_names[label], 40)} ({label})",
            tuple(int(value) for value in CLASS_COLOURS[label]),
        )
        for label in range(1, count)
    ]


def _legend_rows(font, entries: list[tuple[str, tuple[int, int, int]]], width: int) -> list[list]:
    swatch = LINE_HEIGHT - 6
    rows: list[list] = [[]]
    used = 0
    for text, colour in entries:
        needed = swatch + 4 + _text_width(font, text) + 12
        if rows[-1] and used + needed > width:
            rows.append([])
            used = 0
        rows[-1].append((used, text, colour))
        used += needed
    return rows if entries else []


def captioned(
    picture: np.ndarray, lines: Sequence[str], class_names: Sequence[str] | None = None
) -> np.ndarray:
    """``picture`` (H, W, 3) uint8 above a caption band: ``lines`` of text (wrapped to the width),
    then the legend of the class colours (``class_names``, label 0 first; None: no legend).

    Returns (H + band, max(W, :data:`MIN_CAPTION_WIDTH`), 3) uint8, the picture at the top left.
    """
    font = _font()
    height, width = picture.shape[:2]
    canvas_width = max(width, MIN_CAPTION_WIDTH)
    text_width = canvas_width - 2 * PADDING
    wrapped = [part for line in lines for part in _wrap(font, caption_text(line), text_width)]
    legend = _legend_rows(font, legend_entries(class_names), text_width) if class_names else []
    band = 2 * PADDING + LINE_HEIGHT * (len(wrapped) + len(legend))
    caption = Image.new("RGB", (canvas_width, band), CAPTION_BACKGROUND)
    draw = ImageDraw.Draw(caption)
    y = PADDING
    for line in wrapped:
        draw.text((PADDING, y), line, fill=CAPTION_TEXT, font=font)
        y += LINE_HEIGHT
    swatch = LINE_HEIGHT - 6
    for row in legend:
        for x, text, colour in row:
            left = PADDING + x
            draw.rectangle((left, y + 3, left + swatch, y + 3 + swatch), fill=colour)
            draw.text((left + swatch + 4, y), text, fill=CAPTION_TEXT, font=font)
        y += LINE_HEIGHT
    top = picture[..., :3]
    if width < canvas_width:  # a narrow picture: the band's colour to its right
        top = np.concatenate(
            [top, np.broadcast_to(np.uint8(CAPTION_BACKGROUND), (height, canvas_width - width, 3))], 1
        )
    return np.concatenate([top, np.asarray(caption)])


def _tile(picture: np.ndarray, label: str, side: int) -> Image.Image:
    """``picture`` shrunk to fit ``side`` x ``side`` (aspect kept), its label below, on a dark tile."""
    image = Image.fromarray(picture)
    scale = min(side / image.width, side / image.height, 1.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR) if size != image.size else image
    tile = Image.new("RGB", (side, side + LINE_HEIGHT), CAPTION_BACKGROUND)
    tile.paste(image, ((side - size[0]) // 2, (side - size[1]) // 2))
    ImageDraw.Draw(tile).text((2, side), caption_text(label, 30), fill=CAPTION_TEXT, font=_font())
    return tile


def montage(
    pictures: Sequence[np.ndarray],
    labels: Sequence[str],
    lines: Sequence[str],
    class_names: Sequence[str] | None = None,
    columns: int = MONTAGE_COLUMNS,
    side: int = MONTAGE_TILE,
) -> np.ndarray:
    """Pictures (H, W, 3) uint8 in a grid of ``side``-pixel tiles, each with its label, captioned
    with ``lines`` and the colour legend (:func:`captioned`). Needs at least one picture."""
    if not pictures:
        raise ValueError("a montage needs at least one picture")
    columns = max(1, min(columns, len(pictures)))
    rows = -(-len(pictures) // columns)
    tile_height = side + LINE_HEIGHT
    grid = Image.new(
        "RGB", (columns * side + (columns - 1) * 2, rows * tile_height + (rows - 1) * 2), (255, 255, 255)
    )
    for index, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        row, column = divmod(index, columns)
        grid.paste(_tile(picture, label, side), (column * (side + 2), row * (tile_height + 2)))
    return captioned(np.asarray(grid), lines, class_names)
