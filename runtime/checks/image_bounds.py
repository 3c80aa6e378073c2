"""What an image file may cost beyond its pixel count, read from its header: bounds for the formats whose
cost in Pillow follows their bookkeeping, not their pixels.

- TIFF: Pillow turns every value of every tag of the first directory into Python objects when it opens
  the file, so the directory is walked here first (classic and BigTIFF): at most MAX_TIFF_TAGS entries
  and MAX_TIFF_VALUES numbers in one tag (strip or tile offsets: a 16 MP image stored one row per strip
  has at most 16,000).
- BMP with RLE8/RLE4 compression: Pillow's decoder is Python and walks every declared pixel, so an RLE
  file may declare at most RLE_PIXELS_PER_BYTE pixels per byte it holds (one two-byte code gives at most
  255 pixels).
"""

import struct

from PIL import Image

from runtime.errors import ImageError

MAX_TIFF_TAGS = 1000
MAX_TIFF_VALUES = 65_536
RLE_PIXELS_PER_BYTE = 128
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


def check_header(data: bytes):
    """Refuse, before Pillow parses it, a file whose header alone is costly to read."""
    if data[:4] in TIFF_MAGIC:
        check_tiff(data)


def check_opened(data: bytes, img: Image.Image):
    """Refuse, before decoding, an opened image whose decoder's cost its size in bytes does not bound."""
    if img.format == "BMP" and img.info.get("compression") in (1, 2):
        w, h = img.size
        if w * h > RLE_PIXELS_PER_BYTE * len(data):
            raise ImageError(f"RLE BMP of {w}x{h} pixels in {len(data)} bytes: over {RLE_PIXELS_PER_BYTE} "
                             "pixels per byte")
