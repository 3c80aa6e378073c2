"""Read named metadata buffers from a .tflite flatbuffer with no TensorFlow and no flatbuffers package.

Only the few tables needed are walked: Model.buffers (field 4), Model.metadata (field 6),
Metadata{name, buffer} and Buffer.data.
"""

import struct


def _u32(b, pos):
    return struct.unpack_from("<I", b, pos)[0]


def _field(b, table, index):
    """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
    vtable = table - struct.unpack_from("<i", b, table)[0]
    if 4 + 2 * index >= struct.unpack_from("<H", b, vtable)[0]:
        return None
    off = struct.unpack_from("<H", b, vtable + 4 + 2 * index)[0]
    return table + off if off else None


def _deref(b, pos):
    """Follow the uoffset stored at ``pos``."""
    return pos + _u32(b, pos)


def _vector(b, table, index):
    """(start, length) of a vector field; (0, 0) when absent."""
    pos = _field(b, table, index)
    if pos is None:
        return 0, 0
    vec = _deref(b, pos)
    return vec + 4, _u32(b, vec)


def read_metadata(data: bytes) -> dict[str, bytes]:
    """All ``name -> bytes`` metadata entries of a TFLite model held in memory."""
    model = _u32(data, 0)
    buffers, n_buffers = _vector(data, model, 4)
    metas, n_metas = _vector(data, model, 6)
    out = {}
    for i in range(n_metas):
        meta = _deref(data, metas + 4 * i)
        name_pos, buf_pos = _field(data, meta, 0), _field(data, meta, 1)
        if name_pos is None or buf_pos is None or _u32(data, buf_pos) >= n_buffers:
            continue
        name = _deref(data, name_pos)
        buf = _deref(data, buffers + 4 * _u32(data, buf_pos))
        start, length = _vector(data, buf, 0)
        out[bytes(data[name + 4:name + 4 + _u32(data, name)]).decode()] = bytes(data[start:start + length])
    return out
