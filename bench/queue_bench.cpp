// queue_bench: DropHeadQueue vs boost::lockfree::spsc_queue vs std::mutex + std::deque,
// one producer and one consumer thread, measured in one run.
//
//   no overflow : capacity 1024, lossless. DropHeadQueue uses its block policy with
//                 push()/pop_for() (the real blocking API); the mutex queue is the
//                 classic condition-variable design; boost spsc spins on both ends.
//   overflow    : capacity 64, the consumer does ~1 us of work per item, so the queue
//                 stays full. DropHeadQueue and the mutex queue drop the oldest item;
//                 boost spsc cannot, so it refuses the newest.
//
//   slow consumer: capacity 16, lossless; the consumer takes one item every 5 ms,
//                 so every push waits for a slot. DropHeadQueue's block-policy push()
//                 vs the mutex queue's push: the producer's CPU time as a share of
//                 the time it spent blocked, and the wake latency (slot freed ->
//                 push returned).
//
// Each case runs `--rounds` times interleaved; the median is reported.
// Usage: queue_bench [--items N] [--rounds R] [--wake-pops P] [--json]
#include <edgert/drophead_queue.hpp>

#include <boost/lockfree/spsc_queue.hpp>

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Item = std::uint64_t;

// The baseline a DropHeadQueue replaces: a bounded deque under one mutex.
class MutexDeque {
 public:
  explicit MutexDeque(std::size_t cap) : cap_(cap) {}
  void push_blocking(Item v) {
    std::unique_lock lk(mu_);
    not_full_.wait(lk, [&] { return q_.size() < cap_; });
    q_.push_back(v);
    lk.unlock();
    not_empty_.notify_one();
  }
  // Drop-oldest push; returns true if something was dropped.
  bool push_drop_head(Item v) {
    std::lock_guard lk(mu_);
    bool dropped = false;
    if (q_.size() >= cap_) {
      q_.pop_front();
      dropped = true;
    }
    q_.push_back(v);
    not_empty_.notify_one();
    return dropped;
  }
  bool pop_for(Item& out, std::chrono::milliseconds t) {
    std::unique_lock lk(mu_);
    if (!not_empty_.wait_for(lk, t, [&] { return !q_.empty(); })) return false;
    out = q_.front();
    q_.pop_front();
    lk.unlock();
    not_full_.notify_one();
    return true;
  }

 private:
  std::size_t cap_;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Item> q_;
};

inline void work(int spins) {
  for (int i = 0; i < spins; ++i) edgert::detail::cpu_relax();
}

struct Run {
  double seconds = 0;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::uint64_t checksum = 0;
};

// Pins the calling thread to the `nth` CPU this process may use, so producer and
// consumer sit on different cores in every run (less run-to-run variance).
const cpu_set_t& allowed_cpus() {
  static const cpu_set_t set = [] {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(0, sizeof s, &s) != 0) CPU_ZERO(&s);
    return s;
  }();
  return set;
}

void pin_to(int nth) {
  const cpu_set_t& allowed = allowed_cpus();
  if (CPU_COUNT(&allowed) < 2) return;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == nth) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      return;
    }
  }
}

// Runs producer(n) and consumer() on two threads; the consumer returns when it has
// seen the end marker (Item max) so every design is timed from first push to last pop.
Run timed(const std::function<std::uint64_t()>& producer, const std::function<Run()>& consumer) {
  Run consumed;
  std::uint64_t dropped = 0;
  std::atomic<bool> go{false};
  std::thread c([&] {
    pin_to(1);
    while (!go.load()) {
    }
    consumed = consumer();
  });
  const auto t0 = Clock::now();
  go = true;
  dropped = producer();
  c.join();
  consumed.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  consumed.dropped = dropped;
  return consumed;
}

constexpr Item kEnd = ~Item{0};

Run drophead_lossless(std::uint64_t n) {
  edgert::DropHeadQueue<Item> q(1024, edgert::OverflowPolicy::block);
  return timed(
      [&] {
        for (Item i = 0; i < n; ++i) (void)q.push(Item{i});
        (void)q.push(Item{kEnd});
        return std::uint64_t{0};
      },
      [&] {
        Run r;
        for (;;) {
          auto v = q.pop_for(std::chrono::milliseconds(100));
          if (!v) continue;
          if (*v == kEnd) break;
          r.delivered++;
          r.checksum += *v;
        }
        return r;
      });
}

