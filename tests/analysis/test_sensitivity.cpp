#include <catch2/catch.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/analysis/sensitivity.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/operators/structured.hpp>

#include <Eigen/Dense>
#include <tbb/task_arena.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

using namespace tacit;

namespace {

using Mat = Eigen::MatrixXd;

Mat dense_abs(const LinearOperator<double> &op) {
  const CsrMatrix<double> m = op.to_csr();
  const auto d = m.to_dense();
  Mat out(m.rows(), m.cols());
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t j = 0; j < m.cols(); ++j)
      out(i, j) = std::abs(d[static_cast<std::size_t>(i * m.cols() + j)]);
  return out;
}

/// Independent reference: S = |C| (I - |A|)^-1 |B| + |D| by dense Eigen.
Mat dense_sensitivity(const Model<double> &m, Mat *resolvent = nullptr) {
  const index_t n = m.states();
  const Mat A = dense_abs(m.A());
  const Mat R = (Mat::Identity(n, n) - A).inverse();
  if (resolvent)
    *resolvent = R;
  Mat S = dense_abs(m.C()) * R * dense_abs(m.B());
  if (m.D())
    S += dense_abs(*m.D());
  return S;
}

double rel_diff(const Mat &a, const Mat &b) {
  const double scale = std::max(b.cwiseAbs().maxCoeff(), 1e-300);
  return (a - b).cwiseAbs().maxCoeff() / scale;
}

Mat to_mat(const std::vector<double> &v, index_t rows, index_t cols) {
  Mat out(rows, cols);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      out(i, j) = v[static_cast<std::size_t>(i * cols + j)];
  return out;
}

Model<double> with_activation(const Model<double> &m, Activation a) {
  std::vector<StateBlock> blocks = m.blocks();
  for (auto &b : blocks)
    b.activation = a;
  return Model<double>(m.A_ptr(), m.B_ptr(), m.C_ptr(), m.D_ptr(),
                       {m.bias_x().begin(), m.bias_x().end()},
                       {m.bias_y().begin(), m.bias_y().end()}, blocks);
}

/// A small truly implicit model (lambda_PF(|A|) close to 0.9) with D != 0.
Model<double> implicit_model(std::uint64_t seed = 3) {
  const auto base = random_implicit_model<double>(40, 9, 4, 6, 0.9, seed);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> d(4 * 9);
  for (auto &x : d)
    x = u(rng);
  auto D = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_dense(4, 9, d));
  return Model<double>(base.A_ptr(), base.B_ptr(), base.C_ptr(), D,
                       {base.bias_x().begin(), base.bias_x().end()},
                       {base.bias_y().begin(), base.bias_y().end()}, base.blocks());
}

/// A small ResNet-like feed-forward model (nilpotent CSR A).
Model<double> feedforward_model() {
  ResNetLikeShape shape;
  shape.image = 4;
  shape.input_channels = 2;
  shape.stage_channels = {2, 3};
  shape.stage_layers = {3, 2};
  shape.classes = 3;
  return resnet_like_model<double>(shape, 7);
}

/// Feed-forward with self-loops |a_ii| < 1 (singleton SCCs with a diagonal).
Model<double> self_loop_model() {
  const index_t n = 12, p = 3, q = 2;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Triplet<double>> ta, tb, tc;
  for (index_t i = 0; i < n; ++i) {
    ta.push_back({i, i, 0.8 * u(rng)});
    for (index_t j = 0; j < i; ++j)
      if (u(rng) > 0.3)
        ta.push_back({i, j, 0.5 * u(rng)});
    for (index_t j = 0; j < p; ++j)
      tb.push_back({i, j, u(rng)});
  }
  for (index_t k = 0; k < q; ++k)
    for (index_t j = 0; j < n; ++j)
      tc.push_back({k, j, u(rng)});
  return Model<double>(
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, n, ta)),
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, p, tb)),
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(q, n, tc)));
}

std::shared_ptr<const LinearOperator<double>>
random_dense_op(index_t r, index_t c, double scale, std::mt19937 &rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(static_cast<std::size_t>(r * c));
  for (auto &x : v)
    x = scale * u(rng);
  return std::make_shared<DenseOperator<double>>(r, c, v);
}

