#!/usr/bin/python3
"""Regenerates glyph-atlas.bin: anti-aliased DejaVu Sans glyph bitmaps for printable ASCII.

Run by hand (never by the build): /usr/bin/python3 generate_atlas.py
Needs Debian's python3-pil and fonts-dejavu-core. The output is committed so that the renderer
needs no system fonts at run time.

Format (little-endian, then the whole file is zlib-compressed):
  "FLGA" u8 version=2 u8 faceCount
  per face: u8 id, u8 pixelSize, u8 ascent, u8 descent, u16 glyphCount
    per glyph: u16 char (UTF-16 code unit), u16 advance*64, i8 left, i8 top (offset of the bitmap's top-left from the
               pen position on the baseline, y down), u8 width, u8 height, width*height alpha bytes
"""
import struct
import zlib
from PIL import ImageFont

FACES = [  # id, file, pixel size
    (0, "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 12),
    (1, "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 13),
    (2, "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 16),
]

# Beyond ASCII: symbols a federated-learning report writes (ε, δ, μ, σ, ≤, ×, ±, …).
EXTRA = "αβγδεηθκλμνπρστφχψωΔΣΩ×±≤≥≈≠∞°·–—…²³√→←↑↓€£µ‰"

out = bytearray(b"FLGA")
out += struct.pack("<BB", 2, len(FACES))
for face_id, path, size in FACES:
    font = ImageFont.truetype(path, size)
    ascent, descent = font.getmetrics()
    chars = [chr(c) for c in range(32, 127)] + list(EXTRA)
    out += struct.pack("<BBBBH", face_id, size, ascent, descent, len(chars))
    for ch in chars:
        advance = font.getlength(ch)
        mask, offset = font.getmask2(ch, mode="L", anchor="ls")
        w, h = mask.size
        data = bytes(mask) if w and h else b""
        out += struct.pack("<HHbbBB", ord(ch), round(advance * 64), offset[0], offset[1], w, h)
        out += data

with open("glyph-atlas.bin", "wb") as f:
    f.write(zlib.compress(bytes(out), 9))
print(len(out), "bytes raw")
