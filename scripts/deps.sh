#!/usr/bin/env bash
# Install the Debian packages jem needs (build, tests, demo) when missing.
# Runs as root on Debian; does nothing when everything is present.
set -euo pipefail
# pkgconf, man-db: the install test (pkg-config --cflags --libs jem, man -l jem.1)
need=(gcc make libopenblas-openmp-dev libpng-dev zlib1g-dev dataset-fashion-mnist pkgconf man-db)
[ -n "${JEM_DEPS_EXTRA:-}" ] && need+=(${JEM_DEPS_EXTRA})
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages (${missing[*]}); run as root or install them" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