/// A structured model: A a BlockOperator over 4 state blocks, block lower
/// triangular, with two entries summed at one position and (optionally) a
/// cyclic diagonal block.
Model<double> block_model(bool diagonal_block) {
  std::mt19937 rng(11);
  const std::vector<index_t> sizes = {5, 4, 6, 3};
  std::vector<BlockEntry<double>> e;
  e.push_back({1, 0, random_dense_op(4, 5, 0.5, rng)});
  e.push_back({2, 0, random_dense_op(6, 5, 0.3, rng)});
  e.push_back({2, 1, random_dense_op(6, 4, 0.5, rng)});
  e.push_back({2, 1, random_dense_op(6, 4, 0.5, rng)}); // summed with the previous
  e.push_back({3, 2, random_dense_op(3, 6, 0.5, rng)});
  if (diagonal_block) {
    // |A_11| with row sums 0.8 and a cycle.
    std::vector<Triplet<double>> t;
    for (index_t i = 0; i < 4; ++i) {
      t.push_back({i, (i + 1) % 4, 0.5});
      t.push_back({i, (i + 2) % 4, -0.3});
    }
    e.push_back(
        {1, 1,
         std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(4, 4, t))});
  }
  auto A = std::make_shared<BlockOperator<double>>(sizes, sizes, e);
  auto B = std::make_shared<CsrMatrix<double>>(random_dense_op(18, 7, 1, rng)->to_csr());
  auto C = std::make_shared<CsrMatrix<double>>(random_dense_op(3, 18, 1, rng)->to_csr());
  return Model<double>(A, B, C);
}

/// Checks every product of S against the dense reference.
void check_against_dense(const Model<double> &m, SensitivityMethod method,
                         double tol = 1e-12) {
  SensitivityOptions o;
  o.method = method;
  const SensitivityOperator<double> S(m, o);
  INFO("method " << to_string(S.method()) << ": " << S.method_reason());
  const Mat ref = dense_sensitivity(m);
  const index_t p = m.inputs(), q = m.outputs();
  REQUIRE(S.rows() == q);
  REQUIRE(S.cols() == p);
  if (method != SensitivityMethod::automatic)
    CHECK(S.method() == method);

  // All rows, as a dense array and through to_csr().
  CHECK(rel_diff(to_mat(S.rows_dense(), q, p), ref) <= tol);
  CHECK(rel_diff(to_mat(S.to_csr().to_dense(), q, p), ref) <= tol);
  // Single rows and top-k.
  for (index_t k = 0; k < q; ++k) {
    const Mat row = to_mat(S.row(k), 1, p);
    CHECK(rel_diff(row, ref.row(k)) <= tol);
    const TopEntries top = S.top_entries(k, 3);
    REQUIRE(top.indices.size() == std::min<std::size_t>(3, std::size_t(p)));
    std::vector<index_t> idx(static_cast<std::size_t>(p));
    std::iota(idx.begin(), idx.end(), index_t(0));
    std::stable_sort(idx.begin(), idx.end(),
                     [&](index_t a, index_t b) { return ref(k, a) > ref(k, b); });
    for (std::size_t t = 0; t < top.indices.size(); ++t) {
      CHECK(top.values[t] == Approx(ref(k, top.indices[t])).epsilon(1e-10));
      CHECK(top.values[t] == Approx(ref(k, idx[t])).epsilon(1e-10));
    }
  }
  // Products with several signed vectors, both ways, with alpha and beta.
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-1, 1);
  const index_t k = 3;
  Mat X(p, k), W(q, k), Y0(q, k), Z0(p, k);
  for (auto *M : {&X, &W, &Y0, &Z0})
    for (index_t i = 0; i < M->rows(); ++i)
      for (index_t j = 0; j < M->cols(); ++j)
        (*M)(i, j) = u(rng);
  auto rowmajor = [](const Mat &M) {
    std::vector<double> v(static_cast<std::size_t>(M.size()));
    for (index_t i = 0; i < M.rows(); ++i)
      for (index_t j = 0; j < M.cols(); ++j)
        v[static_cast<std::size_t>(i * M.cols() + j)] = M(i, j);
    return v;
  };
  {
    auto x = rowmajor(X), y = rowmajor(Y0);
    S.apply(Mode::normal, 2.0, ConstMatrixView<double>(x.data(), p, k, k), 0.5,
            MatrixView<double>{y.data(), q, k, k});
    CHECK(rel_diff(to_mat(y, q, k), 2 * ref * X + 0.5 * Y0) <= tol);
  }
  {
    auto w = rowmajor(W), z = rowmajor(Z0);
    S.apply(Mode::abs_transpose, 1.0, ConstMatrixView<double>(w.data(), q, k, k), -1.0,
            MatrixView<double>{z.data(), p, k, k});
    CHECK(rel_diff(to_mat(z, p, k), ref.transpose() * W - Z0) <= tol);
  }
  // Absolute sums.
  const auto rs = S.row_abs_sums();
  const auto cs = S.col_abs_sums();
  CHECK(rel_diff(to_mat(std::vector<double>(rs.begin(), rs.end()), q, 1),
                 ref.rowwise().sum()) <= tol);
  CHECK(rel_diff(to_mat(std::vector<double>(cs.begin(), cs.end()), p, 1),
                 ref.colwise().sum().transpose()) <= tol);
  // The same bits for 1 and 2 threads; the reference kernels agree.
  for (Mode mode : {Mode::normal, Mode::transpose}) {
    const index_t in = mode == Mode::normal ? p : q, out = mode == Mode::normal ? q : p;
    auto x = rowmajor(mode == Mode::normal ? X : W);
    std::vector<double> y1(static_cast<std::size_t>(out * k)), y2(y1.size()),
        y3(y1.size());
    auto run = [&](std::vector<double> &y, int threads, Execution exec) {
      tbb::task_arena arena(threads);
      arena.execute([&] {
        S.apply(mode, 1.0, ConstMatrixView<double>(x.data(), in, k, k), 0.0,
                MatrixView<double>{y.data(), out, k, k}, exec);
      });
    };
    run(y1, 1, Execution::parallel);
    run(y2, 2, Execution::parallel);
    run(y3, 1, Execution::reference);
    CHECK(y1 == y2);
    CHECK(rel_diff(to_mat(y1, out, k), to_mat(y3, out, k)) <= 1e-14);
  }
  if (S.method() == SensitivityMethod::iterative) {
    const auto st = S.last_solve();
    CHECK(st.converged);
    CHECK(st.error_bound <= 1e-12);
    CHECK(st.iterations > 1);
  }
}

} // namespace