Run boost_spsc_lossless(std::uint64_t n) {
  boost::lockfree::spsc_queue<Item, boost::lockfree::capacity<1024>> q;
  return timed(
      [&] {
        for (Item i = 0; i < n; ++i) {
          while (!q.push(i)) edgert::detail::cpu_relax();
        }
        while (!q.push(kEnd)) edgert::detail::cpu_relax();
        return std::uint64_t{0};
      },
      [&] {
        Run r;
        Item v;
        for (;;) {
          if (!q.pop(v)) {
            edgert::detail::cpu_relax();
            continue;
          }
          if (v == kEnd) break;
          r.delivered++;
          r.checksum += v;
        }
        return r;
      });
}

Run mutex_lossless(std::uint64_t n) {
  MutexDeque q(1024);
  return timed(
      [&] {
        for (Item i = 0; i < n; ++i) q.push_blocking(i);
        q.push_blocking(kEnd);
        return std::uint64_t{0};
      },
      [&] {
        Run r;
        Item v;
        for (;;) {
          if (!q.pop_for(v, std::chrono::milliseconds(100))) continue;
          if (v == kEnd) break;
          r.delivered++;
          r.checksum += v;
        }
        return r;
      });
}

constexpr int kWorkSpins = 40;  // ~1 us per consumed item on this class of machine

Run drophead_overflow(std::uint64_t n) {
  std::uint64_t dropped = 0;
  edgert::DropHeadQueue<Item> q(64, edgert::OverflowPolicy::drop_head, [&](Item&&) { ++dropped; });
  Run r = timed(
      [&] {
        for (Item i = 0; i < n; ++i) (void)q.try_push(Item{i});
        q.close();
        return std::uint64_t{0};
      },
      [&] {
        Run rr;
        for (;;) {
          auto v = q.pop_for(std::chrono::milliseconds(100));
          if (!v) {
            if (q.closed() && q.size() == 0) break;
            continue;
          }
          rr.delivered++;
          work(kWorkSpins);
        }
        return rr;
      });
  r.dropped = dropped;
  return r;
}

Run boost_spsc_overflow(std::uint64_t n) {
  boost::lockfree::spsc_queue<Item, boost::lockfree::capacity<64>> q;
  std::atomic<bool> done{false};
  return timed(
      [&] {
        std::uint64_t dropped = 0;
        for (Item i = 0; i < n; ++i) dropped += !q.push(i);
        done = true;
        return dropped;
      },
      [&] {
        Run r;
        Item v;
        for (;;) {
          if (q.pop(v)) {
            r.delivered++;
            work(kWorkSpins);
          } else if (done.load()) {
            if (!q.pop(v)) break;
            r.delivered++;
          }
        }
        return r;
      });
}

Run mutex_overflow(std::uint64_t n) {
  MutexDeque q(64);
  std::atomic<bool> done{false};
  return timed(
      [&] {
        std::uint64_t dropped = 0;
        for (Item i = 0; i < n; ++i) dropped += q.push_drop_head(i);
        done = true;
        return dropped;
      },
      [&] {
        Run r;
        Item v;
        for (;;) {
          if (q.pop_for(v, std::chrono::milliseconds(1))) {
            r.delivered++;
            work(kWorkSpins);
          } else if (done.load()) {
            break;
          }
        }
        return r;
      });
}

// ---- slow consumer ---------------------------------------------------------------

constexpr std::size_t kWakeCapacity = 16;
constexpr auto kWakeGap = std::chrono::milliseconds(5);

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

struct WakeRun {
  double cpu_share = 0;          // producer CPU time / wall time spent in push
  std::vector<double> wake_us;   // per push: slot freed -> push returned
  bool lost = false;             // a pop found nothing or an item went missing
};

