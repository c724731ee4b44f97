#!/usr/bin/python3
"""Independent safetensors writer/reader used to check jem's implementation.

    scripts/make_st_fixture.py            write tests/fixtures/st/python.safetensors
    scripts/make_st_fixture.py --check F  read F (written by jem's test_safetensors
                                          with JEM_ST_EXPORT=F) and compare it with
                                          the expected tensors and metadata

The file is written from the format description alone (struct + json + numpy),
not with the `safetensors` package: 8-byte little-endian header length, JSON
header, data buffer. Unlike jem it does not pad the header and it lays the
data out in an order different from the header's key order, with a 15-byte
tensor first, so jem's reader also sees misaligned tensors. torch is used, when
present, as a second reader of the raw bytes.

The expected values are mirrored in tests/test_safetensors.c (expect_*).
"""
import json
import math
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "st", "python.safetensors")

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8}

UNICODE_NAME = "unicode.\u0436\u20ac\U0001F600"


def expected():
    """name -> numpy array (little-endian), in data order."""
    f32w = np.array([np.float32(i / 10.0 - 1.0) for i in range(24)],
                    dtype="<f4").reshape(2, 3, 4)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan,
                        np.float32(1e-45), np.finfo(np.float32).max,
                        np.float32(1.0 / 3.0)], dtype="<f4")
    f64 = np.array([1.0 / 3.0, -2.5e-300, math.pi, 1e308, -0.0], dtype="<f8")
    i32 = np.array([-2**31, -1, 0, 2**31 - 1], dtype="<i4").reshape(2, 2)
    i64 = np.array([-2**63, -42, 2**63 - 1], dtype="<i8")
    u8odd = np.array([(i * 37 + 11) % 256 for i in range(15)],
                     dtype=np.uint8).reshape(3, 5)
    return [
        ("u8.odd", "U8", u8odd),
        ("f32.weight", "F32", f32w),
        ("f64.values", "F64", f64),
        ("scalar", "F32", np.array(7.5, dtype="<f4")),
        ("empty", "F32", np.zeros((0, 4), dtype="<f4")),
        ("i32.ids", "I32", i32),
        ("f32.special", "F32", special),
        ("i64.big", "I64", i64),
        (UNICODE_NAME, "U8", np.array([200], dtype=np.uint8)),
    ]


def expected_meta():
    return {
        "format": "pt",
        'quote"back\\slash': 'line1\nline2\ttab "q" \\ \u00e9 \u0436 \U0001F600 \x01 end',
        "long": "".join(chr(ord("a") + i % 26) for i in range(5000)),
    }


def write(path):
    tensors = expected()
    header = {"__metadata__": expected_meta()}
    blobs, off = [], 0
    for name, dt, arr in tensors:
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    # keys sorted: the header order differs from the data order
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)
    print("wrote %s (%d tensors, header %d bytes, data %d bytes)"
          % (path, len(tensors), len(text), off))


def read(path):
    """Parse a safetensors file; return (metadata, {name: array}, info)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError("header length %d beyond the file" % n)
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = hdr.pop("__metadata__", {})
    out, spans = {}, []
    for name, e in hdr.items():
        if set(e) != {"dtype", "shape", "data_offsets"}:
            raise ValueError("%s: fields %s" % (name, sorted(e)))
        b, en = e["data_offsets"]
        dt = np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")
        count = int(np.prod(e["shape"], dtype=np.int64)) if e["shape"] else 1
        if count * dt.itemsize != en - b:
            raise ValueError("%s: size mismatch" % name)
        out[name] = np.frombuffer(data[b:en], dtype=dt).reshape(e["shape"])
        spans.append((b, en, name))
    spans.sort()
    pos = 0
    for b, en, name in spans:
        if b != pos:
            raise ValueError("%s: offsets do not tile the buffer" % name)
        pos = en
    if pos != len(data):
        raise ValueError("%d trailing bytes" % (len(data) - pos))
    info = {"header_len": n, "order": [s[2] for s in spans]}
    return meta, out, info


def torch_view(arr, dt):
    """Read the same bytes through torch (a second reader), or None."""
    try:
        import torch
    except ImportError:
        return None
    tdt = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32,
           "I64": torch.int64, "U8": torch.uint8}[dt]
    b = bytearray(arr.tobytes())
    if len(b) == 0:
        return torch.empty(arr.shape, dtype=tdt)
    return torch.frombuffer(b, dtype=tdt).reshape(arr.shape)


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def check(path):
    meta, got, info = read(path)
    bad = []
    for name, dt, arr in expected():
        if name not in got:
            bad.append("missing tensor %r" % name)
            continue
        g = got[name]
        if not same(g, arr):
            bad.append("tensor %r differs: %r vs %r" % (name, g, arr))
        t = torch_view(g, dt)
        if t is not None and t.numpy().tobytes() != arr.tobytes():
            bad.append("tensor %r differs when read through torch" % name)
    extra = set(got) - {n for n, _, _ in expected()}
    if extra:
        bad.append("unexpected tensors %s" % sorted(extra))
    if meta != expected_meta():
        bad.append("metadata differs: %r" % {k: v[:40] for k, v in meta.items()})
    if (8 + info["header_len"]) % 8 != 0:
        bad.append("data buffer not 8-byte aligned (header %d bytes): jem always pads, "
                   "so this file was not written by jem" % info["header_len"])
    for b in bad:
        print("FAIL", b)
    print("%s: %d tensors, %d metadata keys, header %d bytes, data order %s: %s"
          % (path, len(got), len(meta), info["header_len"], info["order"],
             "OK" if not bad else "%d problems" % len(bad)))
    return 0 if not bad else 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        return check(sys.argv[2])
    if len(sys.argv) == 1:
        write(OUT)
        return check_self(OUT)
    print(__doc__.strip().split("\n\n")[0], file=sys.stderr)
    return 2


def check_self(path):
    """Read back the fixture just written (padding rule not applied)."""
    meta, got, _ = read(path)
    ok = meta == expected_meta() and all(same(got[n], a) for n, _, a in expected())
    print("read back:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
