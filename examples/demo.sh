#!/usr/bin/env bash
# The main demo: a policy store on embedded SQLite, the sample policy stored
# and attached to an organization, and a CI-like job that gets its policy
# from the store and runs under it (egress in the kernel, DNS proxy,
# lockdown). Run as root from the repository after scripts/setup.sh.
#
# Exits with the job's status under ringfence: 1, because the policy blocked
# the job's two attempts to reach what it does not allow.
set -euo pipefail
cd "$(dirname "$0")/.."
ringfence=./bin/ringfence
work=$(mktemp -d)
db="sqlite:$work/policy-store.db"
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT

echo "== policy store (SQLite: $work/policy-store.db)"
$ringfence server --db "$db" --listen 127.0.0.1:0 --no-oidc 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.1; done
export RINGFENCE_SERVER=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$work/server.log")
echo "   listening on $RINGFENCE_SERVER"

export RINGFENCE_TOKEN=$($ringfence token create --org demo-org --role admin --db "$db" 2>/dev/null)
$ringfence policy create -f examples/demo-policy.yml
$ringfence policy attach demo-build --org demo-org
$ringfence policy list

echo "== the job: ./examples/demo-job.sh, policy from the store"
export RINGFENCE_TOKEN=$($ringfence token create --org demo-org --role agent --db "$db" 2>/dev/null)
set +e
$ringfence run --org demo-org --repo demo-org/app --workflow .github/workflows/ci.yml \
  --events "$work/events.jsonl" -- ./examples/demo-job.sh
status=$?
set -e
echo "== $(wc -l < "$work/events.jsonl") job events written (docs/events.md); ringfence run exited $status"
exit $status
