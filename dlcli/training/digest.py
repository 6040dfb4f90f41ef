"""A checkpoint's digest: XXH3-128 over everything it holds, so a flipped bit anywhere (weights,
optimizer state, the embedded config) is caught when the file is loaded.

Each top-level section (config, model, optimizer, ...) has its own digest, so a command verifies
the sections it reads (eval needs the weights, not Adam's moments, twice their size). A section is
walked in its own (insertion) order, which pickling keeps: every non-tensor value goes into a
canonical, type-tagged encoding, every tensor contributes its dtype and shape there and its raw
bytes to one byte stream. That stream is hashed in fixed 4 MiB segments on a thread pool (xxhash
releases the GIL), and the section's digest is XXH3-128 over the encoding plus the segments'
digests, in order. XXH3 because the digest guards against corruption, not forgery (a checkpoint
is trusted data, loaded with weights_only=True either way), and it hashes at memory speed: SHA-256
cost 2.4x a resume's load time here, XXH3 a few percent (benchmarks/checkpoint_digest.py).
"""

import os
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import xxhash

ALGORITHM = "xxh3_128-4MiB-segments"
SEGMENT = 4 << 20


def digest(payload: dict) -> dict:
    """What a checkpoint stores under "digest": the algorithm and each section's hex digest."""
    return {"algorithm": ALGORITHM, "sections": section_digests(payload, payload)}


def section_digests(payload: dict, names: Iterable[str]) -> dict[str, str]:
    """The hex digests of the named sections of `payload` (their tensors hashed on one pool)."""
    parts = []
    for name in names:
        encoding = bytearray()
        views: list = []
        _encode(payload[name], encoding, views)
        parts.append((name, encoding, _segments(views)))
    hashed = iter(_hash_segments([segment for _, _, segments in parts for segment in segments]))
    out = {}
    for name, encoding, segments in parts:
        final = xxhash.xxh3_128(bytes(encoding))
        for _ in segments:
            final.update(next(hashed))
        out[name] = final.hexdigest()
    return out


def compute(value) -> str:
    """The digest of one value, as a section holding it would have."""
    return section_digests({"value": value}, ["value"])["value"]


def _encode(value, out: bytearray, views: list) -> None:
    """Append a type-tagged encoding of `value` to `out` (unambiguous: lengths prefix every
    variable-length part); tensors' bytes go to `views` instead."""
    import torch

    if isinstance(value, torch.Tensor):
        _text(out, b"T", f"{value.dtype}{tuple(value.shape)}")
        views.append(_raw_bytes(value))
    elif isinstance(value, dict):
        out += b"d" + struct.pack("<Q", len(value))
        for key, item in value.items():
            _encode(key, out, views)
            _encode(item, out, views)
    elif isinstance(value, (list, tuple)):
        out += (b"l" if isinstance(value, list) else b"t") + struct.pack("<Q", len(value))
        for item in value:
            _encode(item, out, views)
    elif value is None or isinstance(value, bool):
        out += {None: b"N", True: b"Y", False: b"F"}[value]
    elif isinstance(value, int):
        _text(out, b"i", f"{value:x}")  # hex: no limit on the digits
    elif isinstance(value, float):
        _text(out, b"f", value.hex())  # exact, NaN and infinities included
    elif isinstance(value, str):
        _text(out, b"s", value)
    elif isinstance(value, (bytes, bytearray)):
        out += b"b" + struct.pack("<Q", len(value)) + bytes(value)
    else:  # what else weights_only can hold (torch.dtype, torch.Size, ...) has a stable repr
        _text(out, b"r", f"{type(value).__qualname__}:{value!r}")


def _text(out: bytearray, tag: bytes, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    out += tag + struct.pack("<Q", len(data)) + data


def _raw_bytes(tensor):
    """The tensor's elements as a flat uint8 buffer (no copy for a contiguous CPU tensor)."""
    import torch

    flat = tensor.detach().cpu().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else b""


def _segments(views: list) -> list[list]:
    """The concatenated tensor bytes cut at every SEGMENT bytes (the cuts depend only on the
    tensors' sizes, so saving and loading cut alike)."""
    segments: list[list] = [[]]
    room = SEGMENT
    for view in views:
        start = 0
        while start < len(view):
            take = min(room, len(view) - start)
            segments[-1].append(view[start:start + take])
            start, room = start + take, room - take
            if room == 0:
                segments.append([])
                room = SEGMENT
    return [segment for segment in segments if segment]


def _hash_segment(segment: list) -> bytes:
    hasher = xxhash.xxh3_128()
    for view in segment:
        hasher.update(view)
    return hasher.digest()


def _hash_segments(segments: list[list]) -> list[bytes]:
    workers = min(len(segments), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1)
    if workers <= 1:
        return [_hash_segment(segment) for segment in segments]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dlcli-digest") as pool:
        return list(pool.map(_hash_segment, segments))
