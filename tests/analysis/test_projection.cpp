#include <catch2/catch.hpp>
#include <tacit/analysis/wellposed.hpp>

#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>

using namespace tacit;

namespace {

/// Independent reference: bisection on the soft-threshold level in long
/// double, then w_i = sign(v_i) max(|v_i| - theta, 0).
template <class T>
std::vector<long double> reference_projection(std::span<const T> v, double r) {
  long double total = 0, hi = 0;
  for (T x : v) {
    total += std::abs(static_cast<long double>(x));
    hi = std::max(hi, std::abs(static_cast<long double>(x)));
  }
  std::vector<long double> w(v.begin(), v.end());
  if (total <= r)
    return w;
  long double lo = 0;
  for (int it = 0; it < 200; ++it) {
    const long double mid = (lo + hi) / 2;
    long double s = 0;
    for (T x : v)
      s += std::max(std::abs(static_cast<long double>(x)) - mid, 0.0L);
    (s > r ? lo : hi) = mid;
  }
  const long double theta = (lo + hi) / 2;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const long double m = std::abs(static_cast<long double>(v[i])) - theta;
    w[i] = m > 0 ? std::copysign(m, static_cast<long double>(v[i])) : 0.0L;
  }
  return w;
}

double l1(std::span<const double> v) {
  double s = 0;
  for (double x : v)
    s += std::abs(x);
  return s;
}

/// KKT conditions of the projection: w = sign(v) max(|v| - theta, 0) for one
/// theta >= 0 common to all entries, and ||w||_1 = r when theta > 0.
void check_kkt(std::span<const double> v, std::span<const double> w, double r) {
  double theta = -1;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (w[i] != 0) {
      CHECK(std::signbit(w[i]) == std::signbit(v[i]));
      const double t = std::abs(v[i]) - std::abs(w[i]);
      if (theta < 0)
        theta = t;
      CHECK(t == Approx(theta).margin(1e-12));
    }
  for (std::size_t i = 0; i < v.size(); ++i)
    if (w[i] == 0 && theta >= 0)
      CHECK(std::abs(v[i]) <= theta + 1e-12);
  CHECK(l1(w) == Approx(r).epsilon(1e-12));
}

} // namespace

TEST_CASE("l1-ball projection matches a bisection reference and the KKT conditions",
          "[wellposed]") {
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> u(-3, 3);
  std::uniform_int_distribution<int> len(1, 200);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<double> v(static_cast<std::size_t>(len(rng)));
    for (auto &x : v)
      x = u(rng);
    if (trial % 5 == 0)
      for (std::size_t i = 0; i < v.size(); i += 3)
        v[i] = 0; // explicit zeros
    if (trial % 7 == 0)
      for (std::size_t i = 0; i < v.size(); i += 2)
        v[i] = 1.5; // ties
    const double norm = l1(v);
    const double r = norm * std::uniform_real_distribution<double>(0.01, 1.2)(rng);
    std::vector<double> w = v;
    const bool changed = project_l1_ball(std::span<double>(w), r);
    CHECK(changed == (norm > r));
    const auto ref = reference_projection<double>(v, r);
    double scale = 0;
    for (double x : v)
      scale = std::max(scale, std::abs(x));
    for (std::size_t i = 0; i < v.size(); ++i)
      REQUIRE(static_cast<long double>(w[i]) == Approx(ref[i]).margin(1e-12 * scale));
    if (changed) {
      check_kkt(v, w, r);
      CHECK(l1(w) <= r * (1 + 1e-12));
    } else {
      CHECK(std::memcmp(w.data(), v.data(), v.size() * sizeof(double)) == 0);
    }
  }
}

