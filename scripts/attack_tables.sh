#!/usr/bin/env bash
# Robust accuracy of the shipped models (models/softmax-fmnist.safetensors,
# models/jem-fmnist.safetensors) on Fashion-MNIST test against PGD, APGD-DLR
# and Square alone and the suite (APGD-CE, APGD-DLR, Square in AutoAttack's
# order), L-inf (eps 0.02, 0.05, 0.1) and L2 (0.5, 1), undefended on the
# first N images and through SGLD purification (5 steps x 2 chains, BPDA +
# EOT 2 for the gradient attacks, plain queries for Square) on the first DN,
# with the masking checks of every run; then one markdown table per norm,
# with the lowest figure of any attack per epsilon (the per-image worst
# over all the runs can only be lower: the runs keep no per-image flags).
#   scripts/attack_tables.sh [BUILD] [N] [DN]
# Environment: STEPS (PGD and APGD iterations; default each attack's own,
# PGD 20, APGD 100), QUERIES (Square, default 5000), MODELS ("softmax jem"),
# NORMS ("linf l2"), ATTACKS ("pgd apgd-dlr square auto"), DN=0 for no
# defence, THREADS (jem's --threads, default all cores), OUT
# (out/attack-tables). The JSON of every run is kept in OUT; a run whose
# JSON is already there is not repeated (delete it to run it again).
# Slow: the suite with the defence is hours at N 500, DN 100 on 2 cores.
set -euo pipefail
build=${1:-build}
n=${2:-500}
dn=${3:-100}
out=${OUT:-out/attack-tables}
cd "$(dirname "$0")/.."
mkdir -p "$out"
extra=()
[ -n "${STEPS:-}" ] && extra+=(--steps "$STEPS")
def=(--defence sgld --defence-n "$dn" --defence-steps 5 --defence-chains 2 --eot 2)
[ "$dn" = 0 ] && def=()
for m in ${MODELS:-softmax jem}; do
    ckpt=models/$m-fmnist.safetensors
    [ -f "$ckpt" ] || { echo "attack_tables: $ckpt missing" >&2; exit 1; }
    for norm in ${NORMS:-linf l2}; do
        if [ "$norm" = linf ]; then eps=0,0.02,0.05,0.1; else eps=0,0.5,1; fi
        for a in ${ATTACKS:-pgd apgd-dlr square auto}; do
            f="$out/$m-$norm-$a.json"
            [ -s "$f" ] && continue
            args=(--attack "$a")
            [ "$a" = auto ] && args=(--suite auto)
            [ "$a" = square ] || [ "$a" = auto ] && args+=(--queries "${QUERIES:-5000}")
            [ "$a" = square ] || args+=("${extra[@]}")
            echo "attack_tables: $m $norm $a" >&2
            "$build/jem" attack --model "$ckpt" --data fmnist:test --n "$n" --norm "$norm" --eps "$eps" "${args[@]}" \
                "${def[@]}" --threads "${THREADS:-0}" --json > "$f.tmp"
            mv "$f.tmp" "$f"
        done
    done
done
python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
runs = {}
for f in sorted(os.listdir(out)):
    if f.endswith('.json'):
        m, norm, a = f[:-5].split('-', 2)
        runs[(m, norm, a)] = json.load(open(os.path.join(out, f)))
names = {'pgd': 'PGD', 'apgd-dlr': 'APGD-DLR', 'square': 'Square', 'auto': 'suite'}
def checks(c):
    if not c: return 'not run'
    bad = [k for k, v in c.items() if k != 'n' and v and not v['pass']]
    return 'all pass' if not bad else 'FAIL: ' + ', '.join(bad)
for norm in ('linf', 'l2'):
    keys = [k for k in runs if k[1] == norm]
    if not keys: continue
    r0 = runs[keys[0]]
    eps = r0['eps']
    print('\n%s, robust accuracy (%%); undefended on %d images%s\n' % ('L-inf' if norm == 'linf' else 'L2', r0['n'],
          ', SGLD purification on %d' % r0['defence']['n'] if 'defence' in r0 else ''))
    print('| model | defence | attack | ' + ' | '.join('%g' % e for e in eps) + ' | checks |')
    print('|---|---|---|' + '---|' * len(eps) + '---|')
    for m in ('softmax', 'jem'):
        for side in ('none', 'SGLD'):
            low = None  # per epsilon, the lowest robust accuracy of any row
            for a in ('pgd', 'apgd-dlr', 'square', 'auto'):
                r = runs.get((m, norm, a))
                if not r or (side == 'SGLD' and 'defence' not in r): continue
                d = r if side == 'none' else r['defence']
                rows = []
                if a == 'auto':
                    rows.append(('APGD-CE', d['after']['apgd-ce'], None))
                    rows.append(('suite worst', r['undefended'] if side == 'none' else d['worst'], d.get('checks')))
                else:
                    rows.append((names[a], r['undefended'] if side == 'none' else d['worst'], d.get('checks')))
                for name, v, c in rows:
                    print('| %s | %s | %s | %s | %s |' % (m, side, name, ' | '.join('%.1f' % (100 * x) for x in v),
                          checks(c) if c is not None else ''))
                    low = list(v) if low is None else [min(a, b) for a, b in zip(low, v)]
            if low is not None:
                print('| %s | %s | lowest of the rows | %s | |' % (m, side, ' | '.join('%.1f' % (100 * x) for x in low)))
EOF
