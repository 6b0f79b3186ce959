#!/usr/bin/env bash
# The main demo: a policy store on embedded SQLite, the sample policy stored
# and attached to an organization, and a CI-like job that gets its policy
# from the store and runs under it (egress in the kernel, DNS proxy,
# lockdown). Run as root from the repository after scripts/setup.sh.
#
# Everything the job reaches is on this machine: a network namespace the
# demo creates (a veth pair with a /24 of 198.19.0.0/16, in the benchmarking
# range 198.18.0.0/15 of RFC 2544, on that veth only, and no other routes),
# holding the demo's DNS server and a "registry" (examples/demo-network.js).
# The job's DNS proxy asks that server (--dns-upstream). All of it, and the
# temporary directory, is removed on exit, Ctrl-C included.
#
# Exits with the job's status under ringfence: 1, because the policy blocked
# the job's two attempts to reach what it does not allow.
#
# RINGFENCE_DEMO_KEEP=DIR copies into DIR, before cleaning up, the job's
# events (events.jsonl), the DNS server's query log (dns-queries.jsonl) and
# the demo network's addresses (network.env); test/e2e/demo.test.ts reads them.
set -euo pipefail
cd "$(dirname "$0")/.."
ringfence=./bin/ringfence
work=$(mktemp -d /tmp/ringfence-demo.XXXXXX)
db="sqlite:$work/policy-store.db"
netns=ringfence-demo-$$
veth_host=rfdemo$$h
veth_peer=rfdemo$$p
server=
network=

cleanup() {
  set +e
  for pid in $server $network; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  if ip netns list | grep -q "^$netns\b"; then
    # anything still running in the namespace goes with it
    for pid in $(ip netns pids "$netns"); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$netns"
  fi
  ip link del "$veth_host" 2>/dev/null # normally gone with its peer's namespace
  if [[ -n ${RINGFENCE_DEMO_KEEP:-} ]]; then
    mkdir -p "$RINGFENCE_DEMO_KEEP"
    cp "$work"/events.jsonl "$work"/dns-queries.jsonl "$work"/network.env "$RINGFENCE_DEMO_KEEP"/ 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== demo network"
# a /24 of 198.19.0.0/16 that no address or route of this machine uses yet
subnet=
for i in $(seq 0 255); do
  candidate=198.19.$(( ($$ + i) % 256 ))
  if [[ -z $(ip -4 route show table all root "$candidate.0/24") && -z $(ip -4 addr show to "$candidate.0/24") ]]; then
    subnet=$candidate
    break
  fi
done
[[ -n $subnet ]] || { echo "demo: no free /24 in 198.19.0.0/16 for the demo network" >&2; exit 1; }
dns=$subnet.2        # the DNS server and the registry (allowed by the policy)
blocked=$subnet.3    # exfil.attacker.example's address (not allowed)
ip netns add "$netns"
ip link add "$veth_host" type veth peer name "$veth_peer"
ip link set "$veth_peer" netns "$netns"
ip addr add "$subnet.1/24" dev "$veth_host"
ip link set "$veth_host" up
ip -n "$netns" addr add "$dns/24" dev "$veth_peer"
ip -n "$netns" addr add "$blocked/24" dev "$veth_peer"
ip -n "$netns" link set lo up
ip -n "$netns" link set "$veth_peer" up
printf 'DEMO_NETWORK=%s\nDEMO_DNS=%s\nDEMO_BLOCKED_ADDR=%s\nDEMO_NETNS=%s\nDEMO_VETH=%s\n' \
  "$subnet.0/24" "$dns" "$blocked" "$netns" "$veth_host" > "$work/network.env"

: > "$work/dns-queries.jsonl"
ip netns exec "$netns" node examples/demo-network.js --dns "$dns" --log "$work/dns-queries.jsonl" \
  registry.demo.test="$dns" exfil.attacker.example="$blocked" > "$work/network.log" 2>&1 &
network=$!
for _ in $(seq 100); do
  grep -q '^ready' "$work/network.log" && break
  kill -0 "$network" 2>/dev/null || break
  sleep 0.1
done
grep -q '^ready' "$work/network.log" || { echo "demo: the demo network's servers did not start:" >&2; cat "$work/network.log" >&2; exit 1; }
echo "   namespace $netns, $subnet.0/24 on $veth_host only; DNS and registry.demo.test at $dns, exfil.attacker.example at $blocked"

echo "== policy store (SQLite: $work/policy-store.db)"
: > "$work/server.log"
$ringfence server --db "$db" --listen 127.0.0.1:0 --no-oidc 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.1; done
export RINGFENCE_SERVER=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$work/server.log")
echo "   listening on $RINGFENCE_SERVER"

export RINGFENCE_TOKEN=$($ringfence token create --org demo-org --role admin --db "$db" 2>/dev/null)
$ringfence policy create -f examples/demo-policy.yml
$ringfence policy attach demo-build --org demo-org
$ringfence policy list

echo "== the job: ./examples/demo-job.sh, policy from the store, DNS from the demo network"
export RINGFENCE_TOKEN=$($ringfence token create --org demo-org --role agent --db "$db" 2>/dev/null)
set +e
RINGFENCE_DEMO_DNS=$dns RINGFENCE_DEMO_BLOCKED_ADDR=$blocked \
  $ringfence run --org demo-org --repo demo-org/app --workflow .github/workflows/ci.yml \
  --dns-upstream "$dns:53" --events "$work/events.jsonl" -- ./examples/demo-job.sh
status=$?
set -e
echo "== $(wc -l < "$work/events.jsonl") job events written (docs/events.md); the demo's DNS server was asked for: $(
  sed -n 's/.*"name":"\([^"]*\)","type":"\([^"]*\)".*/\1 \2/p' "$work/dns-queries.jsonl" | sort -u | paste -sd, - | sed 's/,/, /g')"
echo "== ringfence run exited $status"
exit $status
