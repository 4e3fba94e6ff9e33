#include "io/dpdk_eal.h"

#include <pthread.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace l4lb::io {

namespace {

std::mutex log_mutex;
std::string log_text;  // bounded: the newest kLogLimit bytes

constexpr size_t kLogLimit = 64 * 1024;

ssize_t write_log(void*, const char* data, size_t size) {
  std::lock_guard<std::mutex> lock(log_mutex);
  log_text.append(data, size);
  if (log_text.size() > kLogLimit) log_text.erase(0, log_text.size() - kLogLimit);
  return static_cast<ssize_t>(size);
}

FILE* open_log_stream() {
  cookie_io_functions_t functions{};
  functions.write = write_log;
  FILE* stream = fopencookie(nullptr, "w", functions);
  if (stream != nullptr) setvbuf(stream, nullptr, _IOLBF, 0);
  return stream;
}

int first_allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) return cpu;
  }
  return 0;
}

bool has_option(const std::vector<std::string>& args, std::initializer_list<const char*> names) {
  for (const std::string& arg : args) {
    for (const char* name : names) {
      const std::string n(name);
      if (arg == n || arg.rfind(n + "=", 0) == 0) return true;
    }
  }
  return false;
}

std::vector<std::string> build_arguments(const EalRequest& request) {
  std::vector<std::string> args{"l4lb"};
  // One lcore, the EAL thread itself: the engine's workers are threads of
  // their own (non-EAL threads may use ports and mempools).
  if (!has_option(request.extra, {"-l", "--lcores", "-c"})) args.push_back("-l" + std::to_string(first_allowed_cpu()));
  // No file shared with other DPDK processes: every l4lb process is a primary.
  if (!has_option(request.extra, {"--no-shconf", "--in-memory", "--file-prefix"})) {
    args.push_back(request.hugepages ? "--in-memory" : "--no-shconf");
  }
  if (!request.hugepages) {
    args.push_back("--no-huge");
    if (!has_option(request.extra, {"--no-pci", "-a", "--allow", "-b", "--block"})) args.push_back("--no-pci");
    if (!has_option(request.extra, {"-m", "--socket-mem"})) args.push_back("-m512");
  }
  if (!has_option(request.extra, {"--no-telemetry", "--telemetry"})) args.push_back("--no-telemetry");
  args.insert(args.end(), request.extra.begin(), request.extra.end());
  return args;
}

std::string join(const std::vector<std::string>& args) {
  std::string text;
  for (size_t i = 1; i < args.size(); ++i) text += (i > 1 ? " " : "") + args[i];
  return text;
}

struct EalState {
  std::mutex mutex;
  std::condition_variable changed;
  bool started = false;
  bool done = false;
  bool ok = false;
  EalRequest request;
  std::string arguments;
  std::string failure;
};

EalState& state() {
  static EalState* s = new EalState();  // never destroyed: the EAL thread outlives static destructors
  return *s;
}

void run_eal(std::vector<std::string> args) {
  EalState& s = state();
  // Every signal blocked here and in the threads EAL creates from here
  // (interrupt and control threads inherit the mask): Node handles them.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  pthread_setname_np(pthread_self(), "l4lb-eal");
  if (FILE* stream = open_log_stream()) rte_openlog_stream(stream);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int result = rte_eal_init(static_cast<int>(args.size()), argv.data());
  const int error_number = rte_errno;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.done = true;
    s.ok = result >= 0;
    if (!s.ok) {
      s.failure = std::string("rte_eal_init(") + s.arguments + ") failed: " + rte_strerror(error_number) + "; EAL said: " +
                  eal_log_tail(6);
    }
  }
  s.changed.notify_all();
  // The main lcore stays: DPDK expects it for the process's lifetime.
  std::unique_lock<std::mutex> lock(s.mutex);
  s.changed.wait(lock, [] { return false; });
}

}  // namespace

std::string eal_log_tail(size_t lines) {
  std::lock_guard<std::mutex> lock(log_mutex);
  size_t position = log_text.size();
  if (position > 0 && log_text[position - 1] == '\n') --position;
  for (size_t i = 0; i < lines && position != std::string::npos && position > 0; ++i) position = log_text.rfind('\n', position - 1);
  std::string tail = position == std::string::npos || position == 0 ? log_text : log_text.substr(position + 1);
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  for (char& c : tail) {
    if (c == '\n') c = ' ';
  }
  return tail.empty() ? "(nothing)" : tail;
}

std::string eal_arguments() {
  EalState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.arguments;
}

bool ensure_eal(const EalRequest& request, PortError* error) {
  EalState& s = state();
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.started) {
    s.started = true;
    s.request = request;
    std::vector<std::string> args = build_arguments(request);
    s.arguments = join(args);
    try {
      std::thread(run_eal, std::move(args)).detach();
    } catch (const std::system_error& e) {
      s.done = true;
      s.failure = std::string("starting the EAL thread: ") + e.what();
    }
  }
  s.changed.wait(lock, [&] { return s.done; });
  error->error_number = 0;
  if (!s.ok) {
    error->code = "EDPDK_EAL";
    error->message = s.failure + " (EAL starts once per process: fix dpdk.eal and restart the process)";
    return false;
  }
  if (request.extra != s.request.extra || request.hugepages != s.request.hugepages) {
    error->code = "EDPDK_EAL_CONFLICT";
    error->message = "the EAL of this process runs with \"" + s.arguments +
                     "\" (started by its first dpdk balancer); it starts once per process: give every balancer the same dpdk.eal and "
                     "dpdk.hugepages";
    return false;
  }
  return true;
}

}  // namespace l4lb::io
