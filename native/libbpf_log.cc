#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <deque>
#include <mutex>
#include <sstream>

namespace ringfence {
namespace {

constexpr size_t kMaxKeptLines = 400;

std::mutex log_mutex;
std::deque<std::string> log_lines;
std::string partial_line;

int CaptureLibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buffer[4096];
  int n = vsnprintf(buffer, sizeof(buffer), format, args);
  if (n < 0) return n;
  std::lock_guard<std::mutex> lock(log_mutex);
  partial_line.append(buffer);
  size_t newline;
  while ((newline = partial_line.find('\n')) != std::string::npos) {
    std::string line = partial_line.substr(0, newline);
    partial_line.erase(0, newline + 1);
    if (line.empty()) continue;
    log_lines.push_back(std::move(line));
    if (log_lines.size() > kMaxKeptLines) log_lines.pop_front();
  }
  return n;
}

}  // namespace

void InstallLibbpfLogger() { libbpf_set_print(CaptureLibbpfPrint); }

void ClearLibbpfLog() {
  std::lock_guard<std::mutex> lock(log_mutex);
  log_lines.clear();
  partial_line.clear();
}

std::string LibbpfLogTail(size_t max_lines) {
  std::lock_guard<std::mutex> lock(log_mutex);
  std::ostringstream out;
  size_t start = log_lines.size() > max_lines ? log_lines.size() - max_lines : 0;
  for (size_t i = start; i < log_lines.size(); i++) {
    if (i > start) out << '\n';
    out << log_lines[i];
  }
  return out.str();
}

}  // namespace ringfence