// The queue starts full; the consumer frees one slot every kWakeGap and the producer
// pushes into it, so each of the `pops` pushes blocks until its slot is freed.
WakeRun slow_consumer(int pops, const std::function<void(Item)>& push, const std::function<bool()>& pop) {
  for (Item i = 0; i < kWakeCapacity; ++i) push(i);
  std::vector<Clock::time_point> freed_at(static_cast<std::size_t>(pops));
  int missing = 0;
  std::thread c([&] {
    pin_to(1);
    for (auto& t : freed_at) {
      std::this_thread::sleep_for(kWakeGap);
      t = Clock::now();
      missing += !pop();
    }
  });
  std::vector<Clock::time_point> returned_at(static_cast<std::size_t>(pops));
  Clock::duration blocked{};
  const double cpu0 = thread_cpu_seconds();
  for (std::size_t i = 0; i < returned_at.size(); ++i) {
    const auto t0 = Clock::now();
    push(kWakeCapacity + i);
    returned_at[i] = Clock::now();
    blocked += returned_at[i] - t0;
  }
  const double cpu = thread_cpu_seconds() - cpu0;
  c.join();
  WakeRun r;
  r.cpu_share = cpu / std::chrono::duration<double>(blocked).count();
  for (std::size_t i = 0; i < returned_at.size(); ++i) {
    r.wake_us.push_back(std::chrono::duration<double, std::micro>(returned_at[i] - freed_at[i]).count());
  }
  std::size_t left = 0;
  while (pop()) ++left;
  r.lost = missing != 0 || left != kWakeCapacity;
  return r;
}

WakeRun drophead_slow_consumer(int pops) {
  edgert::DropHeadQueue<Item> q(kWakeCapacity, edgert::OverflowPolicy::block);
  return slow_consumer(
      pops, [&](Item v) { (void)q.push(Item{v}); }, [&] { return q.try_pop().has_value(); });
}

