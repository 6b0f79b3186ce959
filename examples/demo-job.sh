#!/usr/bin/env bash
# A small CI-like job that shows what the sensor sees: processes, a
# background child, a loopback connect, and reading its own memory.
set -u
echo "demo job: building…"
ls / >/dev/null
uname -r
(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null || echo "demo job: 127.0.0.1:9 refused the connection, as expected"
head -c 16 /proc/self/maps >/dev/null
sleep 0.1 &
wait
echo "demo job: done"
