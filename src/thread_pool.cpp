#include "nanomlp/thread_pool.hpp"

#include <immintrin.h>
#include <sched.h>

#include <algorithm>

namespace nanomlp {

int hardware_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool(1);
  return pool;
}

ThreadPool::ThreadPool(int num_threads) { set_num_threads(num_threads); }

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  stop_ = false;
}

void ThreadPool::set_num_threads(int n) {
  if (n < 1) n = hardware_threads();
  if (n == num_threads_ && static_cast<int>(workers_.size()) == n - 1) return;
  stop_workers();
  num_threads_ = n;
  // Each worker starts from the generation current now; reading it inside the new thread
  // could miss a job posted before the thread got to run.
  const std::uint64_t start = generation_.load(std::memory_order_acquire);
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, start] { worker_loop(i, start); });
}

void ThreadPool::run_impl(int parts, void* ctx, TaskFn fn) {
  parts = std::clamp(parts, 1, num_threads_);
  if (parts == 1) {
    fn(ctx, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    parts_ = parts;
    ctx_ = ctx;
    fn_ = fn;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  fn(ctx, 0);
  // The parts are short (tens of microseconds), so the caller spins rather than sleeps.
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
}

void ThreadPool::worker_loop(int index, std::uint64_t seen) {
  for (;;) {
    // Spin briefly before sleeping: consecutive GEMMs of one training step arrive within
    // microseconds, and a futex wake-up costs more than that.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < 20000) {
      _mm_pause();
      ++spins;
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
    }
    if (index < parts_) fn_(ctx_, index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace nanomlp
