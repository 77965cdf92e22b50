// Instruction-set levels: the dispatch API, and every kernel family at every
// level this machine supports (tests/isa_test_util.hpp says which it cannot
// run). Levels with FMA (avx2, avx512) must give the same bits; the generic
// level (separate rounding of products and sums) must agree within the
// rounding bound of the sums; every level must give the same bits on 1 and 2
// threads.

#include <catch2/catch.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/core/isa.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include <tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "isa_test_util.hpp"

using namespace tacit;
using tacit::test::for_each_isa;

namespace {

template <class T> std::vector<T> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> v(n);
  for (auto &x : v)
    x = static_cast<T>(u(rng));
  return v;
}

template <class T> bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// Results of one computation per level, checked across levels: FMA levels
/// equal bit for bit, generic within `bound(i)` of them.
template <class T> struct PerLevel {
  std::map<Isa, std::vector<T>> results;

  template <class Bound> void check(Bound &&bound) const {
    const std::vector<T> *fma = nullptr;
    for (Isa isa : {Isa::avx2, Isa::avx512}) {
      const auto it = results.find(isa);
      if (it == results.end())
        continue;
      if (fma) {
        INFO("avx2 against avx512");
        CHECK(same_bits(*fma, it->second));
      }
      fma = &it->second;
    }
    const auto g = results.find(Isa::generic);
    REQUIRE(g != results.end());
    if (!fma)
      return;
    INFO("generic against the FMA levels");
    std::size_t bad = 0;
    for (std::size_t i = 0; i < g->second.size(); ++i) {
      const double d = std::abs(double(g->second[i]) - double((*fma)[i]));
      bad += !(d <= bound(i));
    }
    CHECK(bad == 0);
  }
};

template <class T>
Batch<T> random_batch(index_t rows, index_t cols, index_t width, unsigned seed) {
  Batch<T> b(rows, cols, width);
  const auto v = random_values<T>(static_cast<std::size_t>(rows * cols), seed);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      b(i, j) = v[static_cast<std::size_t>(i * cols + j)];
  return b;
}

template <class T> std::vector<T> flat(const Batch<T> &b) {
  std::vector<T> out;
  for (index_t i = 0; i < b.rows(); ++i)
    for (index_t j = 0; j < b.cols(); ++j)
      out.push_back(b(i, j));
  return out;
}

/// A small convolution with padding and stride (its CSR has twin rows).
Conv2dGeometry small_conv(index_t cin, index_t cout, index_t hw, index_t stride) {
  Conv2dGeometry g;
  g.input = {cin, hw, hw};
  g.out_channels = cout;
  g.kernel_h = g.kernel_w = 3;
  g.stride_h = g.stride_w = stride;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
  return g;
}

/// A ResNet-like network: stem, a residual block, a strided block with a
/// 1x1 convolution shortcut (option B), pooling and a classifier.
template <class T> Model<T> small_resnet() {
  NetworkBuilder<T> b;
  unsigned seed = 5;
  auto conv = [&](auto x, index_t cin, index_t cout, index_t hw, index_t stride,
                  index_t k) {
    Conv2dGeometry g = small_conv(cin, cout, hw, stride);
    g.kernel_h = g.kernel_w = k;
    g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = k / 2;
    auto w = random_values<T>(static_cast<std::size_t>(cout * cin * k * k), seed++);
    for (auto &v : w)
      v *= T(0.4);
    return b.conv2d(x, g, w, random_values<T>(static_cast<std::size_t>(cout), seed++));
  };
  const Activation relu;
  auto u = b.input({3, 10, 10});
  auto x0 = b.activation(conv(u, 3, 12, 10, 1, 3), relu);
  auto x1 = b.activation(conv(x0, 12, 12, 10, 1, 3), relu);
  auto x2 = b.activation(b.add(conv(x1, 12, 12, 10, 1, 3), x0), relu);
  auto x3 = b.activation(conv(x2, 12, 20, 10, 2, 3), relu);
  auto x4 =
      b.activation(b.add(conv(x3, 20, 20, 5, 1, 3), conv(x2, 12, 20, 10, 2, 1)), relu);
  auto pooled = b.flatten(b.global_avg_pool(x4));
  auto out = b.dense(pooled, 7, random_values<T>(7 * 20, 99));
  return b.build(out);
}

} // namespace

