// Captures libbpf's messages so that a failed load can say why in one place
// (the verifier's last lines) instead of spraying stderr.
#pragma once

#include <string>

namespace ringfence {

// Installs the capturing print callback (idempotent).
void InstallLibbpfLogger();

// Starts a fresh capture for the calling operation.
void ClearLibbpfLog();

// The last `max_lines` lines libbpf printed since the last clear, the
// verifier's log included, joined with '\n'.
std::string LibbpfLogTail(size_t max_lines);

}  // namespace ringfence
