// The Trainable capability of the structured operators (dense, diagonal,
// convolution, composed, block) and of CSR: parameter gradients against an
// independent reference (M is affine in its parameters, so the gradient of
// v^T M x in parameter t is v^T (M(e_t) - M(0)) x, formed with products of a
// clone whose parameters are the unit vector e_t, then zero); the parallel
// kernels give the same bits for any thread count; clones own their
// parameters.
#include <catch2/catch.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/operators/structured.hpp>

#include <tbb/global_control.h>

#include <cmath>
#include <random>
#include <vector>

using namespace tacit;

namespace {

std::vector<double> random_values(std::mt19937_64 &rng, std::size_t n) {
  std::uniform_real_distribution<double> d(-1, 1);
  std::vector<double> v(n);
  for (auto &x : v)
    x = d(rng);
  return v;
}

/// Checks op's accumulate_gradient on random (v, x) of k columns. M is
/// affine in the parameters (fixed operators such as an identity block stay):
/// the gradient in parameter t is v^T (M(e_t) - M(0)) x.
void check_gradient(const LinearOperator<double> &op, index_t k, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const index_t m = op.rows(), n = op.cols();
  const auto vv = random_values(rng, static_cast<std::size_t>(m * k)),
             xv = random_values(rng, static_cast<std::size_t>(n * k));
  const ConstMatrixView<double> v(vv.data(), m, k, k), x(xv.data(), n, k, k);
  const auto *t = capability<Trainable<double>>(op);
  REQUIRE(t);
  const auto shapes = t->parameter_shapes();
  std::vector<std::vector<double>> g(shapes.size()), g_ref(shapes.size());
  std::vector<std::span<double>> spans, spans_ref;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    g[i].assign(static_cast<std::size_t>(shapes[i].size()), 0.5); // accumulates onto 0.5
    g_ref[i].assign(g[i].size(), 0.5);
    spans.push_back(g[i]);
    spans_ref.push_back(g_ref[i]);
  }
  t->accumulate_gradient(v, x, spans, Execution::parallel);
  t->accumulate_gradient(v, x, spans_ref, Execution::reference);
  // The parallel kernels give the same bits for 1 and N threads, and the
  // reference kernel's values up to rounding.
  {
    std::vector<std::vector<double>> g1(shapes.size());
    std::vector<std::span<double>> spans1;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      g1[i].assign(g[i].size(), 0.5);
      spans1.push_back(g1[i]);
    }
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    t->accumulate_gradient(v, x, spans1, Execution::parallel);
    CHECK(g1 == g);
  }
  for (std::size_t i = 0; i < shapes.size(); ++i)
    for (std::size_t e = 0; e < g[i].size(); ++e)
      CHECK(g[i][e] == Approx(g_ref[i][e]).epsilon(1e-13).margin(1e-13));

  // Reference: a clone with parameter e_t.
  auto copy = t->clone();
  auto *ct = capability<Trainable<double>>(*copy);
  auto values = ct->parameter_values();
  REQUIRE(values.size() == shapes.size());
  for (auto &s : values)
    std::fill(s.begin(), s.end(), 0.0);
  std::vector<double> y(static_cast<std::size_t>(m * k));
  // Fixed operators (an identity in a block) add v^T M(0) x to every value.
  ct->parameters_changed();
  copy->apply(Mode::normal, 1.0, x, 0.0, MatrixView<double>{y.data(), m, k, k},
              Execution::reference);
  double fixed = 0;
  for (std::size_t q = 0; q < y.size(); ++q)
    fixed += vv[q] * y[q];
  for (std::size_t ti = 0; ti < values.size(); ++ti)
    for (std::size_t e = 0; e < values[ti].size(); ++e) {
      values[ti][e] = 1;
      ct->parameters_changed();
      copy->apply(Mode::normal, 1.0, x, 0.0, MatrixView<double>{y.data(), m, k, k},
                  Execution::reference);
      double want = 0.5 - fixed;
      for (std::size_t q = 0; q < y.size(); ++q)
        want += vv[q] * y[q];
      values[ti][e] = 0;
      INFO(op.kind() << " tensor " << shapes[ti].name << " value " << e);
      CHECK(g[ti][e] == Approx(want).epsilon(1e-12).margin(1e-12));
    }
}

