// Turns Ctrl-C (SIGINT) into a callback on an ordinary thread, where it may
// safely call grpc::ClientContext::TryCancel(). The signal handler itself
// only writes one byte to a pipe (async-signal-safe); a second Ctrl-C gets
// the default action and ends the process at once.
#ifndef BACKPROP_CLIENT_INTERRUPT_H_
#define BACKPROP_CLIENT_INTERRUPT_H_

#include <atomic>
#include <functional>
#include <thread>

namespace backprop::client {

class InterruptWatcher {
 public:
  // Installs the SIGINT handler; on_interrupt runs at most once, on the
  // watcher thread. Only one watcher may exist at a time.
  explicit InterruptWatcher(std::function<void()> on_interrupt);
  // Restores the previous SIGINT disposition and joins the thread.
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  bool interrupted() const { return interrupted_.load(); }

 private:
  void Run();

  std::function<void()> on_interrupt_;
  std::atomic<bool> interrupted_{false};
  int pipe_[2] = {-1, -1};
  bool installed_ = false;
  std::thread thread_;  // last: starts after every other member exists
};

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_INTERRUPT_H_
