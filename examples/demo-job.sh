#!/usr/bin/env bash
# A small CI-like job: what a build does, and what a compromised step tries.
# Under examples/demo-policy.yml the last two are refused, so `ringfence run`
# exits 1 and its summary lists them first.
set -u
echo "demo job: compiling…"
ls / >/dev/null
uname -r

echo "demo job: a loopback service (always allowed)"
(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null || echo "  127.0.0.1:9: nothing listening, as expected"

echo "demo job: resolving a name the policy does not allow"
getent ahosts exfil.attacker.example >/dev/null || echo "  exfil.attacker.example: no such name (the DNS proxy refused it)"

echo "demo job: connecting to an address the policy does not allow"
(exec 3<>/dev/tcp/192.0.2.10/443) 2>/dev/null || echo "  192.0.2.10:443: refused in the kernel"

sleep 0.1 &
wait
echo "demo job: done"
