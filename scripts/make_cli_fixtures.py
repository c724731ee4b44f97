#!/usr/bin/env python3
"""Write tests/fixtures/data/img28.png: one 28x28 8-bit grey PNG (a diagonal
gradient) that tests/cli_bad_input.sh copies into class folders to build
png: data sets of any number of classes. Standard library only."""
import os
import struct
import zlib

W = H = 28


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out = os.path.join(root, "tests", "fixtures", "data", "img28.png")
    rows = b"".join(b"\x00" + bytes((x + y) * 255 // (W + H - 2) for x in range(W)) for y in range(H))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    with open(out, "wb") as f:
        f.write(png)
    print(out, len(png), "bytes")


if __name__ == "__main__":
    main()