TEST_CASE("ISA levels: names, support, choice and override", "[isa]") {
  CHECK(to_string(Isa::generic) == "generic");
  CHECK(to_string(Isa::avx2) == "avx2");
  CHECK(to_string(Isa::avx512) == "avx512");
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    CHECK(parse_isa(to_string(isa)) == isa);
  CHECK_THROWS_AS(parse_isa("sse9"), InvalidArgument);
  CHECK(isa_supported(Isa::generic));
  // The levels nest: a CPU with AVX-512 kernels can run the AVX2 ones.
  if (isa_supported(Isa::avx512))
    CHECK(isa_supported(Isa::avx2));
  const auto levels = supported_isas();
  REQUIRE(!levels.empty());
  CHECK(levels.front() == Isa::generic);
  CHECK(levels.back() == best_isa());
  CHECK(!cpu_features().empty());
  tacit::test::IsaGuard guard;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (isa_supported(isa)) {
      set_isa(isa);
      CHECK(active_isa() == isa);
      CHECK(isa_note() == "set_isa(" + to_string(isa) + ")");
    } else {
      WARN("ISA level " << to_string(isa) << " not exercised: this CPU cannot run it ("
                        << cpu_features() << ")");
      CHECK_THROWS_WITH(set_isa(isa), Catch::Contains("cannot run"));
    }
  }
}

TEMPLATE_TEST_CASE("ISA levels: CSR products agree across levels and thread counts",
                   "[isa][csr]", float, double) {
  using T = TestType;
  // A convolution's matrix (twin rows, the grouped SpMM path) and a random one.
  Conv2dOperator<T> conv(small_conv(6, 10, 9, 1), random_values<T>(10 * 6 * 9, 3));
  std::vector<CsrMatrix<T>> matrices = {conv.to_csr()};
  {
    std::mt19937 rng(4);
    std::uniform_real_distribution<double> u(-1, 1), p(0, 1);
    std::vector<Triplet<T>> t;
    for (index_t i = 0; i < 400; ++i)
      for (index_t j = 0; j < 300; ++j)
        if (p(rng) < 0.08)
          t.push_back({i, j, static_cast<T>(u(rng))});
    matrices.push_back(CsrMatrix<T>::from_triplets(400, 300, t));
    matrices.push_back(CsrMatrix<T>::from_triplets(400, 300, t, IndexWidth::wide64));
  }
  for (std::size_t m = 0; m < matrices.size(); ++m)
    for (index_t k : {1, 3, 8, 17, 33, 64, 70})
      for (index_t width : {index_t(1), index_t(8), index_t(32)})
        for (Mode mode : {Mode::normal, Mode::abs, Mode::transpose}) {
          if (width > k && width != 32)
            continue;
          const auto &A = matrices[m];
          INFO("matrix " << m << " (" << (m == 0 ? "convolution" : "random")
                         << (A.wide_indices() ? ", 64-bit indices" : "") << "), k "
                         << k << ", slab width " << width << ", mode " << int(mode));
          const bool t = is_transposed(mode);
          const index_t in = t ? A.rows() : A.cols(), out = t ? A.cols() : A.rows();
          const Batch<T> x = random_batch<T>(in, k, width, 7);
          PerLevel<T> results;
          std::vector<T> magnitude;
          for_each_isa([&](Isa isa) {
            Batch<T> y1 = random_batch<T>(out, k, width, 8), y2 = y1;
            tbb::task_arena(1).execute([&] { A.apply(mode, T(1.5), x, T(0.5), y1); });
            tbb::task_arena(2).execute([&] { A.apply(mode, T(1.5), x, T(0.5), y2); });
            CHECK(same_bits(flat(y1), flat(y2)));
            results.results[isa] = flat(y1);
            if (magnitude.empty()) {
              // |alpha| |op(A)| |x| + |beta y|: the scale of the sums' rounding.
              Batch<T> ax(in, k, width), ay = random_batch<T>(out, k, width, 8);
              for (index_t i = 0; i < in; ++i)
                for (index_t j = 0; j < k; ++j)
                  ax(i, j) = std::abs(x(i, j));
              for (index_t i = 0; i < out; ++i)
                for (index_t j = 0; j < k; ++j)
                  ay(i, j) = std::abs(ay(i, j));
              A.apply(t ? Mode::abs_transpose : Mode::abs, T(1.5), ax, T(0.5), ay,
                      Execution::reference);
              magnitude = flat(ay);
            }
          });
          const double eps = std::numeric_limits<T>::epsilon();
          results.check([&](std::size_t i) { return 64 * eps * magnitude[i]; });
        }
}

