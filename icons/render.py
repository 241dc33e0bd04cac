#!/usr/bin/env python3
"""Call Vitals icon rasteriser (stdlib only): draws the shapes of icon.svg into icon{16,32,48,128}.png."""
import struct
import zlib
from pathlib import Path

# (x, y, width, height, corner radius, RGB) in the 128-unit space of icon.svg, drawn in order.
SHAPES = [
    (4, 4, 120, 120, 26, (0x0F, 0x76, 0x6E)),
    (22, 76, 16, 24, 3, (0xFF, 0xFF, 0xFF)),
    (46, 58, 16, 42, 3, (0xFF, 0xFF, 0xFF)),
    (70, 40, 16, 60, 3, (0xFF, 0xFF, 0xFF)),
    (94, 22, 16, 78, 3, (0xA7, 0xF3, 0xD0)),
]
SUPERSAMPLE = 4


def inside(px, py, x, y, w, h, r):
    if px < x or py < y or px > x + w or py > y + h:
        return False
    cx = min(max(px, x + r), x + w - r)
    cy = min(max(py, y + r), y + h - r)
    return (px - cx) ** 2 + (py - cy) ** 2 <= r * r


def render(size):
    scale = 128 / size
    rows = []
    for j in range(size):
        row = bytearray([0])  # PNG filter type: none
        for i in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]  # premultiplied RGB and alpha
            for sj in range(SUPERSAMPLE):
                for si in range(SUPERSAMPLE):
                    px = (i + (si + 0.5) / SUPERSAMPLE) * scale
                    py = (j + (sj + 0.5) / SUPERSAMPLE) * scale
                    colour = None
                    for x, y, w, h, r, rgb in SHAPES:
                        if inside(px, py, x, y, w, h, r):
                            colour = rgb
                    if colour:
                        for c in range(3):
                            acc[c] += colour[c]
                        acc[3] += 1
            n = SUPERSAMPLE * SUPERSAMPLE
            alpha = acc[3] / n
            rgb = [round(acc[c] / acc[3]) if acc[3] else 0 for c in range(3)]
            row += bytes(rgb + [round(alpha * 255)])
        rows.append(bytes(row))
    return png(size, b"".join(rows))


def png(size, raw):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for size in (16, 32, 48, 128):
        (here / f"icon{size}.png").write_bytes(render(size))
        print(f"icon{size}.png")
