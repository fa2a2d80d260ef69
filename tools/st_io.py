"""Minimal safetensors reading and writing with the standard library only, so
the project's scripts run under any Python without extra packages.

A tensor is (dtype, shape, raw little-endian bytes).
"""
import json
import struct

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read(path):
    """Returns (tensors: dict name -> (dtype, shape, bytes), metadata: dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    base = 8 + hlen
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = (info["dtype"], list(info["shape"]), data[base + a:base + b])
    return tensors, meta


def write(path, tensors, metadata=None):
    """tensors: dict name -> (dtype, shape, bytes), written in insertion order."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, (dtype, shape, raw) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        if n * DTYPE_SIZES[dtype] != len(raw):
            raise ValueError(f"{name}: shape {shape} and {len(raw)} bytes disagree")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
