# Hosts joined by a network, on one machine, for MPI runs across them
# (sourced by tests/mpi_hosts.sh and scripts/bench_mpi_hosts.sh, after $tmp
# is set; needs root). Each host is a network namespace, entered with its own
# hostname (a UTS namespace); the hosts' veth links meet on a bridge that lives
# in a namespace of its own, so nothing is made in the machine's own network
# namespace and the addresses (a private /24) exist only inside the run's
# namespaces. OpenMPI starts its daemons through an rsh agent that enters the
# namespace of the host it is given, and talks over TCP only.
#
# Every name a run makes starts with $run, "jemh-<pid>-<random>"
# (MPI_HOSTS_RUN sets it). The caller's EXIT trap calls cleanup.

run=${MPI_HOSTS_RUN:-jemh-$$-$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')}
case $run in jemh-[0-9]*-[0-9a-f]*) ;; *) echo "bad run name '$run'" >&2; exit 2 ;; esac
subnet=10.$((100 + RANDOM % 100)).$((RANDOM % 256))
net=$subnet.0/24
made=()          # namespaces made by this run, in order
nhosts=0
hosts_timeout=${hosts_timeout:-300}   # seconds an mpirun may take

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 SHELL=/bin/sh

# Remove the namespaces of this run: end the processes inside them first (a
# namespace lives on, links included, while a process is in it).
cleanup() {
    local ns p sig
    for p in $(jobs -p); do kill -TERM "$p" 2> /dev/null; done
    for sig in TERM KILL; do
        for ns in "${made[@]}"; do
            for p in $(ip netns pids "$ns" 2> /dev/null); do kill -$sig "$p" 2> /dev/null; done
        done
        [ $sig = TERM ] && [ ${#made[@]} -gt 0 ] && sleep 0.2
    done
    for ns in "${made[@]}"; do ip netns del "$ns" 2> /dev/null; done
    made=(); nhosts=0
    wait 2> /dev/null
}

# can_make_hosts: whether network namespaces can be made here
can_make_hosts() {
    ip netns add "$run-probe" 2> /dev/null || return 1
    ip netns del "$run-probe"
}

# Names left by a run killed outright (no trap ran): its pid is in the name
# and no longer alive.
for ns in $(ip netns list 2> /dev/null | sed -n 's/^\(jemh-[0-9]*-[0-9a-f]*-[a-z0-9]*\).*/\1/p'); do
    p=${ns#jemh-}; p=${p%%-*}
    kill -0 "$p" 2> /dev/null || ip netns del "$ns" 2> /dev/null
done

# hosts N: N hosts $run-h1 .. $run-hN on the bridge of $run-sw, addresses
# $subnet.11 ..; writes $tmp/hostfile and $tmp/agent; replaces the hosts of
# a previous call.
hosts() {
    local n=$1 i
    cleanup
    ip netns add "$run-sw" || return 1
    made+=("$run-sw")
    ip -n "$run-sw" link add br0 type bridge || return 1
    ip -n "$run-sw" link set br0 up || return 1
    for i in $(seq 1 "$n"); do
        ip netns add "$run-h$i" || return 1
        made+=("$run-h$i")
        ip link add name eth0 netns "$run-h$i" type veth peer name "p$i" netns "$run-sw" || return 1
        ip -n "$run-sw" link set "p$i" master br0 up || return 1
        ip -n "$run-h$i" addr add "$subnet.$((10 + i))/24" dev eth0 || return 1
        ip -n "$run-h$i" link set eth0 up || return 1
        ip -n "$run-h$i" link set lo up || return 1
        echo "$run-h$i slots=1"
    done > "$tmp/hostfile"
    nhosts=$n
    # the rsh agent: agent HOST COMMAND... runs the command (joined by
    # spaces and read by a shell, as ssh does) in HOST's namespace under
    # HOST's hostname; it refuses hosts that are not this run's
    cat > "$tmp/agent" << EOF
#!/bin/sh
host=\$1; shift
case " $(echo $(cut -d' ' -f1 "$tmp/hostfile")) " in *" \$host "*) ;; *) echo "agent: unknown host \$host" >&2; exit 255 ;; esac
exec ip netns exec "\$host" unshare --uts -- sh -c 'hostname "\$0" && exec sh -c "\$*"' "\$host" "\$@"
EOF
    chmod +x "$tmp/agent"
}

# shape RATE [BURST]: limit every link to RATE (tc's units: 1gbit, 10gbit)
# in each direction, with a token bucket on each host's eth0 (what it sends)
# and on its bridge port (what it receives); "none" removes the limits. The
# bucket holds BURST bytes (default 64kb, one TSO segment): that much passes
# at the veth's own speed after an idle spell, so a 1.2 MB message gains
# about 5 %. On a busy machine the bucket's refills wait for the CPU and the
# link delivers less than RATE; a larger bucket hides that and gains more.
shape() {
    local r=$1 b=${2:-64kb} i ns dev
    for i in $(seq 1 "$nhosts"); do
        for ns in "$run-h$i eth0" "$run-sw p$i"; do
            dev=${ns#* }; ns=${ns% *}
            tc -n "$ns" qdisc del dev "$dev" root 2> /dev/null
            [ "$r" = none ] && continue
            tc -n "$ns" qdisc add dev "$dev" root tbf rate "$r" burst "$b" latency 50ms || return 1
        done
    done
}

# on H COMMAND...: run COMMAND on host H (its namespace and hostname)
on() { local h=$run-h$1; shift; ip netns exec "$h" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$h" "$@"; }

# hmpi NP COMMAND...: mpirun on host 1 across the first NP hosts, one rank a
# host, TCP only. It runs in the background and is waited for, so that a
# signal reaches the caller's traps at once.
hmpi() {
    local np=$1; shift
    on 1 timeout "$hosts_timeout" mpirun --hostfile "$tmp/hostfile" -np "$np" --map-by node --bind-to none \
        --mca plm_rsh_agent "$tmp/agent" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca btl_tcp_if_include "$net" --mca oob_tcp_if_include "$net" "$@" &
    wait $!
}
