// Network namespaces for C++ tests that need real interfaces (AF_PACKET):
// RAII over `ip netns`, named l4lb-ctest-<pid>-<n>-<label>, removed by the
// destructor (failed assertions included: gtest unwinds the test body). A
// test process killed before its destructors ran leaves its namespaces
// behind; the first NetNamespace of the next run removes every
// l4lb-ctest-<pid>- namespace whose process is gone.
//
//   test::NetNamespace ns("veth");
//   ASSERT_TRUE(ns.ok()) << ns.error();
//   ASSERT_TRUE(ns.ip({"link", "add", "name", "a", "type", "veth", "peer", "name", "b"})) << ns.error();
//   {
//     test::NetnsScope inside(ns);  // this thread now creates sockets in ns
//     ASSERT_TRUE(inside.ok()) << inside.error();
//     ...
//   }
//
// Needs root (CAP_SYS_ADMIN for the netns mounts, CAP_NET_ADMIN) and `ip`.
// Failures are reported through ok()/error(), never by skipping.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace l4lb::test {

inline constexpr const char* kTestNetnsPrefix = "l4lb-ctest-";
inline constexpr const char* kNetnsDirectory = "/var/run/netns";

// Runs argv without a shell; returns the exit status (-1 if it could not
// run) with stdout and stderr in *output.
inline int run_command(const std::vector<std::string>& argv, std::string* output) {
  output->clear();
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *output = std::string("pipe2: ") + std::strerror(errno);
    return -1;
  }
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t child = fork();
  if (child < 0) {
    *output = std::string("fork: ") + std::strerror(errno);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return -1;
  }
  if (child == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  char buffer[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) output->append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && output->empty()) *output = "cannot run " + argv[0];
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// False when `pid` is gone or a zombie (killed, its parent not yet reaping:
// kill(pid, 0) still succeeds on a zombie).
inline bool process_running(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[512];
  const ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
  close(fd);
  if (n <= 0) return false;
  buffer[n] = 0;
  // "pid (comm) state ...": the state follows the last ')'.
  const char* close_paren = std::strrchr(buffer, ')');
  return close_paren == nullptr || close_paren[1] == 0 || close_paren[2] != 'Z';
}

// Removes l4lb-ctest-<pid>-* namespaces whose process no longer runs.
inline void remove_stale_test_namespaces() {
  DIR* directory = opendir(kNetnsDirectory);
  if (directory == nullptr) return;
  std::vector<std::string> stale;
  const size_t prefix_len = std::strlen(kTestNetnsPrefix);
  while (dirent* entry = readdir(directory)) {
    const std::string name = entry->d_name;
    if (name.compare(0, prefix_len, kTestNetnsPrefix) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix_len, nullptr, 10);
    if (pid <= 0) continue;
    if (!process_running(static_cast<pid_t>(pid))) stale.push_back(name);
  }
  closedir(directory);
  std::string output;
  for (const std::string& name : stale) run_command({"ip", "netns", "del", name}, &output);
}

class NetNamespace {
 public:
  explicit NetNamespace(const std::string& label) {
    static std::atomic<bool> cleaned{false};
    if (!cleaned.exchange(true)) remove_stale_test_namespaces();
    static std::atomic<int> sequence{0};
    name_ = std::string(kTestNetnsPrefix) + std::to_string(getpid()) + "-" + std::to_string(sequence++) + "-" + label;
    std::string output;
    if (run_command({"ip", "netns", "add", name_}, &output) != 0) {
      error_ = "cannot create network namespace " + name_ + " (root and iproute2 needed): " + output;
      return;
    }
    created_ = true;
    ip({"link", "set", "dev", "lo", "up"});
  }
  ~NetNamespace() {
    if (!created_) return;
    std::string output;
    run_command({"ip", "netns", "del", name_}, &output);
  }
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  bool ok() const { return created_ && error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  std::string path() const { return std::string(kNetnsDirectory) + "/" + name_; }

  // `ip -n <name> args...`; false (error() set, ok() false) on failure.
  bool ip(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"ip", "-n", name_};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string output;
    if (run_command(argv, &output) == 0) return true;
    std::string command;
    for (const std::string& arg : argv) command += (command.empty() ? "" : " ") + arg;
    error_ += (error_.empty() ? "" : "; ") + command + ": " + output;
    return false;
  }

  // Writes /proc/sys/<key> (key with '/' separators) inside the namespace.
  bool sysctl(const std::string& key, const std::string& value);

 private:
  std::string name_;
  std::string error_;
  bool created_ = false;
};

// Moves the calling thread into a namespace until destruction (setns acts
// on the calling thread only; sockets keep the namespace they were created in).
class NetnsScope {
 public:
  explicit NetnsScope(const NetNamespace& ns) {
    original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const int target = open(ns.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (original_ < 0 || target < 0) {
      error_ = "open namespace " + ns.path() + ": " + std::strerror(errno);
    } else if (setns(target, CLONE_NEWNET) != 0) {
      error_ = "setns " + ns.path() + ": " + std::strerror(errno);
    } else {
      entered_ = true;
    }
    if (target >= 0) close(target);
  }
  ~NetnsScope() {
    if (entered_ && setns(original_, CLONE_NEWNET) != 0) std::abort();  // later tests would run in the wrong namespace
    if (original_ >= 0) close(original_);
  }
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

  bool ok() const { return entered_; }
  const std::string& error() const { return error_; }

 private:
  int original_ = -1;
  bool entered_ = false;
  std::string error_;
};

inline bool NetNamespace::sysctl(const std::string& key, const std::string& value) {
  NetnsScope inside(*this);
  if (!inside.ok()) {
    error_ += (error_.empty() ? "" : "; ") + inside.error();
    return false;
  }
  // /proc/sys/net resolves to the namespace of the thread that opens it.
  const std::string path = "/proc/sys/" + key;
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const bool written = fd >= 0 && write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  const int saved = errno;
  if (fd >= 0) close(fd);
  if (!written) error_ += (error_.empty() ? "" : "; ") + path + ": " + std::strerror(saved);
  return written;
}

}  // namespace l4lb::test
