#!/usr/bin/python3
"""Fixtures for tests/test_torch.c, computed by PyTorch in double precision:
random weights (PyTorch's default initialisation), a small batch of inputs,
the logits, and the gradients of sum(logits * R) with respect to the input
and to the parameters. Each case is one safetensors file that jem_ckpt_load
reads directly (model weights under their state_dict names, the model
description in the "jem.arch" metadata); the reference values are tensors
named "_x", "_r", "_logits", "_dx" and "_grad.<name>".

    /usr/bin/python3 scripts/make_torch_fixtures.py  # writes tests/fixtures/torch/
"""
import json, os, struct, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mirror import JemModel, parse_arch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "torch")


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def case(name, arch_text, batch, grad_names, seed):
    torch.manual_seed(seed)
    model = JemModel(parse_arch(arch_text)).double()
    # biases at PyTorch's default init are small; scale everything a little so
    # every path carries signal
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    a = parse_arch(arch_text)
    x = (torch.rand(batch, a["cin"], a["h"], a["w"], dtype=torch.float64) * 2 - 1)
    # round weights and inputs to float32 first so jem sees exactly the same numbers
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())
    x = x.float().double().requires_grad_(True)
    logits = model(x)
    r = torch.rand_like(logits) * 2 - 1
    r = r.float().double()
    (logits * r).sum().backward()
    t = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    t["_x"] = x.detach().numpy()
    t["_r"] = r.numpy()
    t["_logits"] = logits.detach().numpy()
    t["_dx"] = x.grad.numpy()
    params = dict(model.named_parameters())
    for g in grad_names:
        t["_grad." + g] = params[g].grad.numpy()
    write_safetensors(os.path.join(OUT, name + ".safetensors"), t,
                      {"jem.arch": arch_text, "format": "pt", "jem.fixture": "torch " + torch.__version__})
    print("wrote", name, "logits", t["_logits"].shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    tiny = ("name = tiny-silu\ninput = 1x8x8\nclasses = 3\nstem = 4\nblocks = 6/1 8/2\n"
            "activation = silu\nslope = 0.2\n")
    torch.manual_seed(0)
    names = [n for n, _ in JemModel(parse_arch(tiny)).named_parameters()]
    case("tiny-silu", tiny, 2, names, 1)
    with open(os.path.join(HERE, "..", "models", "wrn-fmnist.model")) as f:
        ref = f.read()
    # the reference model: parameter gradients for a subset keep the file small
    case("wrn-fmnist", ref, 2, ["stem.weight", "stem.bias", "b1.c1.weight", "b2.c2.weight", "b2.sc.weight",
                                 "b3.c2.bias", "fc.weight", "fc.bias"], 2)


if __name__ == "__main__":
    main()