TEST_CASE("l1-ball projection edge cases", "[wellposed]") {
  SECTION("equal entries") {
    std::vector<double> v(10, 1.0);
    v[3] = -1.0;
    CHECK(project_l1_ball(std::span<double>(v), 2.5));
    for (std::size_t i = 0; i < v.size(); ++i)
      CHECK(v[i] == Approx(i == 3 ? -0.25 : 0.25));
  }
  SECTION("one dominant entry") {
    std::vector<double> v = {0.1, -10, 0.2};
    CHECK(project_l1_ball(std::span<double>(v), 1.0));
    CHECK(v[0] == 0);
    CHECK(v[1] == Approx(-1.0));
    CHECK(v[2] == 0);
  }
  SECTION("radius 0 gives zeros, infinite radius changes nothing") {
    std::vector<double> v = {0.1, -10, 0.2};
    auto w = v;
    CHECK(
        !project_l1_ball(std::span<double>(w), std::numeric_limits<double>::infinity()));
    CHECK(w == v);
    CHECK(project_l1_ball(std::span<double>(w), 0.0));
    CHECK(w == std::vector<double>(3, 0.0));
  }
  SECTION("empty and all-zero vectors are inside") {
    std::vector<double> e;
    CHECK(!project_l1_ball(std::span<double>(e), 1.0));
    std::vector<double> z(4, 0.0);
    CHECK(!project_l1_ball(std::span<double>(z), 0.0));
  }
  SECTION("bad radius") {
    std::vector<double> v = {1, 2};
    CHECK_THROWS_AS(project_l1_ball(std::span<double>(v), -1.0), InvalidArgument);
    CHECK_THROWS_AS(project_l1_ball(std::span<double>(v), std::nan("")), InvalidArgument);
  }
  SECTION("float") {
    std::mt19937 rng(8);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> v(57);
    for (auto &x : v)
      x = u(rng);
    auto w = v;
    CHECK(project_l1_ball(std::span<float>(w), 3.0f));
    const auto ref = reference_projection<float>(v, 3.0);
    double s = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      CHECK(static_cast<long double>(w[i]) == Approx(ref[i]).margin(1e-6));
      s += std::abs(w[i]);
    }
    CHECK(s <= 3.0 * (1 + 1e-5));
  }
}

namespace {
CsrMatrix<double> random_rows(index_t rows, index_t cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<index_t> c(0, cols - 1), len(0, 40);
  std::vector<Triplet<double>> t;
  for (index_t i = 0; i < rows; ++i) {
    const index_t k = len(rng);
    const double scale = (i % 4 == 0) ? 0.01 : 0.2; // a quarter of rows inside
    for (index_t e = 0; e < k; ++e)
      t.push_back({i, c(rng), scale * u(rng)});
    if (i % 10 == 0)
      t.push_back({i, c(rng), 0.0}); // explicit zeros stay zero
  }
  return CsrMatrix<double>::from_triplets(rows, cols, t);
}
} // namespace

TEST_CASE("Projection onto ||A||_inf <= kappa: exact per row, pattern kept, "
          "deterministic",
          "[wellposed]") {
  const auto A0 = random_rows(3000, 500, 12);
  const double kappa = 1.0;
  auto sums = A0.row_abs_sums();
  const index_t outside =
      std::count_if(sums.begin(), sums.end(), [&](double s) { return s > kappa; });
  REQUIRE(outside > 100);
  REQUIRE(outside < A0.rows());

  auto ref = A0;
  CHECK(project_inf_norm(ref, kappa, Execution::reference) == outside);
  auto one = A0, two = A0;
  index_t c1 = 0, c2 = 0;
  tbb::task_arena(1).execute([&] { c1 = project_inf_norm(one, kappa); });
  tbb::task_arena(2).execute([&] { c2 = project_inf_norm(two, kappa); });
  CHECK(c1 == outside);
  CHECK(c2 == outside);
  const auto nnz = static_cast<std::size_t>(A0.nnz());
  CHECK(std::memcmp(one.values().data(), ref.values().data(), nnz * sizeof(double)) == 0);
  CHECK(std::memcmp(two.values().data(), ref.values().data(), nnz * sizeof(double)) == 0);

  CHECK(norm_inf(two) <= kappa * (1 + 1e-12));
  // Pattern kept; each row is the reference projection of the old row.
  REQUIRE(two.nnz() == A0.nnz());
  for (index_t i = 0; i < A0.rows(); ++i) {
    const auto b = A0.row_ptr()[i], e = A0.row_ptr()[i + 1];
    REQUIRE(two.row_ptr()[i] == b);
    std::span<const double> old_row(A0.values().data() + b,
                                    static_cast<std::size_t>(e - b));
    const auto r = reference_projection<double>(old_row, kappa);
    for (auto k = b; k < e; ++k) {
      REQUIRE(two.column(k) == A0.column(k));
      REQUIRE(static_cast<long double>(two.values()[k]) ==
              Approx(r[k - b]).margin(1e-13));
      if (A0.values()[k] == 0)
        REQUIRE(two.values()[k] == 0);
    }
    if (sums[i] <= kappa)
      REQUIRE(std::memcmp(old_row.data(), two.values().data() + b,
                          old_row.size_bytes()) == 0);
  }
  // A second projection changes nothing.
  CHECK(project_inf_norm(two, kappa) == 0);
}

