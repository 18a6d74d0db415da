"""A minimal raster canvas and PNG writer (zlib + struct, no imaging library).

    canvas = Canvas(width, height)          white RGB, uint8 (H, W, 3)
    canvas.rect(x, y, w, h, colour); canvas.text(x, y, "ACC 0.91", colour, scale=2)
    write_png(path, canvas.pixels)          8-bit RGB, one IDAT chunk

Text uses a built-in 5x7 bitmap font: upper-case letters (lower case is drawn as upper),
digits and a little punctuation; any other character is drawn as '?'.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

__all__ = ["Canvas", "encode_png", "write_png"]

_FONT_ROWS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "####. ....# ....# .###. ....# ....# ####.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "-": "..... ..... ..... ##### ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "/": "....# ....# ...#. ..#.. .#... #.... #....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "%": "##..# ##..# ...#. ..#.. .#... #..## #..##",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "@": ".###. #...# #.### #.#.# #.### #.... .####",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
}
GLYPH_W, GLYPH_H = 5, 7
FONT = {
    ch: np.array([[c == "#" for c in row] for row in rows.split()], dtype=bool)
    for ch, rows in _FONT_ROWS.items()
}
assert all(g.shape == (GLYPH_H, GLYPH_W) for g in FONT.values()), "every glyph is 5x7"


class Canvas:
    """An RGB image to draw rectangles and text on; `pixels` is uint8 (H, W, 3)."""

    def __init__(self, width: int, height: int, background=(255, 255, 255)) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"canvas size must be positive, got {width}x{height}")
        self.pixels = np.empty((height, width, 3), np.uint8)
        self.pixels[:] = background

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    def rect(self, x: int, y: int, w: int, h: int, colour) -> None:
        """Fill a rectangle, clipped to the canvas."""
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 > x0 and y1 > y0:
            self.pixels[y0:y1, x0:x1] = colour

    @staticmethod
    def text_size(s: str, scale: int = 2) -> tuple[int, int]:
        """(width, height) in pixels of `s` drawn at `scale`."""
        return (max(0, len(s) * (GLYPH_W + 1) - 1) * scale, GLYPH_H * scale)

    def text(self, x: int, y: int, s: str, colour=(0, 0, 0), *, scale: int = 2) -> None:
        """Draw `s` with its top-left corner at (x, y), clipped to the canvas."""
        for k, ch in enumerate(s.upper()):
            glyph = FONT.get(ch, FONT["?"])
            big = np.kron(glyph, np.ones((scale, scale), dtype=bool))  # (7s, 5s)
            gx = x + k * (GLYPH_W + 1) * scale
            ys, xs = np.nonzero(big)
            ys, xs = ys + y, xs + gx
            inside = (ys >= 0) & (ys < self.height) & (xs >= 0) & (xs < self.width)
            self.pixels[ys[inside], xs[inside]] = colour


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 (H, W, 3) RGB -> PNG bytes (colour type 2, 8 bits, filter 0 on every row)."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise TypeError("rgb must be a uint8 numpy array")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
    h, w = rgb.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write `rgb` as a PNG file (atomically: a temporary file, then a rename)."""
    data = encode_png(rgb)
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