WakeRun mutex_slow_consumer(int pops) {
  MutexDeque q(kWakeCapacity);
  return slow_consumer(
      pops, [&](Item v) { q.push_blocking(v); },
      [&] {
        Item v;
        return q.pop_for(v, std::chrono::milliseconds(0));
      });
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * double(v.size())))];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Case {
  const char* name;
  Run (*fn)(std::uint64_t);
  std::vector<double> mops;  // pushes per second, millions
  Run last;
};

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t items = 5'000'000;
  int rounds = 5;
  int wake_pops = 100;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--items") && i + 1 < argc) {
      items = std::stoull(argv[++i]);
    } else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--wake-pops") && i + 1 < argc) {
      wake_pops = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--items N] [--rounds R] [--wake-pops P] [--json]\n", argv[0]);
      return 2;
    }
  }

  allowed_cpus();  // read the process's CPUs before pinning narrows them
  pin_to(0);       // the producer runs on main's thread
  std::vector<Case> lossless = {{"drophead", drophead_lossless, {}, {}},
                                {"boost_spsc", boost_spsc_lossless, {}, {}},
                                {"mutex_deque", mutex_lossless, {}, {}}};
  std::vector<Case> overflow = {{"drophead", drophead_overflow, {}, {}},
                                {"boost_spsc", boost_spsc_overflow, {}, {}},
                                {"mutex_deque", mutex_overflow, {}, {}}};
  const std::uint64_t expected_sum = items * (items - 1) / 2;
  for (int r = 0; r < rounds; ++r) {
    for (auto* set : {&lossless, &overflow}) {
      for (auto& c : *set) {
        c.last = c.fn(items);
        c.mops.push_back(double(items) / c.last.seconds / 1e6);
        if (set == &lossless && (c.last.delivered != items || c.last.checksum != expected_sum)) {
          std::fprintf(stderr, "%s lost items: %llu of %llu\n", c.name,
                       static_cast<unsigned long long>(c.last.delivered), static_cast<unsigned long long>(items));
          return 1;
        }
      }
    }
  }

  // Slow consumer: per design, the median over rounds of each round's CPU share,
  // median and p99 wake latency.
  struct WakeCase {
    const char* name;
    WakeRun (*fn)(int);
    std::vector<double> cpu, p50, p99;
  };
  std::vector<WakeCase> wake = {{"drophead", drophead_slow_consumer, {}, {}, {}},
                                {"mutex_deque", mutex_slow_consumer, {}, {}, {}}};
  for (int r = 0; r < rounds; ++r) {
    for (auto& w : wake) {
      const WakeRun run = w.fn(wake_pops);
      if (run.lost) {
        std::fprintf(stderr, "%s slow consumer: an item went missing\n", w.name);
        return 1;
      }
      w.cpu.push_back(run.cpu_share);
      w.p50.push_back(percentile(run.wake_us, 0.5));
      w.p99.push_back(percentile(run.wake_us, 0.99));
    }
  }

  auto med = [](const Case& c) { return median(c.mops); };
  const double vs_spsc = med(lossless[0]) / med(lossless[1]);
  const double vs_mutex = med(lossless[0]) / med(lossless[2]);
  const double ovf_vs_mutex = med(overflow[0]) / med(overflow[2]);

  if (json) {
    std::printf("{\"items\": %llu, \"rounds\": %d, \"threads\": {\"producers\": 1, \"consumers\": 1},\n",
                static_cast<unsigned long long>(items), rounds);
    for (auto* set : {&lossless, &overflow}) {
      std::printf("  \"%s\": {", set == &lossless ? "no_overflow_mops" : "overflow_push_mops");
      for (std::size_t i = 0; i < set->size(); ++i) {
        std::printf("%s\"%s\": %.2f", i ? ", " : "", (*set)[i].name, med((*set)[i]));
      }
      std::printf("},\n");
    }
    std::printf("  \"overflow_dropped\": {");
    for (std::size_t i = 0; i < overflow.size(); ++i) {
      std::printf("%s\"%s\": %llu", i ? ", " : "", overflow[i].name,
                  static_cast<unsigned long long>(overflow[i].last.dropped));
    }
    std::printf("},\n  \"slow_consumer\": {\"capacity\": %zu, \"gap_ms\": %lld, \"pushes\": %d",
                kWakeCapacity, static_cast<long long>(kWakeGap.count()), wake_pops);
    for (const auto& w : wake) {
      std::printf(", \"%s\": {\"cpu_share\": %.4f, \"wake_p50_us\": %.1f, \"wake_p99_us\": %.1f}", w.name,
                  median(w.cpu), median(w.p50), median(w.p99));
    }
    std::printf("},\n  \"drophead_vs_boost_spsc\": %.3f,\n  \"drophead_vs_mutex_deque\": %.3f,\n"
                "  \"overflow_drophead_vs_mutex_deque\": %.3f}\n",
                vs_spsc, vs_mutex, ovf_vs_mutex);
    return 0;
  }
  std::printf("queue_bench: %llu items, 1 producer + 1 consumer, median of %d rounds\n\n",
              static_cast<unsigned long long>(items), rounds);
  std::printf("%-12s %22s %22s %16s\n", "queue", "no overflow (Mitems/s)", "overflow (Mpush/s)", "overflow drops");
  for (std::size_t i = 0; i < lossless.size(); ++i) {
    std::printf("%-12s %22.2f %22.2f %16llu\n", lossless[i].name, med(lossless[i]), med(overflow[i]),
                static_cast<unsigned long long>(overflow[i].last.dropped));
  }
  std::printf("\nslow consumer (capacity %zu, one pop every %lld ms, %d blocking pushes):\n", kWakeCapacity,
              static_cast<long long>(kWakeGap.count()), wake_pops);
  std::printf("%-12s %22s %22s %16s\n", "queue", "producer CPU/blocked", "wake p50 (us)", "wake p99 (us)");
  for (const auto& w : wake) {
    std::printf("%-12s %21.2f%% %22.1f %16.1f\n", w.name, 100 * median(w.cpu), median(w.p50), median(w.p99));
  }
  std::printf("\ndrophead_vs_boost_spsc           = %.3f (goal >= 0.5)\n", vs_spsc);
  std::printf("drophead_vs_mutex_deque          = %.3f (goal >= 3)\n", vs_mutex);
  std::printf("overflow_drophead_vs_mutex_deque = %.3f\n", ovf_vs_mutex);
  return 0;
}
