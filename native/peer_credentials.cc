// SO_PEERCRED, made safe against pid reuse with SO_PEERPIDFD.
//
// SO_PEERCRED gives a pid number, and by the time anyone reads /proc/PID the
// peer may have exited and its number gone to another process. SO_PEERPIDFD
// (Linux 6.5+) gives a pidfd that refers to the peer process itself. The check
// is done here, in one call, rather than by handing the pidfd to JavaScript:
// no descriptor crosses into JS (where an exception between getting and
// closing it would leak it in a long-running daemon), and what comes back is
// (pid, start time), the identity the job registry already keys processes by
// (JobRecord.ownerPid/ownerStart). The order is what makes it sound: read the
// start time of /proc/PID first, then ask the pidfd whether the peer still
// exists. A process that has exited never comes back, so if it exists after
// the read, /proc/PID was the peer during the read (a pid is not reused while
// its process, or its zombie, exists).
//
// Kernels without SO_PEERPIDFD (ENOPROTOOPT) get the same answer with
// `pidReuseChecked: false`: a peer that exits and has its pid reused between
// connect() and this call is then not noticed.
#include "peer_credentials.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // include/uapi/asm-generic/socket.h, Linux 6.5
#endif

namespace ringfence {
namespace {

// "ESRCH" for ESRCH: the code the TypeScript side matches on (glibc 2.32+).
const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "EUNKNOWN";
}

// One line: what failed, for which fd, and the system's reason.
Napi::Error PeerError(Napi::Env env, int fd, const std::string& what, int err) {
  Napi::Error error = Napi::Error::New(env, "peer credentials of fd " + std::to_string(fd) + ": " + what +
                                                 " (" + ErrnoName(err) + ": " + strerror(err) + ")");
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

// Field 22 of /proc/PID/stat, or -1 when the process is gone (or the line is
// not what the kernel writes). comm (field 2) may hold spaces and
// parentheses, so fields are counted from its last ')'.
double StartTime(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  if (!file) return -1;
  std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; i++) {
    if (!(fields >> field)) return -1;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long ticks = strtoull(field.c_str(), &end, 10);
  if (errno || end == field.c_str() || *end) return -1;
  return static_cast<double>(ticks);
}

}  // namespace

Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "peerCredentials(fd) needs a descriptor number");
  double fd_arg = info[0].As<Napi::Number>().DoubleValue();
  if (fd_arg < 0 || fd_arg > 0x7fffffff || fd_arg != static_cast<int>(fd_arg))
    throw Napi::RangeError::New(env, "peerCredentials(fd): fd must be a non-negative integer");
  int fd = static_cast<int>(fd_arg);

  int domain = 0;
  socklen_t len = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) throw PeerError(env, fd, "not an open socket", errno);
  if (domain != AF_UNIX) throw PeerError(env, fd, "not a unix socket", EAFNOSUPPORT);
  struct sockaddr_un peer_address;
  len = sizeof(peer_address);
  if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&peer_address), &len) < 0)
    throw PeerError(env, fd, "no connected peer", errno);

  struct ucred cred;
  len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) throw PeerError(env, fd, "SO_PEERCRED failed", errno);
  // 0: the peer's pid has no number in our pid namespace (it has been reaped,
  // or lives in a namespace we cannot see): nobody we could judge.
  if (cred.pid <= 0) throw PeerError(env, fd, "the peer process is gone or not visible from here", ESRCH);

  int pidfd = -1;
  len = sizeof(pidfd);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
    int err = errno;
    // EINVAL (6.5-6.15) and ESRCH (later): the peer has exited.
    if (err == EINVAL || err == ESRCH)
      throw PeerError(env, fd, "peer process " + std::to_string(cred.pid) + " has exited", ESRCH);
    if (err != ENOPROTOOPT) throw PeerError(env, fd, "SO_PEERPIDFD failed", err);
    pidfd = -1;  // an older kernel: no reuse check (see the top of this file)
  }

  double start_time = StartTime(cred.pid);
  int alive_err = 0;
  if (pidfd >= 0) {
    // Signal 0 checks existence only; EPERM still means it exists.
    if (syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) < 0 && errno != EPERM) alive_err = errno;
    close(pidfd);
  }
  if (alive_err == ESRCH || start_time < 0)
    throw PeerError(env, fd, "peer process " + std::to_string(cred.pid) + " has exited", ESRCH);
  if (alive_err) throw PeerError(env, fd, "cannot check that peer process " + std::to_string(cred.pid) + " exists", alive_err);

  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  result.Set("startTime", Napi::Number::New(env, start_time));
  result.Set("pidReuseChecked", Napi::Boolean::New(env, pidfd >= 0));
  return result;
}

}  // namespace ringfence
