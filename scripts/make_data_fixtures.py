#!/usr/bin/python3
"""Write the data-loader test fixtures under tests/fixtures/data/.

Run from the project root with Debian's Python and PIL (python3-pil):

    /usr/bin/python3 scripts/make_data_fixtures.py

The C tests read only the committed output, never Python. Everything here is
an independent route to the same answers the C loaders must give:

  png/<class>/<image>.png   tiny PNGs (5 wide, 4 high) of every colour type,
                            written by PIL or, for bit depths (and the Adam7
                            interlacing) PIL cannot write, by the small PNG
                            encoder below
  png_expected.txt          per image: path, channels, height, width and the
                            expected values in [-1, 1] computed here from the
                            source samples (v / max * 2 - 1, alpha composited
                            over black, i.e. value * alpha)
  bad/                      a truncated PNG, a bad-CRC PNG, non-PNG bytes
  corrupt/c0/               a folder whose second image is truncated
  mixed/c0, mixed/c1        a folder with two image sizes
  idx_stats.txt             statistics of Fashion-MNIST / MNIST read with
                            Python's gzip module
"""
import gzip
import os
import random
import struct
import sys
import zlib

from PIL import Image

ROOT = os.path.join("tests", "fixtures", "data")
W, H = 5, 4
rng = random.Random(20240611)


# ----------------------------------------------------------- PNG encoder

def png_chunk(tag, data):
    return (struct.pack(">I", len(data)) + tag + data +
            struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
         (1, 0, 2, 2), (0, 1, 1, 2))  # (x0, y0, dx, dy) of each pass


def encode_png(ctype, depth, rows, plte=None, trns=None, interlace=False):
    """rows: H lists of samples (channels interleaved)."""
    spp = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    w = len(rows[0]) // spp
    if interlace:  # Adam7: the passes' sub-images, one after the other
        sub = []
        for x0, y0, dx, dy in ADAM7:
            if x0 >= w:
                continue
            for y in range(y0, len(rows), dy):
                sub.append([s for x in range(x0, w, dx) for s in rows[y][x * spp:(x + 1) * spp]])
    else:
        sub = rows
    raw = bytearray()
    for row in sub:
        raw.append(0)  # filter: none
        if depth == 16:
            for s in row:
                raw += struct.pack(">H", s)
        elif depth == 8:
            raw += bytes(row)
        else:
            acc, nbits = 0, 0
            for s in row:
                acc = (acc << depth) | s
                nbits += depth
                if nbits == 8:
                    raw.append(acc)
                    acc, nbits = 0, 0
            if nbits:
                raw.append(acc << (8 - nbits))
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, len(rows), depth, ctype, 0, 0,
                                          1 if interlace else 0))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(c for rgb in plte for c in rgb))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    out += png_chunk(b"IEND", b"")
    return out


def ihdr(path):
    with open(path, "rb") as f:
        d = f.read(33)
    assert d[:8] == b"\x89PNG\r\n\x1a\n", path
    w, h, depth, ctype = struct.unpack(">IIBB", d[16:26])
    return w, h, depth, ctype


# --------------------------------------------------------------- images

images = []  # (relpath, channels, expected [C][H*W] values in [0, 1])


def grey_rows(maxv):
    return [[rng.randint(0, maxv) for _ in range(W)] for _ in range(H)]


def add(rel, want_depth, want_ctype, chans):
    path = os.path.join(ROOT, "png", rel)
    w, h, depth, ctype = ihdr(path)
    assert (w, h, depth, ctype) == (W, H, want_depth, want_ctype), (rel, w, h, depth, ctype)
    images.append((rel, len(chans), chans))


def write(rel, data):
    path = os.path.join(ROOT, "png", rel)
    with open(path, "wb") as f:
        f.write(data)


def flat(rows):
    return [v for row in rows for v in row]