TEST_CASE("sensitivity: truly implicit model, KLU and iterative against dense",
          "[sensitivity]") {
  const auto m = implicit_model();
  SECTION("auto") {
    const SensitivityOperator<double> S(m);
    CHECK(S.method() == SensitivityMethod::klu);
    CHECK(S.info().lambda_upper < 1);
    CHECK(S.info().lambda_upper > 0.5);
    check_against_dense(m, SensitivityMethod::automatic);
  }
  SECTION("klu") {
    check_against_dense(m, SensitivityMethod::klu);
  }
  SECTION("iterative") {
    check_against_dense(m, SensitivityMethod::iterative);
    SensitivityOptions o;
    o.method = SensitivityMethod::iterative;
    const SensitivityOperator<double> S(m, o);
    CHECK(S.info().theta < 1);
    CHECK(S.info().theta >= S.info().lambda_lower);
    CHECK_FALSE(S.info().exact);
  }
  SECTION("sweep is refused for a cyclic A") {
    SensitivityOptions o;
    o.method = SensitivityMethod::sweep;
    CHECK_THROWS_AS(SensitivityOperator<double>(m, o), NumericalError);
  }
}

TEST_CASE("sensitivity: feed-forward models, every back-end against dense",
          "[sensitivity]") {
  for (const auto &m : {feedforward_model(), self_loop_model()}) {
    INFO("n = " << m.states());
    const SensitivityOperator<double> S(m);
    CHECK(S.method() == SensitivityMethod::sweep);
    CHECK(S.info().exact);
    check_against_dense(m, SensitivityMethod::automatic);
    check_against_dense(m, SensitivityMethod::sweep);
    check_against_dense(m, SensitivityMethod::klu);
    check_against_dense(m, SensitivityMethod::iterative, 1e-11);
  }
}

TEST_CASE("sensitivity: structured block lower triangular A", "[sensitivity]") {
  for (bool diagonal : {false, true}) {
    INFO("diagonal block: " << diagonal);
    const auto m = block_model(diagonal);
    const SensitivityOperator<double> S(m);
    CHECK(S.method() == SensitivityMethod::sweep);
    CHECK(S.info().exact);
    if (diagonal)
      CHECK(S.info().lambda_upper == Approx(0.8).epsilon(1e-3));
    else
      CHECK(S.info().lambda_upper == 0);
    check_against_dense(m, SensitivityMethod::automatic);
    check_against_dense(m, SensitivityMethod::klu);
  }
}

