"""A read-only memory map of one array inside an .npz file, where np.load only copies,
and the writer that lays such a file out for it.

An npz stores each member uncompressed (ZIP_STORED), so a member's .npy bytes lie as
they are in the file: past the zip local header, the .npy header, then the raw array.
np.savez aligns the data to 64 bytes only within its member, so in the file it lands
anywhere; write_npz pads the zip header (an extra field) so that a mapped member's data
starts on a 64-byte boundary, and streams it from parts (no concatenated copy).
Mapping them lets every process that opens the same snapshot share its pages through the
page cache (the fast-scan index's kept vectors: 1 GB at 10^6 x 256) instead of holding a
private copy each. Safe while the file is never changed in place: snapshots are written
to a temporary file and renamed, and a mapping outlives an unlink.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_MAGIC = b"PK\x03\x04"


ALIGN = 64
_PADDING_ID = 0xA5A5  # a zip extra field id of no meaning: padding


def write_npz(
    f: BinaryIO, arrays: dict[str, np.ndarray], aligned: str, parts: Sequence[np.ndarray]
) -> None:
    """An npz of `arrays` plus the member `aligned`, the rows of `parts` one after the
    other ((n_i, d) of one dtype), its data on an ALIGN-byte boundary of the file."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
        first = parts[0]
        rows = sum(len(p) for p in parts)
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, {
            "descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
            "shape": (rows, *first.shape[1:]),
        })  # fmt: skip
        info = zipfile.ZipInfo(f"{aligned}.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        # local header: 30 bytes, the name, our extra (4 + pad), zipfile's zip64 extra (20)
        start = f.tell() + _LOCAL_HEADER.size + len(info.filename) + 4 + 20
        pad = (-(start + len(header.getvalue()))) % ALIGN
        info.extra = struct.pack("<HH", _PADDING_ID, pad) + b"\0" * pad
        with z.open(info, "w", force_zip64=True) as out:
            out.write(header.getvalue())
            for p in parts:
                if p.size:  # (a cast of an empty view fails)
                    out.write(memoryview(np.ascontiguousarray(p)).cast("B"))


def map_member(path: str, name: str) -> np.ndarray:
    """The array `name` (e.g. "vectors") of the npz at `path`, mapped read-only; a copy
    when its data is not aligned for its dtype (an npz np.savez wrote). ValueError when
    the member is compressed, or not a plain C-order array."""
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
        return np.zeros(shape, dtype)  # mmap of 0 bytes fails
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    if offset % max(dtype.alignment, 1):  # faiss reads it as float*: no unaligned data
        return np.array(mapped)
    return mapped
