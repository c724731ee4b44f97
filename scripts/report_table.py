#!/usr/bin/python3
"""Print the README's evaluation tables (markdown) from `jem report` outputs.

    scripts/report_table.py [--summary] NAME=DIR [NAME=DIR ...]

Each DIR holds the report.json that `jem report --model CKPT --out DIR` wrote;
NAME labels its row (for example softmax=report-softmax jem=report-jem).
--summary prints, before the full tables, one row per model: iterations,
accuracy, ECE, NLL, the best OOD detector's AUROC against each set, and the
worst case of the attack suite (APGD-CE, APGD-DLR, Square) per L-inf epsilon,
undefended and through SGLD purification."""
import json, re, sys

args = sys.argv[1:]
summary = "--summary" in args
args = [a for a in args if a != "--summary"]
runs = []
for arg in args:
    name, _, d = arg.partition("=")
    with open(d + "/report.json") as f:
        runs.append((name, json.load(f)))
if not runs:
    sys.exit(__doc__)

def pct(x):
    return "-" if x is None else "%.1f %%" % (100 * x)

def best_detector(r, prefix):
    """the score with the highest AUROC against the OOD set whose name starts with prefix: (auroc, score)"""
    for set_name, s in r["ood"]["sets"].items():
        if set_name.startswith(prefix):
            return max((m["auroc"], k) for k, m in s.items() if isinstance(m, dict) and "auroc" in m)
    return None

def worst(r, side, eps):
    row = r["summary"].get("worst_linf_" + side)
    return None if row is None else row.get("%g" % eps)

if summary:
    print("| model | iterations | accuracy | ECE (15) | NLL | OOD AUROC, MNIST (best score) | uniform noise (best score) "
          "| suite L-inf 0.05 / 0.1, undefended | SGLD-purified |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in runs:
        c = r["calibration"]
        meta = r["checkpoint"]["metadata"]
        cells = []
        for prefix in ("mnist", "noise:uniform"):
            b = best_detector(r, prefix)
            cells.append("-" if b is None else "%.3f (%s)" % b)
        for side in ("undefended", "defended"):
            cells.append(" / ".join(pct(worst(r, side, e)) for e in (0.05, 0.1)))
        print("| %s | %s | %s | %s | %.3f | %s |" % (name, meta.get("jem.train.iter", "-"), pct(c["accuracy"]),
                                                   pct(c["ece"]), c["nll"], " | ".join(cells)))
    print()

print("| model | accuracy | ECE (15) | ECE (20) | MCE | NLL | Brier | ECE after T-scaling (T) |")
print("|---|---|---|---|---|---|---|---|")
for name, r in runs:
    c = r["calibration"]
    t = c.get("temperature_scaling") or {}
    print("| %s | %s | %s | %s | %s | %.3f | %.3f | %s (%.2f) |" % (
        name, pct(c["accuracy"]), pct(c["ece"]), pct(c["ece20"]), pct(c["mce"]), c["nll"], c["brier"],
        pct(t.get("ece")), t.get("T", float("nan"))))
print()
scores = ["logpx", "max_softmax", "max_logit", "neg_grad_norm", "energy_t"]
print("OOD against Fashion-MNIST test, AUROC / AUPR-in / AUPR-out / FPR95 per score:")
print()
print("| model | OOD set | " + " | ".join(scores) + " |")
print("|---|---|" + "---|" * len(scores))
for name, r in runs:
    for set_name, s in r["ood"]["sets"].items():
        cells = []
        for k in scores:
            m = s.get(k)
            cells.append("%.3f / %.3f / %.3f / %.2f" % (m["auroc"], m["aupr_in"], m["aupr_out"], m["fpr95"]) if m else "-")
        # the set without its image count (the report names a set by the images it used)
        print("| %s | %s (%d) | %s |" % (name, re.sub(r":\d+$", "", set_name), s["n"], " | ".join(cells)))
print()
for key, label in (("attack_linf", "PGD L-inf"), ("attack_l2", "PGD L2")):
    a0 = runs[0][1][key]
    print("%s robust accuracy (%d steps, eps on the [0, 1] scale; undefended on %d images, SGLD-purified "
          "under BPDA+EOT and transfer, worst case, on %d):" % (label, a0["steps"], a0["n"], a0["defence"]["n"]
                                                                 if a0.get("defence") else 0))
    print()
    print("| model | defence | " + " | ".join("%g" % e for e in a0["eps"]) + " |")
    print("|---|---|" + "---|" * len(a0["eps"]))
    for name, r in runs:
        a = r[key]
        print("| %s | none | %s |" % (name, " | ".join(pct(x) for x in a["undefended"])))
        d = a.get("defence")
        if d:
            if d.get("undefended"):
                print("| %s | none, the same %d images | %s |" % (name, d["n"], " | ".join(pct(x) for x in d["undefended"])))
            print("| %s | SGLD (%d steps x %d chains, EOT %d), worst | %s |" % (
                name, d["sgld_steps"], d["chains"], d["eot"], " | ".join(pct(x) for x in d["worst"])))
    print()
