"""The safetensors layout, read and written one tensor at a time with plain file reads and writes.

    8 bytes      the JSON header's length, little-endian
    header       {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
                 padded with spaces to a multiple of 8 bytes
    data         the tensors' bytes back to back, offsets counted from the data's start

The `safetensors` package maps a file into memory to read it, and every page it touches counts
as the process's memory until the file is closed: loading a 3.4 GB U-Net that way holds a
second, file-backed copy of it beside the network. Reading each tensor into its own array goes
through the page cache instead, which the kernel can drop.
"""

import json

import numpy as np

from genlab.files import atomic_path

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def _numpy_dtype(dtype):
    if dtype == "BF16":  # Half-precision checkpoints; NumPy has no bfloat16, ml_dtypes (TensorFlow's) does.
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if dtype not in _DTYPES:
        raise ValueError(f"tensor dtype {dtype!r} is not one this reader knows")
    return np.dtype(_DTYPES[dtype])


class SafetensorsFile:
    """An open safetensors file: its names, shapes and metadata from the header; `get` reads one tensor."""

    def __init__(self, path):
        self.file = open(path, "rb")
        try:
            size = self.file.seek(0, 2)
            self.file.seek(0)
            length = int.from_bytes(self.file.read(8), "little")
            if size < 8 or not 2 <= length <= size - 8:
                raise ValueError(f"a header of {length} bytes does not fit a file of {size}")
            header = json.loads(self.file.read(length))
            self.metadata = header.pop("__metadata__", None) or {}
            self.entries = header
            self.data_start = 8 + length
            for name, entry in header.items():
                begin, end = entry["data_offsets"]
                count = int(np.prod(entry["shape"], dtype=np.int64))
                if end - begin != count * _numpy_dtype(entry["dtype"]).itemsize or self.data_start + end > size:
                    raise ValueError(f"tensor {name!r}'s bytes do not match its shape, or lie past the file's end")
        except Exception:
            self.file.close()
            raise

    def keys(self):
        return list(self.entries)

    def shape(self, name):
        return tuple(self.entries[name]["shape"])

    def get(self, name):
        entry = self.entries[name]
        begin, end = entry["data_offsets"]
        self.file.seek(self.data_start + begin)
        data = bytearray(end - begin)
        self.file.readinto(data)
        return np.frombuffer(data, dtype=_numpy_dtype(entry["dtype"])).reshape(entry["shape"])

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def write_safetensors(path, items, metadata=None):
    """Writes (name, shape, dtype, producer) tensors as a safetensors file, producing one tensor at a time."""
    items = sorted(items, key=lambda item: item[0])
    header, offset = {"__metadata__": dict(metadata or {"format": "pt"})}, 0
    for name, shape, dtype, _ in items:
        size = int(np.prod(shape, dtype=np.int64)) * _numpy_dtype(dtype).itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(len(encoded).to_bytes(8, "little"))
            f.write(encoded)
            for name, shape, dtype, produce in items:
                array = produce()
                if tuple(array.shape) != tuple(shape):
                    raise RuntimeError(f"{name}: produced {array.shape}, announced {shape}")
                f.write(np.ascontiguousarray(array, dtype=_numpy_dtype(dtype)).tobytes())
