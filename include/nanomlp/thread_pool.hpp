// One persistent pool of worker threads for every parallel loop in nanomlp. A call to run()
// hands part i of a job to thread i (the caller does part 0), so the split, and with it the
// floating-point result, depends only on the number of threads, never on timing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace nanomlp {

class ThreadPool {
 public:
  // The process-wide pool used by the kernels. Starts with one thread (the caller).
  static ThreadPool& global();

  explicit ThreadPool(int num_threads = 1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Total threads taking part in run(), the caller included. n < 1 means all cores.
  void set_num_threads(int n);
  int num_threads() const { return num_threads_; }

  // Calls fn(part) for part in [0, parts), part p on thread p; parts <= num_threads().
  template <typename Fn>
  void run(int parts, Fn&& fn) {
    run_impl(parts, &fn, [](void* ctx, int part) { (*static_cast<Fn*>(ctx))(part); });
  }

 private:
  using TaskFn = void (*)(void*, int);
  void run_impl(int parts, void* ctx, TaskFn fn);
  void worker_loop(int index, std::uint64_t seen);
  void stop_workers();

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  int parts_ = 0;
  void* ctx_ = nullptr;
  TaskFn fn_ = nullptr;
};

// Number of hardware threads available to this process (at least 1).
int hardware_threads();

}  // namespace nanomlp
