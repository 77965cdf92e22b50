#include <tacit/core/error.hpp>
#include <tacit/core/execution.hpp>

#include <string>

namespace tacit::inline v1 {

Execution Execution::threads(int n) {
  if (n < 1)
    throw InvalidArgument("Execution::threads: n must be >= 1, got " + std::to_string(n));
  auto arena = std::make_shared<tbb::task_arena>(n);
  tbb::task_arena *raw = arena.get();
  return Execution(false, raw, std::move(arena));
}

int Execution::max_concurrency() const {
  if (reference_)
    return 1;
  if (arena_)
    return arena_->max_concurrency();
  return tbb::this_task_arena::max_concurrency();
}

tbb::task_arena &Execution::single_thread() {
  // One per calling thread: reference calls from several threads must not
  // queue for a single slot.
  thread_local tbb::task_arena one(1);
  return one;
}

} // namespace tacit::inline v1