Conv2dGeometry geometry(TensorShape in, index_t out, index_t k, index_t s, index_t p,
                        index_t d = 1, index_t groups = 1) {
  Conv2dGeometry g;
  g.input = in;
  g.out_channels = out;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = s;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = p;
  g.dilation_h = g.dilation_w = d;
  g.groups = groups;
  return g;
}

std::shared_ptr<Conv2dOperator<double>> conv(std::mt19937_64 &rng, Conv2dGeometry g) {
  const auto w = random_values(
      rng, static_cast<std::size_t>(g.out_channels * (g.input.channels / g.groups) *
                                    g.kernel_h * g.kernel_w));
  return std::make_shared<Conv2dOperator<double>>(g, w);
}

} // namespace

TEST_CASE("Trainable: dense, diagonal and CSR gradients", "[operators][trainable]") {
  std::mt19937_64 rng(1);
  const DenseOperator<double> dense(5, 7, random_values(rng, 35));
  check_gradient(dense, 3, 2);
  check_gradient(dense, 37, 3); // more columns than the accumulator lanes
  const DiagonalOperator<double> diag(random_values(rng, 6));
  check_gradient(diag, 4, 4);
  std::vector<Triplet<double>> t = {
      {0, 1, 0.5}, {0, 4, -1}, {2, 2, 2}, {3, 0, 1}, {3, 4, 3}};
  const auto csr = CsrMatrix<double>::from_triplets(4, 5, t);
  check_gradient(csr, 5, 5);
  CHECK(csr.parameter_shapes().at(0).name == "values");
}

TEST_CASE("Trainable: convolution weight gradients (stride, padding, dilation, groups)",
          "[operators][trainable]") {
  std::mt19937_64 rng(7);
  for (const auto &g :
       {geometry({2, 5, 5}, 3, 3, 1, 1), geometry({2, 6, 5}, 4, 3, 2, 1),
        geometry({4, 5, 5}, 4, 3, 1, 2, 2, 2), geometry({3, 4, 4}, 2, 1, 1, 0),
        geometry({2, 7, 7}, 2, 5, 3, 0)}) {
    const auto c = conv(rng, g);
    check_gradient(*c, 3, 11);
    check_gradient(*c, 33, 12);
    // Wide enough (OW * k >= 256) that v's output rows are read in place.
    check_gradient(*c, 300, 13);
    const auto map = c->row_feature_map();
    REQUIRE(map);
    CHECK((*map)[0] == g.out_channels);
  }
}

TEST_CASE("Trainable: composed and block operators delegate", "[operators][trainable]") {
  std::mt19937_64 rng(9);
  const TensorShape in{2, 4, 4};
  auto c1 = conv(rng, geometry(in, 3, 3, 1, 1));
  auto pool = std::make_shared<AvgPool2dOperator<double>>(
      AvgPool2dOperator<double>::global({3, 4, 4}));
  auto fc = std::make_shared<DenseOperator<double>>(2, 3, random_values(rng, 6));
  auto composed = std::make_shared<ComposedOperator<double>>(fc, pool);
  check_gradient(*composed, 4, 13);
  CHECK(composed->parameter_shapes().at(0).name == "left.weight");

  auto id = std::make_shared<IdentityOperator<double>>(48);
  auto c2 = conv(rng, geometry({3, 4, 4}, 3, 3, 1, 1));
  // Blocks 32 (input), 48, 48; entries: c1 (1,0), c2 and identity (2,1),
  // c1 shared again at (2,0)? (shapes differ: use a fresh conv).
  auto c3 = conv(rng, geometry(in, 3, 3, 1, 1));
  BlockOperator<double> block(
      {32, 48, 48}, {32, 48, 48},
      {{1, 0, c1}, {2, 1, c2}, {2, 1, id}, {2, 0, c3}, {2, 0, c1}});
  // c1 appears twice: its tensor is listed once and gets both contributions.
  const auto shapes = block.parameter_shapes();
  REQUIRE(shapes.size() == 3);
  CHECK(shapes[0].name == "(1,0).weight");
  check_gradient(block, 5, 17);

  // A clone owns its parameters; the original cannot be changed.
  auto copy = block.clone();
  auto *ct = capability<Trainable<double>>(*copy);
  auto vals = ct->parameter_values();
  vals[0][0] += 1;
  ct->parameters_changed();
  CHECK(c1->weights()[0] == Approx(vals[0][0] - 1));
  CHECK_THROWS_AS(const_cast<BlockOperator<double> &>(block).parameter_values(),
                  InvalidArgument);
}
