"""What an image file may cost beyond its pixel count, read from its header: bounds for the formats whose
cost in Pillow follows their bookkeeping, not their pixels.

- TIFF: Pillow turns every value of every tag of the first directory into Python objects when it opens
  the file, so the directory is walked here first (classic and BigTIFF): at most MAX_TIFF_TAGS entries
  and MAX_TIFF_VALUES numbers in one tag (strip or tile offsets: a 16 MP image stored one row per strip
  has at most 16,000).
- JPEG: Pillow reads the markers before the first scan one by one in Python, keeping every APPn and
  comment segment in a list (1.4 M empty comments: 1.2 s in the server), and skips fill and junk bytes one
  at a time; at most MAX_JPEG_STEPS of those steps (no photo of the dataset has over 20).
- GIF: Pillow reads the extension sub-blocks before the first image one by one in Python and joins a
  comment's (2.9 M one-byte blocks: 0.65 s); at most MAX_GIF_BLOCKS of them, junk bytes counted.
- BMP with RLE8/RLE4 compression: Pillow's decoder is Python and walks every declared pixel, so an RLE
  file may declare at most RLE_PIXELS_PER_BYTE pixels per byte it holds (one two-byte code gives at most
  255 pixels).
"""

import re
import struct

from PIL import Image, JpegImagePlugin

from runtime.errors import ImageError

MAX_TIFF_TAGS = 1000
MAX_TIFF_VALUES = 65_536
RLE_PIXELS_PER_BYTE = 128
MAX_JPEG_STEPS = 10_000
MAX_GIF_BLOCKS = 10_000
JPEG_MARKERS = {m & 0xFF: handler is not None for m, (_, _, handler) in JpegImagePlugin.MARKER.items()}  # -> length?
GIF_BLOCK_START = re.compile(rb"[!,;]")  # an extension, an image, the end: Pillow skips any other byte
TIFF_MAGIC = {b"II*\x00": ("<", False), b"MM\x00*": (">", False), b"II+\x00": ("<", True), b"MM\x00+": (">", True)}
TIFF_TEXT_TYPES = (1, 2, 6, 7)  # BYTE, ASCII, SBYTE, UNDEFINED: read as one bytes object, not one per value


def check_tiff(data: bytes):
    """ImageError when the first directory of a TIFF has too many tags or a tag with too many numbers."""
    order, big = TIFF_MAGIC[data[:4]]
    try:
        (ifd,) = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)
        (tags,) = struct.unpack_from(order + ("Q" if big else "H"), data, ifd)
    except struct.error:
        raise ImageError("cannot read image: TIFF directory outside the file") from None
    if tags > MAX_TIFF_TAGS:
        raise ImageError(f"TIFF directory of {tags} tags is over the cap of {MAX_TIFF_TAGS}")
    entry, start = (20, ifd + 8) if big else (12, ifd + 2)
    for i in range(tags):
        try:
            _, kind, count = struct.unpack_from(order + ("HHQ" if big else "HHI"), data, start + i * entry)
        except struct.error:
            raise ImageError("cannot read image: TIFF directory outside the file") from None
        if kind not in TIFF_TEXT_TYPES and count > MAX_TIFF_VALUES:
            raise ImageError(f"TIFF tag of {count} values is over the cap of {MAX_TIFF_VALUES} "
                             "(strips or tiles of a very tall image?)")


def jpeg_steps(data: bytes, most: int) -> int:
    """The steps of Pillow's JPEG header loop up to the first scan (a marker segment, a fill byte, a junk
    byte), counted as it reads them; stops counting past ``most``."""
    pos, steps = 2, 0  # Pillow has read the start-of-image marker
    while pos + 1 < len(data) and steps <= most:
        if data[pos] != 0xFF:  # junk, skipped a byte at a time
            end = data.find(b"\xff", pos)
            end = len(data) if end < 0 else end
            steps, pos = steps + end - pos, end
            continue
        marker, steps = data[pos + 1], steps + 1
        if marker == 0xDA or (marker not in JPEG_MARKERS and marker not in (0x00, 0xFF)):
            break  # the first scan; or no marker, where Pillow stops with an error
        if marker == 0xFF:  # a fill byte: the next 0xFF starts the marker
            pos += 1
        elif marker == 0x00 or not JPEG_MARKERS[marker]:
            pos += 2
        else:
            pos += 4 + max(int.from_bytes(data[pos + 2:pos + 4], "big") - 2, 0)
    return steps


def gif_blocks(data: bytes, most: int) -> int:
    """Sub-blocks and junk bytes Pillow reads one by one before a GIF's first image; stops counting past
    ``most``."""
    if len(data) < 13:
        return 0
    pos, blocks = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0), 0
    while blocks <= most:
        found = GIF_BLOCK_START.search(data, pos)
        blocks += (found.start() if found else len(data)) - pos
        if found is None or data[found.start()] != ord("!"):
            break
        pos = found.start() + 2  # past "!" and the extension's label
        while pos < len(data) and data[pos] and blocks <= most:
            blocks, pos = blocks + 1, pos + 1 + data[pos]
        pos += 1
    return blocks


def check_header(data: bytes):
    """Refuse, before Pillow parses it, a file whose header alone is costly to read."""
    if data[:4] in TIFF_MAGIC:
        check_tiff(data)
    elif data[:3] == b"\xff\xd8\xff" and jpeg_steps(data, MAX_JPEG_STEPS) > MAX_JPEG_STEPS:
        raise ImageError(f"JPEG with over {MAX_JPEG_STEPS} markers or junk bytes before its first scan")
    elif data[:6] in (b"GIF87a", b"GIF89a") and gif_blocks(data, MAX_GIF_BLOCKS) > MAX_GIF_BLOCKS:
        raise ImageError(f"GIF with over {MAX_GIF_BLOCKS} extension blocks or junk bytes before its first image")


def check_opened(data: bytes, img: Image.Image):
    """Refuse, before decoding, an opened image whose decoder's cost its size in bytes does not bound."""
    if img.format == "BMP" and img.info.get("compression") in (1, 2):
        w, h = img.size
        if w * h > RLE_PIXELS_PER_BYTE * len(data):
            raise ImageError(f"RLE BMP of {w}x{h} pixels in {len(data)} bytes: over {RLE_PIXELS_PER_BYTE} "
                             "pixels per byte")
