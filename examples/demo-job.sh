#!/usr/bin/env bash
# A small CI-like job: what a build does, and what a compromised step tries.
#
# Its remote steps need the demo's network, which examples/demo.sh creates (a
# network namespace with a DNS server and a "registry"; nothing off the
# machine) and names in these variables:
#   RINGFENCE_DEMO_DNS           the demo network's DNS server (an IPv4 address)
#   RINGFENCE_DEMO_BLOCKED_ADDR  an address in the demo network the policy does not allow
# Without them (e.g. `ringfence trace -- ./examples/demo-job.sh`) the job
# only touches loopback.
#
# Under examples/demo-policy.yml the registry is allowed and the last two
# remote steps are refused, so `ringfence run` exits 1 and its summary lists
# them first.
set -u
echo "demo job: compiling…"
ls / >/dev/null
uname -r

echo "demo job: a loopback service (always allowed)"
(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null || echo "  127.0.0.1:9: nothing listening, as expected"

# Names are looked up by asking the demo network's DNS server directly, as
# package managers' own resolvers do (examples/demo-resolve.js says why).
resolve() { node "$(dirname "$0")/demo-resolve.js" "$1" "$RINGFENCE_DEMO_DNS"; }

remote_steps() {
  echo "demo job: fetching from registry.demo.test:443 (allowed by the policy)"
  local registry
  if registry=$(resolve registry.demo.test 2>/dev/null); then
    (exec 3<>"/dev/tcp/$registry/443" && read -r -t 2 -u 3 greeting && echo "  $registry:443: $greeting") 2>/dev/null ||
      echo "  $registry:443: unreachable"
  else
    echo "  registry.demo.test: no answer"
  fi

  echo "demo job: resolving a name the policy does not allow"
  resolve exfil.attacker.example >/dev/null 2>&1 || echo "  exfil.attacker.example: no such name (the DNS proxy refused it)"

  echo "demo job: connecting to an address the policy does not allow"
  (exec 3<>"/dev/tcp/$RINGFENCE_DEMO_BLOCKED_ADDR/443") 2>/dev/null || echo "  $RINGFENCE_DEMO_BLOCKED_ADDR:443: refused in the kernel"
}

if [[ -n "${RINGFENCE_DEMO_DNS:-}" && -n "${RINGFENCE_DEMO_BLOCKED_ADDR:-}" ]]; then
  remote_steps
else
  echo "demo job: no demo network (examples/demo.sh sets one up): loopback only"
fi

sleep 0.1 &
wait
echo "demo job: done"
