#!/usr/bin/env bash
# Data-parallel MPI across hosts joined by a network, on one machine: each
# "host" is a network namespace with its own hostname, the hosts meet on a
# bridge in a namespace of its own, and OpenMPI runs over TCP only (btl
# tcp,self), its daemons started through an rsh agent that enters the
# namespace of the host it is given (tests/hosts_lib.sh). Nothing is made in
# the machine's own network namespace. At 2 and then 4 hosts:
#  - every rank runs on its own host;
#  - one SGD step on N hosts x 64/N images equals one step of 1 x 64;
#  - a JEM run across the hosts sends its gradients over the link and resumes
#    on half as many ranks;
#  - evaluation split across the hosts gives the single-process accuracy;
#  - a rank killed on a host other than mpirun's ends the job with an error
#    (no hang) and the last checkpoint loads.
# Then copies of this script, interrupted by SIGINT and by SIGTERM while their
# job runs, must leave no namespace, link or process of theirs behind.
# Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); without them the checks are
# reported as skipped. JEM=build-mpi/jem.
#
# MPI_HOSTS_HOLD=1 (used by the interrupt check): set up 4 hosts, start a
# JEM run of a minute across them, create $MPI_HOSTS_READY once it has
# written a checkpoint, and wait to be interrupted. MPI_HOSTS_RUN names the run.
set -u
JEM=$(realpath "${JEM:-build-mpi/jem}")
. "$(dirname "$0")/lib.sh"
hold=${MPI_HOSTS_HOLD:-0}
planned=51   # the checks a full run makes (reported as skipped when it cannot run)
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }
. "$(dirname "$0")/hosts_lib.sh"
trap 'cleanup; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rx_bytes() { ip netns exec "$run-h$1" cat /sys/class/net/eth0/statistics/rx_bytes; }

common=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --threads 1)
sgd=(--mode softmax --opt sgd --momentum 0 --iters 1 --warmup 0)
jem=(--mode jem --sgld-steps 2 --buffer 200 --batch 16 --log-every 1)

if ! can_make_hosts; then
    [ "$hold" = 1 ] && exit 2
    echo "mpi_hosts: network namespaces cannot be made here (needs root: CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    echo "mpi_hosts: 0 passed, 0 failed, $planned skipped"
    exit 0
fi

if [ "$hold" = 1 ]; then
    hosts 4 > /dev/null || exit 1
    hmpi 4 "$JEM" train "${common[@]}" "${jem[@]}" --iters 100000000 --minutes 1 --ckpt-every 1 \
        --out "$tmp/h.safetensors" > /dev/null 2>&1 &
    for _ in $(seq 1 600); do [ -f "$tmp/h.safetensors" ] && break; sleep 0.1; done
    [ -f "$tmp/h.safetensors" ] && : > "$MPI_HOSTS_READY"
    wait
    exit 1
fi

# the single-process references, once
"$JEM" train "${common[@]}" "${sgd[@]}" --batch 64 --lr 0.5 --out "$tmp/one.safetensors" > /dev/null 2> "$tmp/e1"
check "[ $? -eq 0 ]"
"$JEM" train "${common[@]}" "${sgd[@]}" --batch 64 --lr 0 --out "$tmp/init.safetensors" > /dev/null 2> "$tmp/e2"
check "[ $? -eq 0 ]"
step=$("$JEM" info "$tmp/one.safetensors" --diff "$tmp/init.safetensors" --json | num max_abs_diff)
check "awk 'BEGIN { exit !($step > 1e-3) }'"
ref_acc=

