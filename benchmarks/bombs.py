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
