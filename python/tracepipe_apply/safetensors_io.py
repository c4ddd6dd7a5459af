"""A minimal safetensors reader and writer (no dependency beyond torch): an 8-byte little-endian
header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw bytes. The writer
sorts keys and pads the header to 8 bytes, as pipeline/trace/safetensors.ts does."""

import ctypes
import json
import os
import struct

import torch

ST_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
            torch.uint8: "U8", torch.bool: "BOOL"}
TORCH_DTYPE = {v: k for k, v in ST_DTYPE.items()}


def _bytes(t):
    t = t.detach().to("cpu").contiguous()
    n = t.numel() * t.element_size()
    return ctypes.string_at(t.data_ptr(), n) if n else b""


def save(path, tensors):
    """Writes {name: tensor} to `path` (atomically, through a temporary file beside it)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in ST_DTYPE:
            raise ValueError(f"{path}: tensor {name!r}: dtype {t.dtype} has no safetensors code")
        raw = _bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load(path):
    """Reads a safetensors file into {name: CPU tensor}."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode())
    body = bytearray(data[8 + n:])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = TORCH_DTYPE[info["dtype"]]
        if b == a:
            out[name] = torch.empty(info["shape"], dtype=dt)
            continue
        raw = torch.frombuffer(body, dtype=torch.uint8, count=b - a, offset=a).clone()
        out[name] = (raw.view(torch.bool) if dt == torch.bool else raw.view(dt)).reshape(info["shape"])
    return out
