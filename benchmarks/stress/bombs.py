"""Hostile image files, small on the wire and costly to decode: the cases the runtime must bound."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def progressive_jpeg(side: int, scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated until it has about ``scans`` scans."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", progressive=True, quality=30)
    data = buf.getvalue()
    last = data.rindex(b"\xff\xda")
    have = data.count(b"\xff\xda")
    return data[:-2] + data[last:-2] * max(0, scans - have) + b"\xff\xd9"


def com_flood(markers: int) -> bytes:
    """An 8x8 JPEG preceded by ``markers`` empty comment segments (parsed one by one in Python)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    data = buf.getvalue()
    return data[:2] + b"\xff\xfe\x00\x02" * markers + data[2:]


def gif_comment_flood(blocks: int) -> bytes:
    """An 8x8 GIF with one comment of ``blocks`` one-byte sub-blocks (Pillow joins them in memory)."""
    buf = io.BytesIO()
    Image.new("P", (8, 8)).save(buf, "GIF")
    data = buf.getvalue()
    at = data.index(b",")
    return data[:at] + b"!\xfe" + b"\x01x" * blocks + b"\x00" + data[at:]


def png_of_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its data is a few bytes, so the file is tiny)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def solid(fmt: str, width: int, height: int, **options) -> bytes:
    """A one-colour image of the given size: a few KB on the wire, ``width * height`` pixels decoded."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, fmt, **options)
    return buf.getvalue()


def png_empty_chunks(chunks: int) -> bytes:
    """An 8x8 PNG with ``chunks`` empty IDAT chunks before its data (each read in Python)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    data = buf.getvalue()
    at = data.index(b"IDAT") - 4
    empty = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    return data[:at] + empty * chunks + data[at:]


def rle_bmp(width: int, height: int = 1) -> bytes:
    """An RLE8 BMP declaring ``width`` x ``height`` pixels that holds one pixel and an end-of-bitmap escape
    (Pillow's pure-Python RLE decoder walks every declared pixel)."""
    data = b"\x01\x00" + b"\x00\x00" + b"\x00\x01"  # one pixel of colour 0, end of line, end of bitmap
    palette = b"\x00\x00\x00\x00" * 2
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 2, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def tiff_strips(strips: int) -> bytes:
    """An uncompressed 1 x ``strips`` grayscale TIFF with one row per strip, every strip pointing at the same
    byte (Pillow builds a Python tuple of every strip's offset and size when it opens the file)."""
    entries, ifd = 9, 10  # the pixel byte at 8, the directory after it
    offsets_at = ifd + 2 + entries * 12 + 4
    counts_at = offsets_at + 2 * strips

    def entry(tag, kind, count, value):
        return struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 and count == 1
                                                         else struct.pack("<I", value))
    body = b"".join([entry(256, 3, 1, 1), entry(257, 4, 1, strips), entry(258, 3, 1, 8), entry(259, 3, 1, 1),
                     entry(262, 3, 1, 1), entry(273, 3, strips, offsets_at), entry(277, 3, 1, 1),
                     entry(278, 4, 1, 1), entry(279, 3, strips, counts_at)])
    return (b"II*\x00" + struct.pack("<I", ifd) + b"\x80\x00" + struct.pack("<H", entries) + body + b"\x00" * 4
            + struct.pack("<H", 8) * strips + struct.pack("<H", 1) * strips)
