#!/usr/bin/env bash
# The samplers' figures on the shipped JEM (models/jem-fmnist.safetensors),
# written to out/samplers/ (grids, energy traces, JSON) with a summary:
#   1. SGLD, MALA (HMC with one leapfrog step, adapted) and HMC at an equal
#      budget of energy evaluations per chain, at T = 1 (the model's own
#      density) and at T = 5e-5 (the temperature of SGLD's default step 1
#      and noise 0.01: sigma^2 / (2 alpha)): acceptance, R-hat, ESS, ESS/s;
#   2. composed grids: two classes (sandal and sneaker), one class minus
#      another (sandal, not sneaker);
#   3. log Z and bits/dim on Fashion-MNIST test from two AIS runs of
#      different length;
#   4. the AIS check on a Gaussian with a known log Z (tests/test_ais.c).
# Usage: scripts/sampler_figures.sh [BUILD]
# Sizes: CHAINS (16), EVALS energy evaluations per chain (1000), AIS_T1 and
# AIS_T2 (1000, 4000), AIS_CHAINS (32), THREADS (0: all cores). About 20
# minutes on 2 cores with the defaults; on a shared machine THREADS=1 keeps
# the timings (ESS per second) comparable between samplers.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
jem="$build/jem"
model=${MODEL:-models/jem-fmnist.safetensors}
out=out/samplers
mkdir -p "$out"
chains=${CHAINS:-16}
evals=${EVALS:-1000}
t1=${AIS_T1:-1000}
t2=${AIS_T2:-4000}
aisn=${AIS_CHAINS:-32}
threads=${THREADS:-0}
[ -f "$model" ] || { echo "sampler_figures: $model missing" >&2; exit 1; }

# 1. equal evaluations: SGLD and MALA take one per step, HMC (L = 10) ten;
#    a quarter of each budget is warm-up (left out of the diagnostics)
w=$((evals / 4)); s=$((evals - w))
wh=$((evals / 40)); sh=$((evals / 10 - wh))
for T in 1 5e-5; do
    "$jem" sample --threads "$threads" --model "$model" --from informative --n "$chains" --sampler sgld --warmup "$w" --steps "$s" \
        --step-size 1 --noise "$(awk "BEGIN{print sqrt(2 * $T)}")" \
        --out "$out/sgld-T$T.png" --trace "$out/sgld-T$T-trace.png" --json > "$out/sgld-T$T.json"
    "$jem" sample --threads "$threads" --model "$model" --from informative --n "$chains" --sampler hmc --leapfrog 1 --target-accept 0.57 \
        --temperature "$T" --warmup "$w" --steps "$s" \
        --out "$out/mala-T$T.png" --trace "$out/mala-T$T-trace.png" --json > "$out/mala-T$T.json"
    "$jem" sample --threads "$threads" --model "$model" --from informative --n "$chains" --sampler hmc --leapfrog 10 \
        --temperature "$T" --warmup "$wh" --steps "$sh" \
        --out "$out/hmc-T$T.png" --trace "$out/hmc-T$T-trace.png" --json > "$out/hmc-T$T.json"
done

# 2. composed energies (SGLD's default chains, 100 steps from the informative init)
"$jem" sample --threads "$threads" --model "$model" --from informative --n 36 --steps 100 --energy 'm1:class=5:1,m1:class=7:1' \
    --out "$out/sandal-and-sneaker.png" --json > "$out/sandal-and-sneaker.json"
"$jem" sample --threads "$threads" --model "$model" --from informative --n 36 --steps 100 --energy 'm1:class=5:1,m1:class=7:-1' \
    --out "$out/sandal-not-sneaker.png" --json > "$out/sandal-not-sneaker.json"

# 3. log Z from a uniform base, two lengths
for T in "$t1" "$t2"; do
    "$jem" logz --threads "$threads" --model "$model" --data fmnist:test --T "$T" --chains "$aisn" --json > "$out/logz-T$T.json"
done

# 4. the Gaussian check
JEM_TEST_VERBOSE=1 "$build/tests/test_ais" 2> "$out/gauss-check.txt" > /dev/null || true

# summary
val() { sed -n "s/.*\"$1\":\([-0-9.eE+a-z]*\).*/\1/p" "$2"; }
printf '\n%-6s %-6s %8s %8s %8s %8s %8s %8s\n' sampler T accept R-hat ESS-bulk ESS-tail seconds ESS/s
for T in 1 5e-5; do
    for smp in sgld mala hmc; do
        f="$out/$smp-T$T.json"
        printf '%-6s %-6s %8.3f %8.3f %8.1f %8.1f %8.1f %8.2f\n' "$smp" "$T" "$(val accept "$f")" "$(val rhat "$f")" \
            "$(val ess_bulk "$f")" "$(val ess_tail "$f")" "$(val seconds "$f")" "$(val ess_bulk_per_s "$f")"
    done
done
printf '\n%-6s %10s %8s %8s %10s %10s %10s\n' T "log Z" "+-" "w ESS" "log p(x)" "bits/dim" "8-bit"
for T in "$t1" "$t2"; do
    f="$out/logz-T$T.json"
    printf '%-6s %10.3f %8.3f %8.1f %10.2f %10.4f %10.4f\n' "$T" "$(val logz "$f")" "$(val logz_se "$f")" \
        "$(val weights_ess "$f")" "$(val logpx "$f")" "$(val bits_per_dim "$f")" "$(val bits_per_dim_8bit "$f")"
done
echo
grep -E '^(Gaussian|box)' "$out/gauss-check.txt" || true
echo "grids and traces in $out/"
