"""A read-only memory map of one array inside an .npz file, where np.load only copies.

np.savez stores each member uncompressed (ZIP_STORED), so a member's .npy bytes lie as
they are in the file: past the zip local header, the .npy header, then the raw array.
Mapping them lets every process that opens the same snapshot share its pages through the
page cache (the fast-scan index's kept vectors: 1 GB at 10^6 x 256) instead of holding a
private copy each. Safe while the file is never changed in place: snapshots are written
to a temporary file and renamed, and a mapping outlives an unlink.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_MAGIC = b"PK\x03\x04"


def map_member(path: str, name: str) -> np.memmap:
    """The array `name` (e.g. "vectors") of the npz at `path`, mapped read-only.
    ValueError when the member is compressed, or not a plain C-order array."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name}.npy in {path} is compressed: it cannot be mapped")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_MAGIC:
            raise ValueError(f"{path}: no zip local header at {info.header_offset}")
        name_len, extra_len = fields[9], fields[10]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        f.seek(start)
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)  # fmt: skip
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if fortran or dtype.hasobject:
        raise ValueError(f"{name}.npy in {path} is not a plain C-order array")
    if offset - start + int(np.prod(shape)) * dtype.itemsize > info.file_size:
        raise ValueError(f"{name}.npy in {path} is shorter than its header says")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)  # type: ignore[return-value]  # mmap of 0 bytes fails
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