def make_pngs():
    for d in ("a_grey", "b_colour"):
        os.makedirs(os.path.join(ROOT, "png", d), exist_ok=True)

    # grey 8-bit (PIL "L")
    g = grey_rows(255)
    g[0][0], g[0][1] = 0, 255
    Image.frombytes("L", (W, H), bytes(flat(g))).save(os.path.join(ROOT, "png", "a_grey", "g8.png"))
    add("a_grey/g8.png", 8, 0, [[v / 255 for v in flat(g)]])

    # grey 16-bit (PIL "I;16", little-endian source bytes)
    g = grey_rows(65535)
    g[0][0], g[0][1], g[0][2] = 0, 65535, 257 * 77 + 1
    Image.frombytes("I;16", (W, H), b"".join(struct.pack("<H", v) for v in flat(g))).save(
        os.path.join(ROOT, "png", "a_grey", "g16.png"))
    add("a_grey/g16.png", 16, 0, [[v / 65535 for v in flat(g)]])

    # grey + alpha 8-bit (PIL "LA")
    g, a = grey_rows(255), grey_rows(255)
    a[0][0], a[0][1] = 0, 255
    Image.frombytes("LA", (W, H), bytes(v for p in zip(flat(g), flat(a)) for v in p)).save(
        os.path.join(ROOT, "png", "a_grey", "ga.png"))
    add("a_grey/ga.png", 8, 4, [[gv / 255 * av / 255 for gv, av in zip(flat(g), flat(a))]])

    # 1-bit (PIL "1": pixels 0 or 255)
    bits = [[rng.randint(0, 1) for _ in range(W)] for _ in range(H)]
    im = Image.new("1", (W, H))
    im.putdata([255 * b for b in flat(bits)])
    im.save(os.path.join(ROOT, "png", "a_grey", "g1.png"))
    add("a_grey/g1.png", 1, 0, [[float(b) for b in flat(bits)]])

    # grey 2-bit (own encoder)
    g = grey_rows(3)
    write("a_grey/g2.png", encode_png(0, 2, g))
    add("a_grey/g2.png", 2, 0, [[v / 3 for v in flat(g)]])

    # grey 4-bit with tRNS: value 5 is transparent (own encoder)
    g = grey_rows(15)
    g[1][1], g[2][3] = 5, 5
    write("a_grey/g4t.png", encode_png(0, 4, g, trns=struct.pack(">H", 5)))
    add("a_grey/g4t.png", 4, 0, [[0.0 if v == 5 else v / 15 for v in flat(g)]])

    # grey 8-bit, Adam7 interlaced (own encoder)
    g = grey_rows(255)
    write("a_grey/g8i.png", encode_png(0, 8, g, interlace=True))
    add("a_grey/g8i.png", 8, 0, [[v / 255 for v in flat(g)]])

    # RGB 8-bit (PIL)
    px = [tuple(rng.randint(0, 255) for _ in range(3)) for _ in range(W * H)]
    im = Image.new("RGB", (W, H))
    im.putdata(px)
    im.save(os.path.join(ROOT, "png", "b_colour", "rgb.png"))
    add("b_colour/rgb.png", 8, 2, [[p[k] / 255 for p in px] for k in range(3)])

    # RGBA 8-bit (PIL)
    px = [tuple(rng.randint(0, 255) for _ in range(4)) for _ in range(W * H)]
    px[0] = (200, 100, 50, 0)
    px[1] = (200, 100, 50, 255)
    im = Image.new("RGBA", (W, H))
    im.putdata(px)
    im.save(os.path.join(ROOT, "png", "b_colour", "rgba.png"))
    add("b_colour/rgba.png", 8, 6, [[p[k] / 255 * p[3] / 255 for p in px] for k in range(3)])

    # palette, no transparency (PIL "P"; 20 entries: PIL writes 8 bits)
    pal = [tuple(rng.randint(0, 255) for _ in range(3)) for _ in range(20)]
    idx = [rng.randint(0, 19) for _ in range(W * H)]
    im = Image.new("P", (W, H))
    im.putpalette([c for rgb in pal for c in rgb])
    im.putdata(idx)
    im.save(os.path.join(ROOT, "png", "b_colour", "pal.png"))
    add("b_colour/pal.png", 8, 3, [[pal[i][k] / 255 for i in idx] for k in range(3)])

    # palette with per-entry transparency (PIL "P" + transparency bytes;
    # 7 entries: PIL writes 4 bits)
    pal = pal[:7]
    idx = [rng.randint(0, 6) for _ in range(W * H)]
    alpha = [255, 0, 128, 64, 255, 200]  # entry 6 has no tRNS byte: opaque
    im = Image.new("P", (W, H))
    im.putpalette([c for rgb in pal for c in rgb])
    im.putdata(idx)
    im.save(os.path.join(ROOT, "png", "b_colour", "palt.png"), transparency=bytes(alpha))
    al = alpha + [255] * 10
    add("b_colour/palt.png", 4, 3,
        [[pal[i][k] / 255 * al[i] / 255 for i in idx] for k in range(3)])

    # palette 2-bit (own encoder)
    pal2 = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)]
    idx2 = grey_rows(3)
    write("b_colour/pal2.png", encode_png(3, 2, idx2, plte=pal2))
    add("b_colour/pal2.png", 2, 3, [[pal2[i][k] / 255 for i in flat(idx2)] for k in range(3)])

    # RGB 16-bit (own encoder)
    rows = [[rng.randint(0, 65535) for _ in range(3 * W)] for _ in range(H)]
    write("b_colour/rgb16.png", encode_png(2, 16, rows))
    s = flat(rows)
    add("b_colour/rgb16.png", 16, 2, [[s[3 * p + k] / 65535 for p in range(W * H)] for k in range(3)])

    # RGBA 16-bit (own encoder)
    rows = [[rng.randint(0, 65535) for _ in range(4 * W)] for _ in range(H)]
    write("b_colour/rgba16.png", encode_png(6, 16, rows))
    s = flat(rows)
    add("b_colour/rgba16.png", 16, 6,
        [[s[4 * p + k] / 65535 * s[4 * p + 3] / 65535 for p in range(W * H)] for k in range(3)])

    images.sort(key=lambda t: t[0])
    with open(os.path.join(ROOT, "png_expected.txt"), "w") as f:
        f.write("# path channels height width values (C, H, W) in [-1, 1]\n")
        for rel, c, chans in images:
            vals = " ".join("%.8f" % (v * 2 - 1) for ch in chans for v in ch)
            f.write("%s %d %d %d %s\n" % (rel, c, H, W, vals))