TEST_CASE("sensitivity: refused when lambda_PF(|A|) < 1 is not certified",
          "[sensitivity]") {
  auto B = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(3));
  auto C = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(3));
  SECTION("a cycle with lambda_PF = 1") {
    std::vector<Triplet<double>> t = {{0, 1, 1.0}, {1, 2, -1.0}, {2, 0, 1.0}};
    const Model<double> m(
        std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(3, 3, t)), B,
        C);
    for (auto method : {SensitivityMethod::automatic, SensitivityMethod::klu,
                        SensitivityMethod::iterative}) {
      SensitivityOptions o;
      o.method = method;
      try {
        SensitivityOperator<double> S(m, o);
        FAIL("not refused");
      } catch (const NumericalError &e) {
        CHECK_THAT(e.what(), Catch::Contains("not certified"));
        CHECK_THAT(e.what(), Catch::Contains("lambda_PF(|A|) in ["));
        CHECK(e.value() >= 1); // the upper end of the interval
        CHECK(e.limit() == 1);
      }
    }
  }
  SECTION("a self-loop |a_ii| >= 1") {
    std::vector<Triplet<double>> t = {{0, 0, -1.5}, {1, 0, 0.3}};
    const Model<double> m(
        std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(3, 3, t)), B,
        C);
    CHECK_THROWS_AS(SensitivityOperator<double>(m), NumericalError);
    SensitivityOptions o;
    o.method = SensitivityMethod::sweep;
    CHECK_THROWS_WITH(SensitivityOperator<double>(m, o), Catch::Contains("|a_ii|"));
    CHECK_THROWS_AS(SensitivityOperator<double>(m, o), NumericalError);
  }
}

TEST_CASE("sensitivity: KLU refactorisation on new values", "[sensitivity]") {
  const auto m = implicit_model(4);
  SensitivityOptions o;
  o.method = SensitivityMethod::klu;
  SensitivityOperator<double> S(m, o);
  CsrMatrix<double> A2 = m.A().to_csr();
  for (auto &v : A2.mutable_values())
    v *= -0.7;
  const Model<double> m2(std::make_shared<CsrMatrix<double>>(A2), m.B_ptr(), m.C_ptr(),
                         m.D_ptr());
  S.update_values(m2);
  CHECK(rel_diff(to_mat(S.rows_dense(), m.outputs(), m.inputs()),
                 dense_sensitivity(m2)) <= 1e-12);
  // Another pattern is refused.
  const auto other = implicit_model(9);
  CHECK_THROWS_AS(S.update_values(other), InvalidArgument);
}

TEST_CASE("sensitivity: float precision", "[sensitivity]") {
  const auto m = implicit_model();
  const auto mf = convert_model<float>(m);
  for (auto method : {SensitivityMethod::klu, SensitivityMethod::iterative}) {
    SensitivityOptions o;
    o.method = method;
    const SensitivityOperator<float> S(mf, o);
    const auto rows = S.rows_dense();
    const Mat got =
        to_mat(std::vector<double>(rows.begin(), rows.end()), m.outputs(), m.inputs());
    CHECK(rel_diff(got, dense_sensitivity(m)) <= 1e-4);
  }
}

TEST_CASE("sensitivity: solve_states against the dense resolvent", "[sensitivity]") {
  const auto m = implicit_model();
  Mat R;
  dense_sensitivity(m, &R);
  const SensitivityOperator<double> S(m);
  const index_t n = m.states();
  std::vector<double> r(static_cast<std::size_t>(n * 2));
  for (std::size_t i = 0; i < r.size(); ++i)
    r[i] = std::sin(double(i));
  const Mat rm = to_mat(r, n, 2);
  std::vector<double> w(r.size());
  S.solve_states(ConstMatrixView<double>(r.data(), n, 2, 2),
                 MatrixView<double>{w.data(), n, 2, 2}, false);
  CHECK(rel_diff(to_mat(w, n, 2), R * rm) <= 1e-12);
  // In place, transposed.
  S.solve_states(ConstMatrixView<double>(r.data(), n, 2, 2),
                 MatrixView<double>{r.data(), n, 2, 2}, true);
  CHECK(rel_diff(to_mat(r, n, 2), R.transpose() * rm) <= 1e-12);
}