for n in 2 4; do
    p0=$pass f0=$fail
    hosts "$n"
    check "[ $? -eq 0 ]"

    # 1. every rank on its own host
    hmpi "$n" hostname > "$tmp/names" 2> "$tmp/e0"
    check "[ $? -eq 0 ]"
    check "[ \"\$(sort -u '$tmp/names' | wc -l)\" -eq $n ] && [ \"\$(sort '$tmp/names')\" = \"\$(cut -d' ' -f1 '$tmp/hostfile' | sort)\" ]"

    # 2. one SGD step: n hosts x 64/n against 1 x 64
    hmpi "$n" "$JEM" train "${common[@]}" "${sgd[@]}" --batch $((64 / n)) --lr 0.5 \
        --out "$tmp/s$n.safetensors" > /dev/null 2> "$tmp/e3"
    check "[ $? -eq 0 ]"
    gap=$("$JEM" info "$tmp/one.safetensors" --diff "$tmp/s$n.safetensors" --json | num max_abs_diff)
    echo "$n hosts: one SGD step, 1 x 64 against $n x $((64 / n)): largest difference $gap (largest weight change $step)"
    check "[ -n '$gap' ] && awk 'BEGIN { exit !($gap <= 1e-4 * $step) }'"

    # 3. JEM across the hosts: the gradients cross the link; resume on n/2 ranks
    rx0=(); for i in $(seq 1 "$n"); do rx0+=("$(rx_bytes "$i")"); done
    hmpi "$n" "$JEM" train "${common[@]}" "${jem[@]}" --iters 6 --out "$tmp/j$n.safetensors" > "$tmp/o4" 2> "$tmp/e4"
    check "[ $? -eq 0 ]"
    check "grep -q '$n ranks (global batch $((16 * n)))' '$tmp/e4'"
    check "[ \$(grep -c '^jem train:' '$tmp/e4') -eq 1 ]"
    check "grep -q 'time in MPI collectives' '$tmp/o4'"
    np=$(sed -n 's/.*model tiny (\([0-9]*\) parameters).*/\1/p' "$tmp/e4")
    # an allreduce of P floats brings every rank at least (n-1)/n of 4 P bytes
    need=$(( 6 * 4 * ${np:-0} * (n - 1) / n ))
    low=
    for i in $(seq 1 "$n"); do
        got=$(( $(rx_bytes "$i") - rx0[i - 1] ))
        [ "$got" -ge "$need" ] || low="$low h$i:$got"
    done
    echo "$n hosts: JEM, 6 iterations of a $np-parameter model: each host received at least $need bytes${low:+ except$low}"
    check "[ -n '$np' ] && [ -z '$low' ]"
    if [ "$n" -gt 2 ]; then
        hmpi $((n / 2)) "$JEM" train "${common[@]}" "${jem[@]}" --batch $((16 * 2)) --iters 9 \
            --resume "$tmp/j$n.safetensors" --out "$tmp/j$n.safetensors" > /dev/null 2> "$tmp/e5"
    else
        "$JEM" train "${common[@]}" "${jem[@]}" --batch 32 --iters 9 \
            --resume "$tmp/j$n.safetensors" --out "$tmp/j$n.safetensors" > /dev/null 2> "$tmp/e5"
    fi
    check "[ $? -eq 0 ]"
    it=$(iter_of "$tmp/j$n.safetensors")
    check "[ '$it' = 9 ]"

    # 4. evaluation split across the hosts
    [ -n "$ref_acc" ] || ref_acc=$("$JEM" eval --model "$tmp/j2.safetensors" --data fmnist:test --limit 1000 \
        --no-temperature --json 2> /dev/null | num accuracy)
    hmpi "$n" "$JEM" eval --model "$tmp/j2.safetensors" --data fmnist:test --limit 1000 --no-temperature --json \
        > "$tmp/a" 2> /dev/null
    check "[ $? -eq 0 ]"
    acc=$(num accuracy < "$tmp/a")
    echo "$n hosts: eval accuracy: 1 process $ref_acc, $n hosts $acc"
    check "[ -n '$ref_acc' ] && [ '$ref_acc' = '$acc' ]"

    # 5. a rank killed on the last host (not mpirun's) fails the job without a hang
    hmpi "$n" "$JEM" train "${common[@]}" "${jem[@]}" --iters 100000000 --minutes 1 --ckpt-every 2 \
        --out "$tmp/k$n.safetensors" > /dev/null 2> "$tmp/e6" &
    mp=$!
    for _ in $(seq 1 300); do [ -f "$tmp/k$n.safetensors" ] && break; sleep 0.1; done
    victim=$(for p in $(ip netns pids "$run-h$n"); do
                 [ "$(ps -o comm= -p "$p")" = jem ] && echo "$p"; done | head -n 1)
    check "[ -n '$victim' ]"
    [ -n "$victim" ] && kill -9 "$victim"
    t0=$(date +%s)
    wait "$mp"; rc=$?
    t1=$(date +%s)
    echo "$n hosts: rank on $run-h$n killed: mpirun exited $rc after $((t1 - t0)) s"
    check "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
    check "[ $((t1 - t0)) -lt 60 ]"
    check "'$JEM' info '$tmp/k$n.safetensors' > /dev/null"

    cleanup
    check "! ip netns list | grep -q '^$run-'"
    echo "mpi_hosts ($n hosts): $((pass - p0)) passed, $((fail - f0)) failed"
done

# 6. interrupted mid-run, a copy of this script leaves nothing behind
for sig in INT TERM; do
    sub=jemh-$$-$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
    # (a background job starts with SIGINT ignored: give it back its default)
    MPI_HOSTS_HOLD=1 MPI_HOSTS_RUN=$sub MPI_HOSTS_READY=$tmp/ready JEM=$JEM \
        env --default-signal=INT bash "$0" > "$tmp/sub" 2>&1 &
    sp=$!
    for _ in $(seq 1 600); do [ -f "$tmp/ready" ] && break; kill -0 $sp 2> /dev/null || break; sleep 0.1; done
    check "[ -f '$tmp/ready' ]"
    rm -f "$tmp/ready"
    during=$(ip netns list | grep -c "^$sub-")
    inodes=$(for f in /run/netns/"$sub"-*; do stat -L -c %d:%i "$f"; done 2> /dev/null | sort -u)
    nin=$(echo $inodes | wc -w)
    kill -"$sig" $sp
    t0=$(date +%s)
    wait $sp; rc=$?
    t1=$(date +%s)
    # A namespace, and the bridge and links in it, is freed when no name
    # (/run/netns), mount, process or open descriptor holds it any more.
    left=0
    for f in /proc/[0-9]*/ns/net /proc/[0-9]*/fd/*; do
        i=$(stat -L -c %d:%i "$f" 2> /dev/null) || continue
        for j in $inodes; do [ "$i" = "$j" ] && left=$((left + 1)); done
    done
    for j in $inodes; do grep -q "net:\[${j#*:}\]" /proc/self/mountinfo && left=$((left + 1)); done
    names=$(ip netns list | grep -c "^$sub-")
    echo "SIG$sig mid-run: $during namespaces of $sub during the run; exit $rc after $((t1 - t0)) s;" \
         "after: $names namespaces, $left processes, descriptors or mounts hold them"
    check "[ '$during' -eq 5 ] && [ '$nin' -eq 5 ]"
    check "[ $rc -eq $([ $sig = INT ] && echo 130 || echo 143) ] && [ $((t1 - t0)) -lt 20 ]"
    check "[ $names -eq 0 ]"
    check "[ $left -eq 0 ]"
done

[ $((pass + fail)) -eq $planned ] || bad "$((pass + fail)) checks made, $planned planned"
finish mpi_hosts
