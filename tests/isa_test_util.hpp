#pragma once
// Runs a test body at every instruction-set level this machine supports (the
// generic level always), and says which levels it cannot run: a CPU without
// AVX-512 (or AVX2) skips those levels with a warning in the test output, not
// silently.

#include <catch2/catch.hpp>

#include <tacit/core/isa.hpp>

#include <string>

namespace tacit::test {

/// Restores the level that was active when it was made.
class IsaGuard {
public:
  IsaGuard() : saved_(active_isa()) {}
  ~IsaGuard() { set_isa(saved_); }
  IsaGuard(const IsaGuard &) = delete;
  IsaGuard &operator=(const IsaGuard &) = delete;

private:
  Isa saved_;
};

/// f(isa) at each supported level, with the level active; a warning names
/// each level the machine cannot run.
template <class F> void for_each_isa(F &&f) {
  IsaGuard guard;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) {
      WARN("ISA level " << to_string(isa) << " not exercised: this CPU cannot run it ("
                        << cpu_features() << ")");
      continue;
    }
    set_isa(isa);
    INFO("ISA level " << to_string(isa));
    f(isa);
  }
}

} // namespace tacit::test