namespace {

/// Samples u in the box |u - u0| <= sigma and checks the componentwise
/// bounds on outputs and states.
void check_box_soundness(const Model<double> &m, double eps) {
  const SensitivityOperator<double> S(m);
  const BoxBounds<double> bounds = box_bounds(m, S, eps);
  const index_t p = m.inputs(), n = m.states(), q = m.outputs();
  REQUIRE(static_cast<index_t>(bounds.output.size()) == q);
  REQUIRE(static_cast<index_t>(bounds.state.size()) == n);
  // The output bound is S sigma.
  const Mat ref = dense_sensitivity(m);
  for (index_t k = 0; k < q; ++k)
    CHECK(bounds.output[k] == Approx(eps * ref.row(k).sum()).epsilon(1e-12));

  const index_t samples = 64;
  Batch<double> U(p, samples + 1);
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> u0(static_cast<std::size_t>(p));
  for (auto &x : u0)
    x = u(rng);
  for (index_t s = 0; s <= samples; ++s)
    for (index_t j = 0; j < p; ++j) {
      // Many samples at the corners of the box.
      const double d = s % 2 ? (u(rng) > 0 ? 1 : -1) : u(rng);
      U(j, s) = u0[j] + (s == 0 ? 0 : eps * d);
    }
  SolveOptions so;
  so.picard.abs_tol = 1e-14;
  so.picard.rel_tol = 1e-14;
  EquilibriumSolver<double> solver(m, so);
  Batch<double> X, Y;
  REQUIRE(solver.predict(U, X, Y).ok());
  double worst_out = 0, worst_state = 0;
  for (index_t s = 1; s <= samples; ++s) {
    for (index_t k = 0; k < q; ++k) {
      const double d = std::abs(Y(k, s) - Y(k, 0));
      CHECK(d <= bounds.output[k] * (1 + 1e-9) + 1e-12);
      worst_out = std::max(worst_out, d / std::max(bounds.output[k], 1e-300));
    }
    for (index_t i = 0; i < n; ++i) {
      const double d = std::abs(X(i, s) - X(i, 0));
      CHECK(d <= bounds.state[i] * (1 + 1e-9) + 1e-12);
      worst_state = std::max(worst_state, d / std::max(bounds.state[i], 1e-300));
    }
  }
  // The bound is not vacuous: some sample uses a fair part of it.
  CHECK(worst_out > 1e-3);
  CHECK(worst_state > 1e-3);
}

} // namespace

TEST_CASE("sensitivity: sampled soundness of the box bounds", "[sensitivity]") {
  SECTION("relu, implicit") {
    check_box_soundness(implicit_model(), 0.05);
  }
  SECTION("tanh, implicit") {
    check_box_soundness(with_activation(implicit_model(), {ActivationKind::tanh}), 0.1);
  }
  SECTION("relu, feed-forward") {
    check_box_soundness(feedforward_model(), 0.05);
  }
  SECTION("tanh, structured") {
    check_box_soundness(with_activation(block_model(true), {ActivationKind::tanh}), 0.1);
  }
  SECTION("arguments") {
    const auto m = implicit_model();
    const SensitivityOperator<double> S(m);
    const std::vector<double> bad(static_cast<std::size_t>(m.inputs()), -1.0);
    CHECK_THROWS_AS(box_bounds(m, S, std::span<const double>(bad)), InvalidArgument);
    const std::vector<double> shorter(2, 1.0);
    CHECK_THROWS_AS(box_bounds(m, S, std::span<const double>(shorter)), InvalidArgument);
    const auto leaky = with_activation(m, Activation{ActivationKind::leaky_relu, 1.5});
    CHECK_THROWS_AS(box_bounds(leaky, S, 0.1), Unsupported);
  }
}

namespace {

/// Gradients against central finite differences of the outputs.
void check_gradients(const Model<double> &m, double h, double tol) {
  const index_t p = m.inputs(), q = m.outputs(), samples = 3;
  const Batch<double> U = random_batch<double>(p, samples, 8);
  std::vector<index_t> outs(static_cast<std::size_t>(q));
  std::iota(outs.begin(), outs.end(), index_t(0));
  Batch<double> G;
  output_gradients(m, U, outs, G);
  REQUIRE(G.rows() == p);
  REQUIRE(G.cols() == samples * q);
  SolveOptions so;
  so.picard.abs_tol = 1e-15;
  so.picard.rel_tol = 1e-15;
  EquilibriumSolver<double> solver(m, so);
  // Column 2 j: u + h e_j, column 2 j + 1: u - h e_j.
  for (index_t s = 0; s < samples; ++s) {
    Batch<double> V(p, 2 * p);
    for (index_t j = 0; j < p; ++j)
      for (index_t i = 0; i < p; ++i) {
        V(i, 2 * j) = U(i, s) + (i == j ? h : 0);
        V(i, 2 * j + 1) = U(i, s) - (i == j ? h : 0);
      }
    Batch<double> X, Y;
    REQUIRE(solver.predict(V, X, Y).ok());
    double scale = 0, err = 0;
    for (index_t k = 0; k < q; ++k)
      for (index_t j = 0; j < p; ++j) {
        const double fd = (Y(k, 2 * j) - Y(k, 2 * j + 1)) / (2 * h);
        const double g = G(j, s * q + k);
        scale = std::max(scale, std::abs(fd));
        err = std::max(err, std::abs(fd - g));
      }
    INFO("sample " << s << ": max |fd - grad| = " << err << ", scale " << scale);
    CHECK(err <= tol * std::max(scale, 1.0));
  }
}

} // namespace