TEST_CASE("Projection drops a cached transpose and handles kappa edge cases",
          "[wellposed]") {
  auto A = random_rows(200, 50, 3);
  // Fill the transpose cache with the old values.
  std::vector<double> x(200, 1.0), y(50), y_ref(50);
  A.apply(Mode::transpose, 1.0, std::span<const double>(x), 0.0, std::span<double>(y));
  REQUIRE(project_inf_norm(A, 0.5) > 0);
  A.apply(Mode::transpose, 1.0, std::span<const double>(x), 0.0, std::span<double>(y));
  A.apply(Mode::transpose, 1.0, std::span<const double>(x), 0.0, std::span<double>(y_ref),
          Execution::reference);
  for (index_t j = 0; j < 50; ++j)
    CHECK(y[j] == Approx(y_ref[j]).margin(1e-14));

  auto Z = A;
  CHECK(project_inf_norm(Z, 0.0) > 0);
  for (double v : Z.values())
    CHECK(v == 0);
  CHECK_THROWS_AS(project_inf_norm(A, -0.1), InvalidArgument);
  CHECK_THROWS_AS(project_inf_norm(A, std::nan("")), InvalidArgument);

  auto F = A.cast<float>();
  const auto Ff = F;
  CHECK(project_inf_norm(F, 0.2f) > 0);
  CHECK(norm_inf(F) <= 0.2 * (1 + 1e-5));
  auto Fr = Ff;
  project_inf_norm(Fr, 0.2f, Execution::reference);
  CHECK(std::memcmp(F.values().data(), Fr.values().data(), F.values().size_bytes()) == 0);
}

TEST_CASE("project_matrix and project_model: a projected copy and its report",
          "[wellposed]") {
  const auto A0 = random_rows(300, 300, 6);
  const double kappa = 0.8;
  auto ref = A0;
  const index_t changed = project_inf_norm(ref, kappa);
  REQUIRE(changed > 0);
  long double d2 = 0;
  for (std::size_t k = 0; k < A0.values().size(); ++k) {
    const long double d = (long double)A0.values()[k] - ref.values()[k];
    d2 += d * d;
  }
  const auto nnz_bytes = A0.values().size_bytes();

  ProjectionReport rep;
  const CsrMatrix<double> P = project_matrix(A0, kappa, &rep);
  REQUIRE(P.nnz() == A0.nnz());
  CHECK(std::memcmp(P.values().data(), ref.values().data(), nnz_bytes) == 0);
  CHECK(rep.rows_changed == changed);
  CHECK(rep.norm_before == norm_inf(A0));
  CHECK(rep.norm_after == norm_inf(ref));
  CHECK(rep.norm_after <= kappa * (1 + 1e-12));
  CHECK(rep.distance == Approx(static_cast<double>(std::sqrt(d2))).epsilon(1e-12));
  CHECK(rep.distance > 0);
  // The input is a copy: still the original.
  const auto again = random_rows(300, 300, 6);
  CHECK(std::memcmp(A0.values().data(), again.values().data(), nnz_bytes) == 0);

  auto B = std::make_shared<CsrMatrix<double>>(random_rows(300, 5, 7));
  auto C = std::make_shared<CsrMatrix<double>>(random_rows(4, 300, 8));
  const Model<double> m(std::make_shared<CsrMatrix<double>>(A0), B, C);
  ProjectionReport mrep;
  const Model<double> pm = project_model(m, kappa, &mrep);
  CHECK(mrep.rows_changed == changed);
  CHECK(mrep.distance == rep.distance);
  CHECK(pm.B_ptr() == m.B_ptr()); // shared, not copied
  CHECK(pm.C_ptr() == m.C_ptr());
  CHECK(pm.blocks().size() == m.blocks().size());
  const CsrMatrix<double> PA = pm.A().to_csr();
  CHECK(std::memcmp(PA.values().data(), ref.values().data(), nnz_bytes) == 0);
  CHECK_THROWS_AS(project_matrix(A0, -1.0), InvalidArgument);
}

