#include "client/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include <fcntl.h>

namespace backprop::client {
namespace {

// The write end of the watcher's pipe, for the signal handler.
volatile sig_atomic_t g_interrupt_fd = -1;
struct sigaction g_previous_action;

void OnSigint(int) {
  const int saved_errno = errno;
  const char byte = 'i';
  if (g_interrupt_fd >= 0) {
    [[maybe_unused]] ssize_t n = write(g_interrupt_fd, &byte, 1);
  }
  // A second Ctrl-C ends the process the default way.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGINT, &dfl, nullptr);
  errno = saved_errno;
}

}  // namespace

InterruptWatcher::InterruptWatcher(std::function<void()> on_interrupt)
    : on_interrupt_(std::move(on_interrupt)) {
  if (pipe2(pipe_, O_CLOEXEC) == 0) {
    g_interrupt_fd = pipe_[1];
    struct sigaction action {};
    action.sa_handler = OnSigint;
    sigemptyset(&action.sa_mask);
    installed_ = sigaction(SIGINT, &action, &g_previous_action) == 0;
    thread_ = std::thread([this] { Run(); });
  }
}

InterruptWatcher::~InterruptWatcher() {
  if (installed_) sigaction(SIGINT, &g_previous_action, nullptr);
  g_interrupt_fd = -1;
  if (thread_.joinable()) {
    const char quit = 'q';
    [[maybe_unused]] ssize_t n = write(pipe_[1], &quit, 1);
    thread_.join();
  }
  if (pipe_[0] >= 0) close(pipe_[0]);
  if (pipe_[1] >= 0) close(pipe_[1]);
}

void InterruptWatcher::Run() {
  while (true) {
    char byte = 0;
    const ssize_t n = read(pipe_[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == 'q') return;
    if (!interrupted_.exchange(true)) on_interrupt_();
  }
}

}  // namespace backprop::client
