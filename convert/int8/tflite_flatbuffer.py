"""A TFLite flatbuffer as TFLite's object API model and back, for the passes that rewrite a converted file."""


def read(data: bytes):
    """The flatbuffer ``data`` as a mutable ``ModelT``."""
    from tensorflow.lite.python import schema_py_generated as fb

    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))


def packed(model, size_hint: int) -> bytes:
    """``model`` serialized as a TFLite file; ``size_hint``: about its size in bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