TEST_CASE("sensitivity: gradients through the equilibrium vs finite differences",
          "[sensitivity]") {
  SECTION("tanh, implicit (iterative)") {
    check_gradients(with_activation(implicit_model(), {ActivationKind::tanh}), 1e-5,
                    1e-7);
  }
  SECTION("relu, implicit") {
    check_gradients(implicit_model(), 1e-7, 1e-6);
  }
  SECTION("relu, feed-forward (sweep)") {
    check_gradients(feedforward_model(), 1e-7, 1e-6);
  }
  SECTION("sigmoid, self-loops (sweep)") {
    check_gradients(with_activation(self_loop_model(), {ActivationKind::sigmoid}), 1e-5,
                    1e-7);
  }
  SECTION("tanh, structured with a diagonal block") {
    check_gradients(with_activation(block_model(true), {ActivationKind::tanh}), 1e-5,
                    1e-7);
  }
}

TEST_CASE("sensitivity: Lipschitz bounds", "[sensitivity]") {
  for (const auto &m :
       {implicit_model(), with_activation(implicit_model(), {ActivationKind::tanh}),
        feedforward_model()}) {
    const SensitivityOperator<double> S(m);
    const Batch<double> U = random_batch<double>(m.inputs(), 16, 3);
    const LipschitzReport r = lipschitz_bounds(m, S, U);
    const Mat ref = dense_sensitivity(m);
    REQUIRE(static_cast<index_t>(r.upper.size()) == m.outputs());
    CHECK(r.samples == 16);
    for (index_t k = 0; k < m.outputs(); ++k) {
      CHECK(r.upper[k] == Approx(ref.row(k).sum()).epsilon(1e-12));
      CHECK(r.lower[k] <= r.upper[k] * (1 + 1e-12));
      CHECK(r.lower[k] > 0);
      CHECK(r.argmax[k] >= 0);
    }
  }
}

TEST_CASE("sensitivity: top_entries against a full stable sort", "[sensitivity]") {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> level(0, 6); // few distinct values: many ties
  for (const index_t size : {0, 1, 7, 50}) {
    std::vector<double> v(static_cast<std::size_t>(size));
    for (auto &x : v)
      x = 0.5 * level(rng);
    // Reference: every index by decreasing value, ties in index order.
    std::vector<index_t> order(v.size());
    std::iota(order.begin(), order.end(), index_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](index_t a, index_t b) { return v[a] > v[b]; });
    const std::vector<float> vf(v.begin(), v.end());
    for (const index_t count : {index_t(0), index_t(1), index_t(5), size, size + 3}) {
      const TopEntries t = top_entries(std::span<const double>(v), count);
      const TopEntries tf = top_entries(std::span<const float>(vf), count);
      const auto want = static_cast<std::size_t>(std::min(count, size));
      REQUIRE(t.indices.size() == want);
      REQUIRE(t.values.size() == want);
      CHECK(tf.indices == t.indices);
      CHECK(tf.values == t.values);
      for (std::size_t i = 0; i < want; ++i) {
        CHECK(t.indices[i] == order[i]);
        CHECK(t.values[i] == v[static_cast<std::size_t>(order[i])]);
      }
    }
  }
  // The operator's top entries are those of its row.
  const Model<double> m = implicit_model();
  const SensitivityOperator<double> S(m);
  const std::vector<double> row = S.row(2);
  const TopEntries t = S.top_entries(2, 4);
  CHECK(t.indices == top_entries(std::span<const double>(row), 4).indices);
}

