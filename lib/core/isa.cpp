// Instruction-set level of the kernels (see include/tacit/core/isa.hpp).

#include <tacit/core/isa.hpp>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include <tacit/core/error.hpp>

#include "core/detail/isa_dispatch.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define TACIT_X86 1
#else
#define TACIT_X86 0
#endif

namespace tacit::inline v1 {

namespace {

struct CpuFeatures {
  bool avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512vl = false, avx512bw = false, avx512dq = false;
  bool os_ymm = false, os_zmm = false; // the OS saves these registers
};

CpuFeatures detect() {
  CpuFeatures f;
#if TACIT_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return f;
  const bool osxsave = (c >> 27) & 1;
  f.avx = (c >> 28) & 1;
  f.fma = (c >> 12) & 1;
  if (osxsave) {
    // XCR0: bit 1 SSE, bit 2 AVX (ymm upper halves), bits 5-7 opmask and zmm.
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f.os_ymm = (lo & 0x6u) == 0x6u;
    f.os_zmm = f.os_ymm && (lo & 0xe0u) == 0xe0u;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = (b >> 5) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
  }
#endif
  return f;
}

const CpuFeatures &features() {
  static const CpuFeatures f = detect();
  return f;
}

bool supported(Isa isa) {
  const auto &f = features();
  switch (isa) {
  case Isa::generic:
    return true;
  case Isa::avx2:
    return TACIT_X86 && f.os_ymm && f.avx && f.avx2 && f.fma;
  case Isa::avx512:
    return TACIT_X86 && f.os_zmm && f.avx2 && f.fma && f.avx512f && f.avx512vl &&
           f.avx512bw && f.avx512dq;
  }
  return false;
}

/// Why the CPU lacks a level (for notes).
std::string missing(Isa isa) {
  const auto &f = features();
  std::string m;
  auto add = [&](bool have, const char *what) {
    if (!have)
      m += (m.empty() ? "" : ", ") + std::string(what);
  };
  if (!TACIT_X86)
    return "not an x86-64 CPU";
  if (isa == Isa::avx512) {
    add(f.avx512f, "AVX-512F");
    add(f.avx512vl, "AVX-512VL");
    add(f.avx512bw, "AVX-512BW");
    add(f.avx512dq, "AVX-512DQ");
    if (m.empty())
      add(f.os_zmm, "OS support for the zmm registers");
  }
  add(f.avx2, "AVX2");
  add(f.fma, "FMA");
  if (m.empty())
    add(f.os_ymm, "OS support for the ymm registers");
  return m.empty() ? "" : "no " + m;
}

Isa best() {
  for (Isa isa : {Isa::avx512, Isa::avx2})
    if (supported(isa))
      return isa;
  return Isa::generic;
}

std::mutex note_mutex;
std::string note;

/// The start-up choice: TACIT_ISA if set (lowered to a supported level),
/// else the best level.
int initial_level() {
  const Isa top = best();
  const char *env = std::getenv("TACIT_ISA");
  if (!env || !*env)
    return static_cast<int>(top);
  Isa want = top;
  std::string text;
  try {
    want = parse_isa(env);
  } catch (const InvalidArgument &) {
    text = "TACIT_ISA=" + std::string(env) +
           " is not a level (generic, avx2 or avx512); using " + to_string(top);
    std::lock_guard lock(note_mutex);
    note = text;
    return static_cast<int>(top);
  }
  Isa use = want;
  while (!supported(use))
    use = static_cast<Isa>(static_cast<int>(use) - 1);
  if (use == want)
    text = "TACIT_ISA=" + to_string(want);
  else
    text = "TACIT_ISA=" + to_string(want) + " asked for a level this CPU lacks (" +
           missing(want) + "); using " + to_string(use);
  std::lock_guard lock(note_mutex);
  note = text;
  return static_cast<int>(use);
}

} // namespace

namespace detail {
std::atomic<int> &isa_level() noexcept {
  static std::atomic<int> level{initial_level()};
  return level;
}
} // namespace detail

std::string to_string(Isa isa) {
  switch (isa) {
  case Isa::generic:
    return "generic";
  case Isa::avx2:
    return "avx2";
  case Isa::avx512:
    return "avx512";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  if (name == "generic")
    return Isa::generic;
  if (name == "avx2")
    return Isa::avx2;
  if (name == "avx512")
    return Isa::avx512;
  throw InvalidArgument("unknown instruction-set level '" + std::string(name) +
                        "' (expected generic, avx2 or avx512)");
}

bool isa_supported(Isa isa) noexcept {
  return supported(isa);
}

Isa best_isa() noexcept {
  return best();
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    if (supported(isa))
      out.push_back(isa);
  return out;
}

Isa active_isa() noexcept {
  return static_cast<Isa>(detail::isa_level().load(std::memory_order_relaxed));
}

void set_isa(Isa isa) {
  if (static_cast<int>(isa) < 0 || static_cast<int>(isa) > 2)
    throw InvalidArgument("set_isa: not an instruction-set level");
  if (!supported(isa))
    throw InvalidArgument("set_isa: this CPU cannot run the " + to_string(isa) +
                          " kernels (" + missing(isa) + ")");
  detail::isa_level().store(static_cast<int>(isa), std::memory_order_relaxed);
  std::lock_guard lock(note_mutex);
  note = "set_isa(" + to_string(isa) + ")";
}

std::string isa_note() {
  detail::isa_level(); // reads TACIT_ISA first
  std::lock_guard lock(note_mutex);
  return note;
}

std::string cpu_features() {
  const auto &f = features();
  if (!TACIT_X86)
    return "not x86-64: generic kernels only";
  std::string s = f.avx2 ? "AVX2" : "no AVX2";
  s += f.fma ? " FMA" : ", no FMA";
  if (f.avx512f)
    s += std::string(" AVX-512F") + (f.avx512vl ? " VL" : "") +
         (f.avx512bw ? " BW" : "") + (f.avx512dq ? " DQ" : "");
  else
    s += ", no AVX-512F";
  if (!f.os_ymm)
    s += " (the OS does not save the ymm registers)";
  else if (f.avx512f && !f.os_zmm)
    s += " (the OS does not save the zmm registers)";
  return s;
}

} // namespace tacit::inline v1
