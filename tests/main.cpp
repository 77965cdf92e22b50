// Catch2's main, with options of our own: --isa LEVEL runs every test with the
// kernels of that instruction-set level (generic, avx2 or avx512; also
// through TACIT_ISA for the commands the tests start). A level this machine
// cannot run is reported and the run exits with code 77 (ctest: skipped); so
// is the best level with --isa-skip-best (the plain run covers it).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include <tacit/core/isa.hpp>

int main(int argc, char **argv) {
  std::vector<char *> args(argv, argv + argc);
  bool skip_best = false;
  for (std::size_t i = 1; i < args.size(); ++i)
    if (std::strcmp(args[i], "--isa-skip-best") == 0) {
      skip_best = true;
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  for (std::size_t i = 1; i + 1 < args.size(); ++i) {
    if (std::strcmp(args[i], "--isa") != 0)
      continue;
    const tacit::Isa isa = tacit::parse_isa(args[i + 1]);
    if (!tacit::isa_supported(isa)) {
      std::cout << "ISA level " << tacit::to_string(isa)
                << " NOT TESTED: this CPU cannot run it (" << tacit::cpu_features()
                << ")\n";
      return 77;
    }
    if (skip_best && isa == tacit::best_isa()) {
      std::cout << "ISA level " << tacit::to_string(isa)
                << ": the best level of this CPU, tested by the plain run\n";
      return 77;
    }
    tacit::set_isa(isa);
    setenv("TACIT_ISA", args[i + 1], 1);
    std::cout << "every test at the ISA level " << tacit::to_string(isa) << "\n";
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
               args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
    break;
  }
  return Catch::Session().run(static_cast<int>(args.size()), args.data());
}
