# Shared by the command-line test scripts (tests/cli_*.sh, tests/mpi_train.sh):
# source it after setting JEM. Counts checks, makes a scratch directory $tmp
# (removed on exit) and writes $tmp/tiny.model, a small model for quick runs.
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$1"; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# write_model FILE NAME INPUT STEM BLOCKS: a 10-class model description
write_model() { printf 'name = %s\ninput = %s\nclasses = 10\nstem = %s\nblocks = %s\n' "$2" "$3" "$4" "$5" > "$1"; }
write_model "$tmp/tiny.model" tiny 1x28x28 4 "8/2 8/2"
# the JEM-iteration counter of a checkpoint's metadata (empty if it does not load)
iter_of() { "$JEM" info "$1" --json 2>/dev/null | sed -n 's/.*"jem.train.iter":"\([0-9]*\)".*/\1/p'; }
# print "NAME: N passed, N failed" and return non-zero on any failure
finish() { echo "$1: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
