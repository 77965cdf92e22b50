#pragma once
/// \file execution.hpp
/// Thread control per call. Every public entry point of tacit (operator
/// products, solvers, analyses) takes an `Execution` and runs its work
/// inside the policy's task arena, so a call given `Execution::threads(4)`
/// uses at most 4 threads, whatever the machine has (an MPI rank with 4
/// cores gives tacit exactly those):
///
///   auto four = tacit::Execution::threads(4);        // create once, reuse
///   op.apply(Mode::normal, 1.0, x, 0.0, y, four);
///   SolveOptions o;  o.execution = four;             // a solver's calls
///
///   tbb::task_arena mine(4);                         // or the caller's arena
///   op.apply(Mode::normal, 1.0, x, 0.0, y, tacit::Execution::arena(mine));
///
/// Results do not depend on the policy: every parallel kernel gives the same
/// bits for any number of threads. `Execution::parallel` (the default) runs
/// in the calling thread's arena, so a call made inside `arena.execute(...)`
/// follows that arena too; `Execution::reference` runs the serial reference
/// kernels the tests compare the parallel ones with (one thread).
///
/// Thread safety: an Execution is a small value; copies share the arena of
/// `threads(n)`, and may be used from any number of threads at once.

#include <memory>
#include <type_traits>
#include <utility>

#include <tbb/task_arena.h>

#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

class TACIT_EXPORT Execution {
public:
  /// The parallel kernels, in the calling thread's task arena.
  static const Execution parallel;
  /// The serial reference kernels (operators), or one thread (solvers and
  /// analyses).
  static const Execution reference;

  /// The parallel kernels in an arena of n >= 1 threads, created here and
  /// shared by the copies of the returned value (creating an arena is not
  /// free: make the policy once and reuse it).
  /// \throws InvalidArgument for n < 1.
  static Execution threads(int n);
  /// The parallel kernels in the caller's arena, which must outlive every
  /// call made with the returned value.
  static Execution arena(tbb::task_arena &a) noexcept { return Execution(false, &a, {}); }

  /// Whether this is Execution::reference.
  bool is_reference() const noexcept { return reference_; }
  /// The arena the work runs in, or null for the calling thread's own.
  tbb::task_arena *task_arena() const noexcept { return arena_; }
  /// Threads the work may use: 1 for reference, else the arena's
  /// concurrency (the calling thread's arena when there is none).
  int max_concurrency() const;

  /// f() inside the policy's arena: directly when it has none, or in a
  /// one-thread arena for Execution::reference.
  template <class F> decltype(auto) run(F &&f) const {
    if (arena_)
      return arena_->execute(std::forward<F>(f));
    if (reference_)
      return single_thread().execute(std::forward<F>(f));
    return std::forward<F>(f)();
  }

  friend bool operator==(const Execution &a, const Execution &b) noexcept {
    return a.reference_ == b.reference_ && a.arena_ == b.arena_;
  }

private:
  constexpr explicit Execution(bool reference) noexcept : reference_(reference) {}
  Execution(bool reference, tbb::task_arena *arena,
            std::shared_ptr<tbb::task_arena> owned) noexcept
      : reference_(reference), arena_(arena), owned_(std::move(owned)) {}
  /// An arena of one thread, one per calling thread.
  static tbb::task_arena &single_thread();

  bool reference_ = false;
  tbb::task_arena *arena_ = nullptr;
  std::shared_ptr<tbb::task_arena> owned_; // for threads(n)
};

constinit inline const Execution Execution::parallel{false};
constinit inline const Execution Execution::reference{true};

} // namespace tacit::inline v1
