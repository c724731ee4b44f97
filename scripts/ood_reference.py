#!/usr/bin/python3
"""Independent check of jem's feature-space OOD detectors.

jem (scripts/ood_dump.c, built here against build/libjem.a) writes the
features of a layer for a training set and for in-distribution and OOD test
images, and its Mahalanobis and kNN scores of the test images. This script
computes the same scores with numpy / scikit-learn from those features and
prints the largest differences and both AUROCs:

  Mahalanobis (Lee et al. 2018): class means, the pooled covariance of the
    class-centred features (sklearn EmpiricalCovariance, divided by N),
    score = -min_k (f - mu_k)^T Sigma^-1 (f - mu_k);
  kNN (Sun et al. 2022): rows scaled to unit L2 norm, sklearn
    NearestNeighbors (exact, Euclidean), score = -(distance to the k-th
    nearest training row).

Usage (from the project root, after `make`):
  scripts/ood_reference.py [--model models/jem-fmnist.safetensors]
      [--train fmnist:train] [--n-fit 10000] [--in fmnist:test]
      [--out mnist:test] [--n-test 1000] [--layer pool] [--k 50]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.covariance import EmpiricalCovariance
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        buf = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(buf[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta


def build_dump(tmp):
    exe = os.path.join(tmp, "ood_dump")
    cmd = ["gcc", "-std=c11", "-O2", "-D_GNU_SOURCE", "-I" + os.path.join(ROOT, "include"),
           "-I" + os.path.join(ROOT, "src"), "-fopenmp", os.path.join(ROOT, "scripts", "ood_dump.c"),
           os.path.join(ROOT, "build", "libjem.a"), "-lopenblas", "-lpng", "-lz", "-lm", "-o", exe]
    subprocess.run(cmd, check=True)
    return exe


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/jem-fmnist.safetensors")
    p.add_argument("--train", default="fmnist:train")
    p.add_argument("--n-fit", type=int, default=10000)
    p.add_argument("--in", dest="inset", default="fmnist:test")
    p.add_argument("--out", default="mnist:test")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--layer", default="pool")
    p.add_argument("--k", type=int, default=50)
    a = p.parse_args()
    if not os.path.exists(os.path.join(ROOT, "build", "libjem.a")):
        sys.exit("ood_reference: build/libjem.a is missing: run make first")
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_dump(tmp)
        dump = os.path.join(tmp, "dump.safetensors")
        subprocess.run([exe, a.model, a.train, str(a.n_fit), a.inset, a.out, str(a.n_test), a.layer, str(a.k), dump],
                       check=True)
        t, meta = read_safetensors(dump)

    ftr = t["train_feats"].astype(np.float64)
    y = t["train_y"]
    fte = t["test_feats"].astype(np.float64)
    is_in = t["test_in"].astype(bool)
    k = int(meta["k"])

    # Mahalanobis: class means, covariance of the class-centred features
    classes = np.unique(y)
    means = np.stack([ftr[y == c].mean(axis=0) for c in classes])
    cov = EmpiricalCovariance(assume_centered=False).fit(ftr - means[np.searchsorted(classes, y)])
    prec = cov.precision_
    d2 = np.stack([np.einsum("ij,jk,ik->i", fte - m, prec, fte - m) for m in means], axis=1)
    ref_maha = -d2.min(axis=1)

    # kNN on unit rows
    def unit(f):
        n = np.linalg.norm(f, axis=1, keepdims=True)
        return np.where(n > 0, f / np.where(n > 0, n, 1), 0)

    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(unit(ftr))
    dist, _ = nn.kneighbors(unit(fte))
    ref_knn = -dist[:, k - 1]

    print(f"{a.model}: layer {a.layer}, D = {ftr.shape[1]}, fitted on {len(y)} images of {a.train}; "
          f"{is_in.sum()} of {a.inset} against {(~is_in).sum()} of {a.out}")
    print(f"{'detector':<12} {'max |diff|':>12} {'max rel diff':>13} {'AUROC jem':>10} {'AUROC ref':>10}")
    for name, mine, ref in (("mahalanobis", t["jem_mahalanobis"], ref_maha), ("knn", t["jem_knn"], ref_knn)):
        diff = np.abs(mine - ref)
        rel = diff / np.maximum(np.abs(ref), 1e-12)
        print(f"{name:<12} {diff.max():12.3g} {rel.max():13.3g} {roc_auc_score(is_in, mine):10.4f} "
              f"{roc_auc_score(is_in, ref):10.4f}")


if __name__ == "__main__":
    main()
