#!/usr/bin/env bash
# Side-by-side speed of jem and PyTorch: the four workloads of `jem bench`
# (forward batch 256, training step batch 64, SGLD step batch 64, JEM
# iteration batch 64 with K = 20), ROUNDS alternating rounds in one run.
# Each round runs jem, then PyTorch (scripts/bench_torch.py) two ways, in
# turn first and second from round to round:
#   as installed  glibc malloc's defaults: blocks above the (dynamic) mmap
#                 threshold are mapped per allocation and unmapped when
#                 freed, so every step faults its large tensors in again;
#   malloc keeps  GLIBC_TUNABLES=$KEEP below: large blocks come from the
#                 heap and stay there, as a caching allocator (jemalloc,
#                 tcmalloc) or jem's own kept buffers would have them.
# On virtual machines where a first-touch page fault is expensive the two
# differ several-fold, so the headline ratio is taken against the faster
# PyTorch, workload by workload. Prints the median images/s of each (and
# each ratio) over the rounds, the range of the headline ratio over the
# rounds, the peak resident memory of each process, the minor page faults
# per timed run of each, and the same table as Markdown for the README.
#   scripts/bench_compare.sh [BUILD] [ROUNDS] [THREADS] [REPS]
# REPS: timed repetitions per workload in each process (median of them).
# PRECISION=bf16: both sides with bf16 products in the forward and SGLD
# passes (jem --precision bf16, PyTorch under torch.autocast bf16), the
# training steps fp32; default fp32.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
threads=${3:-2}
reps=${4:-3}
prec=${PRECISION:-fp32}
case $prec in fp32 | bf16) ;; *) echo "bench_compare: PRECISION=$prec: want fp32 or bf16" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
py=/usr/bin/python3
KEEP=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
torch_run() { # torch_run installed|keep ROUND
    if [ "$1" = keep ]; then
        GLIBC_TUNABLES=$KEEP "$py" scripts/bench_torch.py --threads "$threads" --reps "$reps" --precision "$prec" > "$tmp/$1.$2.json"
    else
        env -u GLIBC_TUNABLES "$py" scripts/bench_torch.py --threads "$threads" --reps "$reps" --precision "$prec" > "$tmp/$1.$2.json"
    fi
}
for r in $(seq 1 "$rounds"); do
    echo "round $r of $rounds" >&2
    "$build/jem" bench --threads "$threads" --reps "$reps" --precision "$prec" --json > "$tmp/jem.$r.json"
    if [ $((r % 2)) -eq 1 ]; then
        torch_run installed "$r"
        torch_run keep "$r"
    else
        torch_run keep "$r"
        torch_run installed "$r"
    fi
done
"$py" - "$tmp" "$rounds" "$threads" "$reps" "$KEEP" <<'PY'
import json, statistics, sys
tmp, rounds, threads, reps, keep = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def load(kind):
    return [json.load(open("%s/%s.%d.json" % (tmp, kind, r))) for r in range(1, rounds + 1)]
j, t, k = load("jem"), load("installed"), load("keep")
med = statistics.median
names = [("forward", "forward"), ("train_step", "classifier training step"), ("sgld_step", "one SGLD step"),
         ("jem_iteration", "JEM iteration, K = %d" % j[0]["sgld_steps"])]
print("jem against PyTorch %s, %s threads, median of %d alternating rounds (%s repetitions each), %s"
      % (t[0]["torch"], threads, rounds, reps,
         "bf16 forward and SGLD passes (PyTorch: torch.autocast bf16), training steps fp32"
         if t[0].get("precision") == "bf16" else "fp32"))
s = t[0]["settings"]
print("PyTorch: forward under %s, %s tensors, oneDNN %s, zero_grad %s; torch threads %d"
      % (s["forward"], s["memory_format"], "on" if s["mkldnn"] else "off", s["zero_grad"], t[0]["threads"]))
print("  installed: glibc malloc defaults; keep: GLIBC_TUNABLES=%s" % keep)
print()
hdr = "%-14s %5s %10s %10s %10s %10s %10s   %-17s %s"
print(hdr % ("workload", "batch", "jem", "torch", "torch", "jem /", "jem /", "headline:", "headline"))
print(hdr % ("", "", "img/s", "installed", "keep", "installed", "keep", "jem / faster", "over rounds"))
rows = []
for w, label in names:
    a = med(x["workloads"][w]["images_per_s"] for x in j)
    b = med(x["workloads"][w]["images_per_s"] for x in t)
    c = med(x["workloads"][w]["images_per_s"] for x in k)
    fast = "keep" if c >= b else "installed"
    head = a / max(b, c)
    per = [jr["workloads"][w]["images_per_s"] / max(tr["workloads"][w]["images_per_s"], kr["workloads"][w]["images_per_s"])
           for jr, tr, kr in zip(j, t, k)]
    rows.append((w, label, j[0]["workloads"][w]["batch"], a, b, c, head, fast))
    print("%-14s %5d %10.1f %10.1f %10.1f %9.2fx %9.2fx   %6.2fx %-10s %.2f-%.2fx"
          % (w, j[0]["workloads"][w]["batch"], a, b, c, a / b, a / c, head, "(" + fast + ")", min(per), max(per)))
rss = [med(x["peak_rss_mb"] for x in v) for v in (j, t, k)]
print("%-14s %5s %10.0f %10.0f %10.0f   (peak resident MB)" % ("memory", "", rss[0], rss[1], rss[2]))
print()
print("minor page faults per timed run (median): jem / PyTorch installed / PyTorch keep")
for w, _ in names:
    print("  %-14s %8.0f / %.0f / %.0f" % tuple([w] + [med(x["workloads"][w]["minor_faults"] for x in v) for v in (j, t, k)]))
print()
print("Markdown (README, Speed against PyTorch):")
print()
print("| workload | batch | jem images/s | PyTorch as installed | PyTorch, malloc keeps memory | jem / installed | jem / keeps | jem / faster PyTorch |")
print("|---|---|---|---|---|---|---|---|")
for w, label, batch, a, b, c, head, fast in rows:
    print("| %s | %d | %.1f | %.1f | %.1f | %.2fx | %.2fx | **%.2fx** |" % (label, batch, a, b, c, a / b, a / c, head))
print("| peak resident memory (MB) | | %.0f | %.0f | %.0f | | | |" % tuple(rss))
PY