namespace {

/// The sort-based projection (Duchi et al. 2008): sort |v| decreasingly, the
/// level is (sum of the first j - r) / j for the largest j whose j-th value
/// exceeds it. Long double throughout.
std::vector<long double> sorted_projection(std::span<const double> v, double r) {
  std::vector<long double> y;
  long double total = 0;
  for (double x : v) {
    y.push_back(std::abs(static_cast<long double>(x)));
    total += y.back();
  }
  std::vector<long double> w(v.begin(), v.end());
  if (total <= r)
    return w;
  std::sort(y.begin(), y.end(), std::greater<>());
  long double sum = 0, theta = 0;
  for (std::size_t j = 0; j < y.size(); ++j) {
    sum += y[j];
    const long double t = (sum - r) / static_cast<long double>(j + 1);
    if (y[j] > t)
      theta = t;
  }
  for (std::size_t i = 0; i < v.size(); ++i) {
    const long double m = std::abs(static_cast<long double>(v[i])) - theta;
    w[i] = m > 0 ? std::copysign(m, static_cast<long double>(v[i])) : 0.0L;
  }
  return w;
}

} // namespace

TEST_CASE("l1-ball projection of long rows matches the sort-based projection",
          "[wellposed][projection]") {
  // Rows of 65 to 3,000 entries (the long-row path: Michelot passes over the
  // whole row, Condat's algorithm when they do not settle) just outside the
  // ball, far outside it, with heavy tails, zeros and ties.
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> len(65, 3000);
  for (int trial = 0; trial < 120; ++trial) {
    std::vector<double> v(static_cast<std::size_t>(len(rng)));
    for (auto &x : v) {
      x = normal(rng);
      if (trial % 3 == 2)
        x = x * x * x * x * x; // heavy tails: many Michelot passes
    }
    if (trial % 4 == 1)
      for (std::size_t i = 0; i < v.size(); i += 3)
        v[i] = 0;
    if (trial % 5 == 2)
      for (std::size_t i = 0; i < v.size(); i += 2)
        v[i] = -0.75;
    const double norm = l1(v);
    const double factor[] = {0.999, 0.9, 0.3, 0.01};
    const double r = norm * factor[trial % 4];
    std::vector<double> w = v;
    REQUIRE(project_l1_ball(std::span<double>(w), r));
    const auto ref = sorted_projection(v, r);
    double scale = 0;
    for (double x : v)
      scale = std::max(scale, std::abs(x));
    for (std::size_t i = 0; i < v.size(); ++i)
      REQUIRE(static_cast<long double>(w[i]) == Approx(ref[i]).margin(1e-12 * scale));
    CHECK(l1(w) <= r * (1 + 1e-12));
    if (trial % 3 != 2)
      check_kkt(v, w, r);
    // Projecting again changes nothing.
    std::vector<double> again = w;
    CHECK_FALSE(project_l1_ball(std::span<double>(again), r));
  }
}

TEST_CASE("l1-ball projection of long float rows matches the sort-based projection",
          "[wellposed][projection]") {
  std::mt19937_64 rng(12);
  std::normal_distribution<float> normal;
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<float> v(static_cast<std::size_t>(100 + 37 * trial));
    for (auto &x : v)
      x = normal(rng);
    std::vector<double> vd(v.begin(), v.end());
    const double factor[] = {0.999, 0.9, 0.3, 0.01};
    const float r = static_cast<float>(l1(vd) * factor[trial % 4]);
    std::vector<float> w = v;
    REQUIRE(project_l1_ball(std::span<float>(w), r));
    const auto ref = sorted_projection(vd, r);
    double sum = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      REQUIRE(static_cast<long double>(w[i]) == Approx(ref[i]).margin(1e-5));
      sum += std::abs(static_cast<double>(w[i]));
    }
    CHECK(sum <= r * (1 + 1e-6));
    std::vector<float> again = w;
    CHECK_FALSE(project_l1_ball(std::span<float>(again), r));
  }
}
