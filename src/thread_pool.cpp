#include "nanomlp/thread_pool.hpp"

#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <stdexcept>

namespace nanomlp {
namespace {

// About 20-40 microseconds of pause instructions: long enough to catch the next product of the
// same training step without a futex round trip, short enough not to starve other work.
constexpr int kSpinPauses = 2000;

}  // namespace

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

ThreadPool::ThreadPool(int num_threads) {
  set_num_threads(num_threads);
}

ThreadPool::~ThreadPool() {
  stop_workers();
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  stop_ = false;
}

void ThreadPool::set_num_threads(int n) {
  if (n < 1) n = hardware_threads();
  n = std::min(n, 256);
  if (n == num_threads_ && static_cast<int>(workers_.size()) == n - 1) return;
  stop_workers();
  num_threads_ = n;
  // Each worker starts from the generation current now; reading it inside the new thread
  // could miss a job posted before the thread got to run.
  const std::uint32_t start = generation_of(job_.load(std::memory_order_acquire));
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, start] { worker_loop(start); });
}

void ThreadPool::work_on(std::uint32_t generation) {
  std::uint64_t w = job_.load(std::memory_order_acquire);
  for (;;) {
    if (generation_of(w) != generation || next_of(w) >= parts_of(w)) return;
    // A successful claim means the job still has this slice outstanding, so the caller is
    // still waiting in run_impl and ctx_/fn_ are this job's.
    if (job_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      fn_(ctx_, next_of(w));
      done_.fetch_add(1, std::memory_order_acq_rel);
      w = job_.load(std::memory_order_acquire);
    }
  }
}

void ThreadPool::run_impl(int parts, void* ctx, TaskFn fn) {
  parts = std::clamp(parts, 1, std::min(num_threads_, 0xffff));
  if (parts == 1) {
    fn(ctx, 0);
    return;
  }
  std::uint32_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ctx_ = ctx;
    fn_ = fn;
    done_.store(0, std::memory_order_relaxed);
    generation = generation_of(job_.load(std::memory_order_relaxed)) + 1;
    job_.store(
        (static_cast<std::uint64_t>(generation) << 32) | (static_cast<std::uint64_t>(parts) << 16),
        std::memory_order_release);
  }
  wake_.notify_all();
  work_on(generation);
  // Slices are tens of microseconds: spin briefly, then yield so that a worker sharing this
  // core can finish its slice.
  for (int spins = 0; done_.load(std::memory_order_acquire) < parts; ++spins) {
    if (spins < kSpinPauses) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_loop(std::uint32_t seen) {
  for (;;) {
    int spins = 0;
    while (generation_of(job_.load(std::memory_order_acquire)) == seen && spins < kSpinPauses) {
      _mm_pause();
      ++spins;
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_ || generation_of(job_.load(std::memory_order_acquire)) != seen;
      });
      if (stop_) return;
      seen = generation_of(job_.load(std::memory_order_acquire));
    }
    work_on(seen);
  }
}

}  // namespace nanomlp