def make_bad():
    os.makedirs(os.path.join(ROOT, "bad"), exist_ok=True)
    good = encode_png(0, 8, [[rng.randint(0, 255) for _ in range(W)] for _ in range(H)])
    idat = good.index(b"IDAT")
    with open(os.path.join(ROOT, "bad", "truncated.png"), "wb") as f:
        f.write(good[:idat + 10])          # stops inside the IDAT chunk
    bad = bytearray(good)
    bad[idat + 6] ^= 0xFF                  # compressed data changed: CRC mismatch
    with open(os.path.join(ROOT, "bad", "badcrc.png"), "wb") as f:
        f.write(bytes(bad))
    with open(os.path.join(ROOT, "bad", "notpng.png"), "wb") as f:
        f.write(b"this is not a PNG file, only text\n")

    d = os.path.join(ROOT, "corrupt", "c0")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "a.png"), "wb") as f:
        f.write(good)
    with open(os.path.join(d, "b.png"), "wb") as f:
        f.write(good[:idat + 10])

    for cls, (w, h) in (("c0", (W, H)), ("c1", (H, W))):
        d = os.path.join(ROOT, "mixed", cls)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "img.png"), "wb") as f:
            f.write(encode_png(0, 8, [[0] * w for _ in range(h)]))


# -------------------------------------------------------------- IDX stats

def idx_stats(name, images_gz, labels_gz):
    with gzip.open(images_gz, "rb") as f:
        img = f.read()
    with gzip.open(labels_gz, "rb") as f:
        lab = f.read()
    magic, n, h, w = struct.unpack(">IIII", img[:16])
    assert magic == 0x803 and len(img) == 16 + n * h * w
    lmagic, ln = struct.unpack(">II", lab[:8])
    assert lmagic == 0x801 and ln == n and len(lab) == 8 + n
    px, labels = img[16:], lab[8:]
    hw = h * w
    return "%s %d %d %d %s %d %d %d %d %d\n" % (
        name, n, h, w, ",".join(str(v) for v in labels[:10]), sum(labels), labels[-1],
        sum(px[:hw]), sum(px[-hw:]), sum(px))


def make_stats():
    fm = "/usr/share/datasets/fashion-mnist"
    here = os.path.abspath(".")
    mn = os.environ.get("JEM_MNIST_DIR") or os.path.join(here, "..", "shared", "data", "mnist")
    lines = ["# set n h w first_10_labels label_sum last_label first_image_byte_sum "
             "last_image_byte_sum all_bytes_sum\n"]
    for name, pre in (("fmnist:train", fm + "/train"), ("fmnist:test", fm + "/t10k"),
                      ("mnist:test", mn + "/t10k")):
        lines.append(idx_stats(name, pre + "-images-idx3-ubyte.gz", pre + "-labels-idx1-ubyte.gz"))
    with open(os.path.join(ROOT, "idx_stats.txt"), "w") as f:
        f.writelines(lines)


def main():
    if not os.path.isfile(os.path.join("include", "jem.h")):
        sys.exit("run from the project root")
    make_pngs()
    make_bad()
    make_stats()
    total = 0
    for d, _, files in os.walk(ROOT):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    print("fixtures under %s: %d bytes" % (ROOT, total))


if __name__ == "__main__":
    main()
