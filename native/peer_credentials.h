// Who is on the other end of a unix socket: the local API (src/agent/local-api.ts)
// judges its callers by what they are, and that starts with the kernel's word
// on the connecting process.
#pragma once

#include <napi.h>

namespace ringfence {

// peerCredentials(fd) → { pid, uid, gid, startTime, pidReuseChecked } of the
// process that connected the unix socket `fd` (SO_PEERCRED: its tgid and
// effective ids at connect()). `startTime` is that process's start time in
// clock ticks since boot (/proc/PID/stat field 22): (pid, startTime) names
// one process for its whole life, so whoever later reads /proc/PID/… can
// check it is still reading the peer. Throws an Error with `code` (the errno
// name, e.g. ESRCH when the peer has already exited) and `errno`.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info);

}  // namespace ringfence