TEST_CASE("sensitivity: local Lipschitz lower bounds from sampled gradients",
          "[sensitivity]") {
  const index_t p = 9;
  std::mt19937 urng(4);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> centre(p), lower(p), upper(p);
  for (index_t j = 0; j < p; ++j) {
    centre[j] = u(urng);
    lower[j] = centre[j] - 0.2;
    upper[j] = centre[j] + 0.3;
  }
  SECTION("identity activations: one gradient everywhere, the bound is its norm") {
    const Model<double> m = with_activation(implicit_model(), {ActivationKind::identity});
    // dy/du = C (I - A)^-1 B + D, densely.
    const auto dense = [](const LinearOperator<double> &op) {
      const auto d = op.to_csr().to_dense();
      Mat out(op.rows(), op.cols());
      for (index_t i = 0; i < op.rows(); ++i)
        for (index_t j = 0; j < op.cols(); ++j)
          out(i, j) = d[static_cast<std::size_t>(i * op.cols() + j)];
      return out;
    };
    const index_t n = m.states();
    const Mat J = dense(m.C()) * (Mat::Identity(n, n) - dense(m.A())).inverse() *
                      dense(m.B()) +
                  dense(*m.D());
    std::mt19937_64 rng(3);
    const auto lo = local_lipschitz_lower<double>(m, centre, lower, upper, 4, rng);
    REQUIRE(static_cast<index_t>(lo.size()) == m.outputs());
    for (index_t k = 0; k < m.outputs(); ++k)
      CHECK(lo[k] == Approx(J.row(k).cwiseAbs().sum()).epsilon(1e-10));
  }
  SECTION("relu: the largest gradient norm over the centre and the drawn points") {
    const Model<double> m = implicit_model();
    const index_t q = m.outputs(), samples = 6;
    std::mt19937_64 rng(11), copy(11);
    const auto lo = local_lipschitz_lower<double>(m, centre, lower, upper, samples, rng);
    // Reference: the same points, drawn from a copy of the generator, one
    // gradient at a time.
    std::uniform_real_distribution<double> unit(0, 1);
    std::vector<index_t> outputs(static_cast<std::size_t>(q));
    std::iota(outputs.begin(), outputs.end(), index_t(0));
    std::vector<double> ref(static_cast<std::size_t>(q), 0.0), point = centre;
    for (index_t s = 0; s <= samples; ++s) {
      if (s > 0)
        for (index_t j = 0; j < p; ++j)
          point[j] = lower[j] + unit(copy) * (upper[j] - lower[j]);
      Batch<double> U(p, 1), G;
      U.set_column(0, point);
      output_gradients(m, U, std::span<const index_t>(outputs), G);
      for (index_t k = 0; k < q; ++k) {
        double norm = 0;
        for (index_t j = 0; j < p; ++j)
          norm += std::abs(G(j, k));
        ref[k] = std::max(ref[k], norm);
      }
    }
    const Mat Sd = dense_sensitivity(m);
    for (index_t k = 0; k < q; ++k) {
      CHECK(lo[k] == Approx(ref[k]).epsilon(1e-12));
      CHECK(lo[k] <= Sd.row(k).sum() * (1 + 1e-12)); // below the global bound
    }
    CHECK(rng == copy); // the generator advanced past the drawn points
  }
  SECTION("misuse") {
    const Model<double> m = implicit_model();
    std::mt19937_64 rng(1);
    const std::vector<double> short_box(p - 1, 0.0);
    CHECK_THROWS_AS(local_lipschitz_lower<double>(m, centre, short_box, upper, 2, rng),
                    InvalidArgument);
    CHECK_THROWS_AS(local_lipschitz_lower<double>(m, centre, lower, upper, -1, rng),
                    InvalidArgument);
  }
}

#ifdef TACIT_CLI_PATH
#include <tacit/analysis/bounds.hpp>
#include <tacit/io/image.hpp>
#include <tacit/io/io.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

