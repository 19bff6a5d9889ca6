// One persistent pool of worker threads for every parallel loop in nanomlp. A job is cut into
// `parts` fixed slices (the cut depends only on the thread count, so results are the same on
// every run). Thread t (the caller is 0) does slice t, so a slice's data stays in the same
// core's cache from one step to the next; a thread that has finished takes any slice nobody has
// claimed yet, so a worker that the OS has descheduled never stalls the step.
#pragma once

#include <algorithm>
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

  // Total threads taking part in run(), the caller included. n < 1 means all cores; more than
  // kMaxThreads means kMaxThreads.
  void set_num_threads(int n);
  static constexpr int kMaxThreads = 256;
  int num_threads() const { return num_threads_; }
  // Slices one job can have: the threads, at most kMaxParts.
  int max_parts() const { return std::min(num_threads_, kMaxParts); }
  static constexpr int kMaxParts = 32;
  // Whether the calling thread is running a part of a job.
  static bool inside_job();

  // Calls fn(part) once for each part in [0, parts) and returns when all are done. A run()
  // from inside a part (a kernel called by a job that already holds every thread) calls its
  // parts one after another on the calling thread.
  template <typename Fn>
  void run(int parts, Fn&& fn) {
    run_impl(parts, &fn, [](void* ctx, int part) { (*static_cast<Fn*>(ctx))(part); });
  }

  // Calls fn(begin, end) over [0, n): one contiguous slice per thread when `parallel`, else
  // the whole range on the calling thread. For element-wise passes, whose result does not
  // depend on the cut.
  template <typename Fn>
  void for_slices(std::size_t n, bool parallel, Fn&& fn) {
    if (!parallel || num_threads_ == 1) {
      fn(std::size_t{0}, n);
      return;
    }
    const auto parts = static_cast<std::size_t>(max_parts());
    run(max_parts(), [&](int part) {
      const auto p = static_cast<std::size_t>(part);
      fn(n * p / parts, n * (p + 1) / parts);
    });
  }

 private:
  using TaskFn = void (*)(void*, int);
  void run_impl(int parts, void* ctx, TaskFn fn);
  void worker_loop(int self, std::uint32_t seen_generation);
  // Claims and runs slices of the job whose generation is `generation` until none is left,
  // slice `self` first.
  void work_on(int self, std::uint32_t generation);
  void stop_workers();

  // The job word: generation (24 bits) | parts (8) | one claimed bit per part (32). One atomic
  // word, so a claim succeeds only while its job is current and the slice is still open.
  static std::uint32_t generation_of(std::uint64_t w) {
    return static_cast<std::uint32_t>(w >> 40);
  }
  static int parts_of(std::uint64_t w) { return static_cast<int>((w >> 32) & 0xff); }
  static std::uint32_t claimed_of(std::uint64_t w) { return static_cast<std::uint32_t>(w); }

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> job_{0};
  std::atomic<int> done_{0};  // slices finished of the current job
  bool stop_ = false;         // guarded by mutex_
  void* ctx_ = nullptr;       // valid while the current job has unclaimed or running slices
  TaskFn fn_ = nullptr;
};

// Waits until ready() holds, for parts of one job that hand each other work (one part per
// thread, every thread of the pool taking part). Spins a few microseconds first: the other part
// is usually just behind, and a futex round trip would cost more than the wait; then yields.
void spin_pause(int spins);
template <typename Ready>
void spin_until(Ready&& ready) {
  for (int spins = 0; !ready(); ++spins) spin_pause(spins);
}

// Number of hardware threads available to this process (at least 1).
int hardware_threads();

}  // namespace nanomlp
