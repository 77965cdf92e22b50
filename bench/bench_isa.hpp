#pragma once
// Instruction-set levels in the benchmarks: every figure runs once per level
// this machine supports (argument `isa`: 0 generic, 1 avx2, 2 avx512), in the
// same process, and the context printed before the results names the CPU's
// features, the levels run and those it cannot run.

#include <benchmark/benchmark.h>

#include <tacit/core/isa.hpp>

#include <string>
#include <vector>

namespace tacit::bench {

/// The supported levels as benchmark arguments.
inline std::vector<std::int64_t> isa_levels() {
  std::vector<std::int64_t> out;
  for (Isa isa : supported_isas())
    out.push_back(static_cast<std::int64_t>(isa));
  return out;
}

/// Makes `level` active for a benchmark's lifetime (restores the previous one).
class IsaScope {
public:
  explicit IsaScope(std::int64_t level) : saved_(active_isa()) {
    set_isa(static_cast<Isa>(level));
  }
  ~IsaScope() { set_isa(saved_); }
  IsaScope(const IsaScope &) = delete;
  IsaScope &operator=(const IsaScope &) = delete;

private:
  Isa saved_;
};

/// Adds the CPU and the levels to the benchmark context (call before
/// benchmark::RunSpecifiedBenchmarks, e.g. from a static initialiser).
inline bool add_isa_context() {
  std::string run, not_run;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    (isa_supported(isa) ? run : not_run) += (std::string(" ") + to_string(isa));
  benchmark::AddCustomContext("tacit_cpu_features", cpu_features());
  benchmark::AddCustomContext("tacit_isa_levels_run", run.empty() ? "-" : run.substr(1));
  benchmark::AddCustomContext(
      "tacit_isa_levels_not_run",
      not_run.empty() ? "none" : not_run.substr(1) + " (this CPU cannot run them)");
  return true;
}

} // namespace tacit::bench
