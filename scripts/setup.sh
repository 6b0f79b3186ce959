#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) to build, run and test ringfence:
# system packages (idempotent), npm dependencies, the BPF object, the addon,
# the TypeScript and the test fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libseccomp-dev make g++ iproute2 util-linux libcap2-bin
  python3 perl strace ncat socat netcat-traditional sudo postgresql)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PostgreSQL for the policy store's tests (the store's suite runs on SQLite and PostgreSQL)
cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ] && command -v pg_createcluster >/dev/null; then
  # the package's own cluster creation can be skipped in containers
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
if [ -n "$cluster" ]; then
  pg_lsclusters --no-header | awk 'NR==1 {print $4}' | grep -q online || pg_ctlcluster $cluster start
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'ringfence_test'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE ringfence_test LOGIN CREATEDB PASSWORD 'ringfence_test'\""
fi

echo "setup: npm ci (builds bpf/, native/ and src/)"
npm ci --no-audit --no-fund
npm run --silent build:fixtures
echo "setup: done"
