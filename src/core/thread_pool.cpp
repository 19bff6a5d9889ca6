#include "nanomlp/core/thread_pool.hpp"

#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace nanomlp {
namespace {

// About 20-40 microseconds of pause instructions: long enough to catch the next product of the
// same training step without a futex round trip, short enough not to starve other work.
constexpr int kSpinPauses = 2000;

// Whether this thread is running a part of a job: a nested run() then works inline.
thread_local bool in_job = false;

// Marks the current thread as inside a job for the lifetime of the guard.
struct InJob {
  bool outer = in_job;
  InJob() { in_job = true; }
  ~InJob() { in_job = outer; }
};

}  // namespace

bool ThreadPool::inside_job() {
  return in_job;
}

void spin_pause(int spins) {
  if (spins < kSpinPauses) {
    _mm_pause();
  } else {
    std::this_thread::yield();
  }
}

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
  n = std::min(n, kMaxThreads);
  if (n == num_threads_ && static_cast<int>(workers_.size()) == n - 1) return;
  stop_workers();
  num_threads_ = n;
  // Each worker starts from the generation current now; reading it inside the new thread
  // could miss a job posted before the thread got to run.
  const std::uint32_t start = generation_of(job_.load(std::memory_order_acquire));
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, start] { worker_loop(i, start); });
}

void ThreadPool::work_on(int self, std::uint32_t generation) {
  std::uint64_t w = job_.load(std::memory_order_acquire);
  for (;;) {
    if (generation_of(w) != generation) return;
    const int parts = parts_of(w);
    const std::uint32_t all = parts >= 32 ? ~0u : (1u << parts) - 1u;
    const std::uint32_t open = all & ~claimed_of(w);
    if (open == 0) return;
    const int part = self < parts && ((open >> self) & 1u) ? self : std::countr_zero(open);
    // A successful claim means the job still has this slice outstanding, so the caller is
    // still waiting in run_impl and ctx_/fn_ are this job's.
    if (job_.compare_exchange_weak(w, w | (std::uint64_t{1} << part), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      {
        InJob guard;
        fn_(ctx_, part);
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
      w = job_.load(std::memory_order_acquire);
    }
  }
}

void ThreadPool::run_impl(int parts, void* ctx, TaskFn fn) {
  if (in_job) {
    for (int part = 0; part < std::max(parts, 1); ++part) fn(ctx, part);
    return;
  }
  parts = std::clamp(parts, 1, max_parts());
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
    generation = (generation_of(job_.load(std::memory_order_relaxed)) + 1) & 0xffffffu;
    job_.store(
        (static_cast<std::uint64_t>(generation) << 40) | (static_cast<std::uint64_t>(parts) << 32),
        std::memory_order_release);
  }
  wake_.notify_all();
  work_on(0, generation);
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

void ThreadPool::worker_loop(int self, std::uint32_t seen) {
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
    work_on(self, seen);
  }
}

}  // namespace nanomlp