/// Runs the tacit command in `dir`; returns the exit code, stdout in `out`.
int run_cli(const std::filesystem::path &dir, const std::string &args, std::string &out) {
  const std::string command = "cd '" + dir.string() + "' && '" TACIT_CLI_PATH "' " +
                              args + " > stdout.txt 2> stderr.txt";
  const int status = std::system(command.c_str());
  std::ifstream f(dir / "stdout.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace

TEST_CASE("sensitivity: tacit sensitivity, lipschitz and plot spy",
          "[sensitivity][cli]") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("tacit_sens_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto m = implicit_model();
  save_model_directory(m, dir / "m");
  std::string out;

  // Rows 1 and 3 written with round-trip precision; heat maps in a 1x3x3 shape.
  REQUIRE(run_cli(dir,
                  "sensitivity m --rows 1,3 -o S.txt --json --top 2 --heatmap h_ "
                  "--input-shape 1,3,3",
                  out) == 0);
  const auto doc = nlohmann::json::parse(out);
  CHECK(doc["method"] == "klu");
  CHECK(doc["rows"] == std::vector<int>{1, 3});
  CHECK(doc["top"][0]["indices"].size() == 2);
  const SensitivityOperator<double> S(m);
  const index_t rows[2] = {1, 3};
  const std::vector<double> ref = S.rows_dense(rows);
  const Batch<double> back = read_vectors<double>(dir / "S.txt", m.inputs());
  REQUIRE(back.cols() == 2);
  for (index_t j = 0; j < 2; ++j)
    for (index_t i = 0; i < m.inputs(); ++i)
      CHECK(back(i, j) == ref[static_cast<std::size_t>(j * m.inputs() + i)]);
  const Image h = read_png(dir / "h_3.png");
  CHECK(h.width == h.height);
  CHECK(h.width >= 3);
  CHECK(h.channels == 3);

  // Refusal and bad shapes.
  CHECK(run_cli(dir, "sensitivity m --method sweep", out) == 3);
  CHECK(run_cli(dir, "sensitivity m --heatmap x --input-shape 2,2,2", out) == 1);
  CHECK(run_cli(dir, "sensitivity m --rows 4", out) == 1);

  REQUIRE(run_cli(dir, "lipschitz m --samples 4 --json", out) == 0);
  const auto lip = nlohmann::json::parse(out);
  REQUIRE(lip["outputs"].size() == static_cast<std::size_t>(m.outputs()));
  for (const auto &o : lip["outputs"])
    CHECK(o["lower"].get<double>() <= o["upper"].get<double>());

  // Local bounds on boxes around two inputs: the library's numbers, below the
  // global bound, above the sampled gradients.
  std::vector<double> centre(static_cast<std::size_t>(m.inputs()));
  {
    std::ofstream f(dir / "U.txt");
    f.precision(17);
    for (int c = 0; c < 2; ++c) {
      for (index_t j = 0; j < m.inputs(); ++j)
        f << (j ? " " : "") << 0.1 * double(c + 1) * double(j % 3);
      f << "\n";
    }
  }
  REQUIRE(
      run_cli(dir,
              "lipschitz m --samples 4 --eps 0.05 --input U.txt --local-samples 8 --json",
              out) == 0);
  const auto loc = nlohmann::json::parse(out);
  REQUIRE(loc["local"]["boxes"].size() == 2);
  const BoundAnalyzer<double> analyzer(m);
  for (int c = 0; c < 2; ++c) {
    for (index_t j = 0; j < m.inputs(); ++j)
      centre[static_cast<std::size_t>(j)] = 0.1 * double(c + 1) * double(j % 3);
    const auto nominal = analyzer.nominal(std::span<const double>(centre));
    const LocalLipschitz L = analyzer.local_lipschitz(
        analyzer.linear_state_bounds(nominal, linf_box<double>(centre, 0.05)));
    const auto &box = loc["local"]["boxes"][static_cast<std::size_t>(c)];
    CHECK(box["status"] == "ok");
    for (index_t k = 0; k < m.outputs(); ++k) {
      const auto kk = static_cast<std::size_t>(k);
      CHECK(box["upper"][kk].get<double>() == L.upper[kk]);
      CHECK(box["lower"][kk].get<double>() <= L.upper[kk] * (1 + 1e-12));
      CHECK(box["lower"][kk].get<double>() > 0);
      CHECK(L.upper[kk] <= loc["outputs"][kk]["upper"].get<double>() * (1 + 1e-12));
    }
  }
  CHECK(run_cli(dir, "lipschitz m --input U.txt", out) == 1); // centres without --eps
  CHECK(run_cli(dir, "lipschitz m --eps 0.1", out) == 1);     // --eps without centres
  CHECK(run_cli(dir, "lipschitz m --eps 0.1 --input missing.txt", out) == 2);

  REQUIRE(run_cli(dir, "plot spy m -o A.png --size 20 --json", out) == 0);
  const Image spy = read_png(dir / "A.png");
  CHECK(spy.width == 20);
  CHECK(spy.height == 20);
  CHECK(run_cli(dir, "plot pie m -o A.png", out) == 1);
  std::filesystem::remove_all(dir);
}
#endif
