#!/usr/bin/python3
"""Load a jem checkpoint (safetensors) into a PyTorch mirror of its model and
check that PyTorch's logits agree with jem's.

    /usr/bin/python3 scripts/torch_mirror.py CKPT [--jem build/jem] [--n 256]

The mirror is built from the checkpoint's "jem.arch" metadata and loaded with
load_state_dict(strict=True); tensors whose names start with "_" hold jem's
training state and are skipped. The first N Fashion-MNIST test images are
written as an IDX pair; `jem eval --dump-logits` writes jem's logits as raw
float32, and PyTorch computes its own in double precision."""
import argparse, gzip, json, os, struct, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        arr = np.frombuffer(data[base + b:base + e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        tensors[name] = arr.copy()
    return tensors, meta


def parse_arch(text):
    a = {"activation": "lrelu", "slope": 0.2}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        k, v = [s.strip() for s in line.split("=", 1)]
        a[k] = v
    c, h, w = (int(x) for x in a["input"].split("x"))
    blocks = [tuple(int(y) for y in b.split("/")) for b in a["blocks"].split()]
    return dict(cin=c, h=h, w=w, classes=int(a["classes"]), stem=int(a["stem"]), blocks=blocks,
                act=a["activation"], slope=float(a["slope"]))


class Block(nn.Module):
    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.act = act
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.c2 = nn.Conv2d(cout, cout, 3, stride, 1)
        self.sc = nn.Conv2d(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else None

    def forward(self, x):
        h = self.c1(self.act(x))
        h = self.c2(self.act(h))
        return h + (self.sc(x) if self.sc is not None else x)


class JemModel(nn.Module):
    """The pre-activation wide-ResNet jem describes with a model file."""

    def __init__(self, arch):
        super().__init__()
        slope = arch["slope"]
        act = {"lrelu": lambda x: F.leaky_relu(x, slope), "relu": F.relu, "silu": F.silu,
               "swish": F.silu}[arch["act"]]
        self.act = act
        self.stem = nn.Conv2d(arch["cin"], arch["stem"], 3, 1, 1)
        c = arch["stem"]
        self.nblocks = len(arch["blocks"])
        for i, (w, s) in enumerate(arch["blocks"]):
            setattr(self, "b%d" % (i + 1), Block(c, w, s, act))
            c = w
        self.fc = nn.Linear(c, arch["classes"])

    def forward(self, x):
        h = self.stem(x)
        for i in range(self.nblocks):
            h = getattr(self, "b%d" % (i + 1))(h)
        return self.fc(self.act(h).mean(dim=(2, 3)))


def load_jem(path):
    tensors, meta = read_safetensors(path)
    model = JemModel(parse_arch(meta["jem.arch"]))
    sd = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith("_")}
    model.load_state_dict(sd, strict=True)
    return model.eval(), meta


def fmnist_test(n):
    root = os.environ.get("JEM_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
    with gzip.open(os.path.join(root, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    with gzip.open(os.path.join(root, "t10k-labels-idx1-ubyte.gz")) as f:
        lab = f.read()
    imgs = np.frombuffer(raw[16:16 + n * 784], dtype=np.uint8).reshape(n, 1, 28, 28)
    return imgs, np.frombuffer(lab[8:8 + n], dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--jem", default="build/jem")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    model, meta = load_jem(a.ckpt)
    imgs, labels = fmnist_test(a.n)
    x = imgs.astype(np.float32) / 255.0 * 2.0 - 1.0
    with torch.no_grad():
        ref = model.double()(torch.from_numpy(x).double()).numpy()
    with tempfile.TemporaryDirectory() as d:
        pre = os.path.join(d, "set")
        with open(pre + "-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, a.n, 28, 28) + imgs.tobytes())
        with open(pre + "-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x801, a.n) + labels.tobytes())
        out = os.path.join(d, "logits.f32")
        subprocess.run([a.jem, "eval", "--model", a.ckpt, "--data", "idx:" + pre, "--dump-logits", out],
                       check=True, stdout=subprocess.DEVNULL)
        got = np.fromfile(out, dtype=np.float32).reshape(ref.shape)
    err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
    agree = (got.argmax(1) == ref.argmax(1)).mean()
    print("%d images: max |jem - torch| / max |logit| = %.3g (tolerance %.0e), argmax agreement %.4f"
          % (a.n, err, a.tol, agree))
    if not err <= a.tol:
        print("FAIL")
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