TEMPLATE_TEST_CASE("ISA levels: convolutions agree across levels and thread counts",
                   "[isa][structured]", float, double) {
  using T = TestType;
  for (const auto &g :
       {small_conv(5, 12, 9, 1), small_conv(16, 24, 8, 2), small_conv(3, 8, 11, 1)}) {
    const auto w = random_values<T>(
        static_cast<std::size_t>(g.out_channels * g.input.channels * 9), 11);
    Conv2dOperator<T> op(g, w);
    const auto bias = random_values<T>(static_cast<std::size_t>(op.rows()), 12);
    for (index_t k : {1, 5, 32, 40}) {
      INFO("conv " << g.input.channels << " -> " << g.out_channels << ", k " << k);
      const Batch<T> x = random_batch<T>(op.cols(), k, std::min<index_t>(k, 32), 13);
      const Batch<T> xt = random_batch<T>(op.rows(), k, std::min<index_t>(k, 32), 14);
      const Batch<T> res = random_batch<T>(op.rows(), k, std::min<index_t>(k, 32), 15);
      PerLevel<T> forward, activated, adjoint;
      std::vector<T> mag_fwd, mag_adj;
      for_each_isa([&](Isa isa) {
        auto run = [&](int which, int threads) {
          const bool t = which == 2;
          Batch<T> y =
              random_batch<T>(t ? op.cols() : op.rows(), k, std::min<index_t>(k, 32), 16);
          tbb::task_arena(threads).execute([&] {
            for (index_t s = 0; s < x.slab_count(); ++s) {
              if (which == 0)
                op.apply(Mode::normal, T(1), x.slab(s), T(0.5), y.slab(s));
              else if (which == 1)
                op.apply_activated(T(1), x.slab(s), T(0), y.slab(s), bias, Activation{},
                                   Execution::parallel, res.slab(s), T(1));
              else
                op.apply(Mode::transpose, T(1), xt.slab(s), T(0.5), y.slab(s));
            }
          });
          return flat(y);
        };
        for (int which = 0; which < 3; ++which) {
          const auto one = run(which, 1), two = run(which, 2);
          CHECK(same_bits(one, two));
          (which == 0 ? forward : which == 1 ? activated : adjoint).results[isa] = one;
        }
        if (mag_fwd.empty()) {
          // |W| |x| + |beta y| + |bias| + |residual| bounds every sum.
          Batch<T> ax = x, axt = xt;
          for (auto &v : ax.storage())
            v = std::abs(v);
          for (auto &v : axt.storage())
            v = std::abs(v);
          Batch<T> yf(op.rows(), k, std::min<index_t>(k, 32)),
              ya(op.cols(), k, std::min<index_t>(k, 32));
          for (index_t s = 0; s < x.slab_count(); ++s) {
            op.apply(Mode::abs, T(1), ax.slab(s), T(0), yf.slab(s), Execution::reference);
            op.apply(Mode::abs_transpose, T(1), axt.slab(s), T(0), ya.slab(s),
                     Execution::reference);
          }
          mag_fwd = flat(yf);
          mag_adj = flat(ya);
          for (auto &v : mag_fwd)
            v += 3;
          for (auto &v : mag_adj)
            v += 1;
        }
      });
      const double eps = std::numeric_limits<T>::epsilon();
      const double taps = double(g.input.channels * 9 + 4);
      forward.check([&](std::size_t i) { return 2 * taps * eps * mag_fwd[i]; });
      activated.check([&](std::size_t i) { return 2 * taps * eps * mag_fwd[i]; });
      adjoint.check([&](std::size_t i) {
        return 2 * double(g.out_channels * 9 + 2) * eps * mag_adj[i];
      });
    }
  }
}

TEMPLATE_TEST_CASE("ISA levels: structured and CSR solves of a ResNet-like network "
                   "agree across levels and thread counts",
                   "[isa][solve]", float, double) {
  using T = TestType;
  const Model<T> structured = small_resnet<T>();
  auto to_csr = [](const LinearOperator<T> &op) {
    return std::make_shared<CsrMatrix<T>>(op.to_csr());
  };
  const Model<T> csr(
      to_csr(structured.A()), to_csr(structured.B()), to_csr(structured.C()), nullptr,
      std::vector<T>(structured.bias_x().begin(), structured.bias_x().end()),
      std::vector<T>(structured.bias_y().begin(), structured.bias_y().end()),
      structured.blocks());
  for (index_t k : {1, 9, 40}) {
    INFO("batch " << k);
    const Batch<T> U =
        random_batch<T>(structured.inputs(), k, std::min<index_t>(k, 32), 21);
    for (SolveMethod method : {SolveMethod::sweep, SolveMethod::picard})
      for (const Model<T> *m : {&structured, &csr}) {
        INFO((m == &csr ? "CSR " : "structured ") << to_string(method));
        SolveOptions options;
        options.method = method;
        PerLevel<T> states;
        for_each_isa([&](Isa isa) {
          std::vector<T> bits[2];
          for (int threads : {1, 2}) {
            tbb::task_arena(threads).execute([&] {
              EquilibriumSolver<T> solver(*m, options);
              Batch<T> X;
              REQUIRE(solver.solve(U, X).ok());
              bits[threads - 1] = flat(X);
            });
          }
          CHECK(same_bits(bits[0], bits[1]));
          states.results[isa] = bits[0];
        });
        // Feed-forward: 6 layers of sums of at most 12 * 9 + 1 terms of
        // magnitude below ~10; Picard adds its stopping tolerance.
        const double eps = std::numeric_limits<T>::epsilon();
        const double tol = method == SolveMethod::picard ? 1e-4 : 0;
        states.check([&](std::size_t) { return 1e4 * eps + tol; });
      }
  }
}
