// Exact Euclidean projections onto the l1 ball and, row by row, onto
// {||A||_inf <= kappa}.
//
// Projecting v onto {||w||_1 <= a} soft-thresholds it: w_i = sign(v_i)
// max(|v_i| - theta, 0) with theta the level where sum_i max(|v_i| - theta, 0)
// = a. Theta comes from Michelot's method on short vectors (a few passes,
// each dropping the entries at or below the current level); on long ones
// from up to six branchless Michelot passes over the whole row (a row just
// outside the ball, the usual case during training, needs one or two), then
// Condat's algorithm (expected O(k), "Fast projection onto the simplex and
// the l1 ball", Math. Program. 2016) when they have not settled; in every
// case recomputed from the final active set, so the result is the exact projection up to
// the rounding of the final formula. The rows of A are independent problems, and the
// entries of a row that are not stored are zero and stay zero
// (|0| - theta <= 0), so projecting the stored values row by row is the exact
// Frobenius projection.

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/format.hpp>

#include "core/detail/csr_schedule.hpp"
#include "core/detail/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

namespace tacit::inline v1 {

namespace {

/// Scratch for one projection: buffers of the vector's length.
template <class T> struct L1Scratch {
  std::vector<double> active, waiting;
  void reserve(std::size_t k) {
    if (active.size() < k) {
      active.resize(k);
      waiting.resize(k);
    }
  }
};

/// The soft-threshold level theta > 0 of |v| for radius a, assuming
/// sum |v_i| > a > 0 (so that theta lies in (0, max |v_i|)).
/// Rows up to this length use Michelot's method (few cheap passes, O(k^2) at
/// worst), longer ones Condat's (expected O(k), but a division per element).
constexpr std::size_t michelot_max_length = 64;

#if defined(__GNUC__)
// Two doubles per vector (SSE2 on x86-64, NEON on AArch64), with GCC's and
// Clang's vector extensions: the row passes below run at the speed of their
// loads rather than of one chain of dependent scalar adds.
using V2d = double __attribute__((vector_size(16)));
using V2i = std::int64_t __attribute__((vector_size(16)));
constexpr bool vector_sums = true;
inline V2d load2(const double *p) {
  V2d x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
inline V2d abs2(V2d x) {
  const V2i magnitude = {std::numeric_limits<std::int64_t>::max(),
                         std::numeric_limits<std::int64_t>::max()};
  return reinterpret_cast<V2d>(reinterpret_cast<V2i>(x) & magnitude);
}
#else
constexpr bool vector_sums = false;
#endif

/// Sum of |v_i| over the entries with |v_i| > theta, and their count: one
/// branchless pass.
template <class T>
double sum_above(const T *v, std::size_t k, double theta, std::size_t &count) {
  double sum = 0;
  std::int64_t c = 0;
  std::size_t i = 0;
#if defined(__GNUC__)
  if constexpr (std::is_same_v<T, double> && vector_sums) {
    V2d a0 = {0, 0}, a1 = {0, 0};
    V2i n0 = {0, 0}, n1 = {0, 0};
    const V2d t = {theta, theta};
    for (; i + 4 <= k; i += 4) {
      const V2d y0 = abs2(load2(v + i)), y1 = abs2(load2(v + i + 2));
      const V2i m0 = y0 > t, m1 = y1 > t; // all ones where above
      a0 += reinterpret_cast<V2d>(reinterpret_cast<V2i>(y0) & m0);
      a1 += reinterpret_cast<V2d>(reinterpret_cast<V2i>(y1) & m1);
      n0 -= m0;
      n1 -= m1;
    }
    const V2d a = a0 + a1;
    const V2i n = n0 + n1;
    sum = a[0] + a[1];
    c = n[0] + n[1];
  }
#endif
  for (; i < k; ++i) {
    const double y = std::abs(static_cast<double>(v[i]));
    sum += y > theta ? y : 0.0;
    c += y > theta;
  }
  count = static_cast<std::size_t>(c);
  return sum;
}

/// Passes of Michelot's method over a long row before Condat's algorithm
/// takes over.
constexpr int michelot_long_passes = 6;

template <class T>
double l1_threshold(const T *v, std::size_t k, double a, double total, L1Scratch<T> &s) {
  double *active = s.active.data();
  double *waiting = s.waiting.data();
  if (k > michelot_max_length) {
    // Michelot's method on the whole row, without moving entries: start from
    // the level of all k entries, keep the entries above the level, repeat
    // until the kept set (which only shrinks) stops changing. Rows just
    // outside the ball (the usual case after a training step) keep almost
    // every entry and stop after one or two branchless passes.
    std::size_t kept = k;
    double theta = (total - a) / static_cast<double>(k);
    for (int pass = 0; pass < michelot_long_passes; ++pass) {
      std::size_t count = 0;
      const double sum = sum_above(v, k, theta, count);
      if (count == 0)
        break;
      const double next = (sum - a) / static_cast<double>(count);
      if (count == kept)
        return std::max(next, 0.0);
      kept = count;
      theta = next;
    }
  }
  if (k <= michelot_max_length) {
    // Michelot: theta of the current set; drop entries at or below it; the
    // set only shrinks and theta only grows until nothing is dropped.
    std::size_t na = 0;
    double sum = 0;
    for (std::size_t i = 0; i < k; ++i) {
      const double y = std::abs(static_cast<double>(v[i]));
      if (y > 0) {
        active[na++] = y;
        sum += y;
      }
    }
    double theta = (sum - a) / static_cast<double>(na);
    for (;;) {
      std::size_t out = 0;
      double kept = 0;
      for (std::size_t j = 0; j < na; ++j) {
        const double y = active[j];
        active[out] = y;
        const bool keep = y > theta;
        out += keep;
        kept += keep ? y : 0.0;
      }
      if (out == na || out == 0)
        break;
      na = out;
      sum = kept;
      theta = (sum - a) / static_cast<double>(na);
    }
    return std::max(theta, 0.0);
  }
  // Condat's pass: `rho` is the threshold of the current candidate set, which
  // only ever keeps elements that may be above the final theta.
  std::size_t na = 0, nw = 0;
  std::size_t first = 0;
  while (first < k && v[first] == T(0))
    ++first;
  active[na++] = std::abs(static_cast<double>(v[first]));
  double rho = active[0] - a;
  for (std::size_t i = first + 1; i < k; ++i) {
    const double y = std::abs(static_cast<double>(v[i]));
    if (y > rho) {
      rho += (y - rho) / static_cast<double>(na + 1);
      if (rho > y - a) {
        active[na++] = y;
      } else {
        for (std::size_t j = 0; j < na; ++j)
          waiting[nw++] = active[j];
        na = 0;
        active[na++] = y;
        rho = y - a;
      }
    }
  }
  for (std::size_t j = 0; j < nw; ++j) {
    const double y = waiting[j];
    if (y > rho) {
      active[na++] = y;
      rho += (y - rho) / static_cast<double>(na);
    }
  }
  // Drop elements at or below the level until the set is stable.
  for (;;) {
    const std::size_t before = na;
    std::size_t out = 0, count = na;
    for (std::size_t j = 0; j < before; ++j) {
      const double y = active[j];
      if (y > rho) {
        active[out++] = y;
      } else if (count > 1) {
        --count;
        rho += (rho - y) / static_cast<double>(count);
      }
    }
    na = out;
    if (na == before || na == 0)
      break;
  }
  // Exact level of the final set, then make sure the set is the one that
  // level selects among all entries (rounding in the incremental updates can
  // only misplace entries within a few ulps of theta).
  double theta = rho;
  if (na > 0) {
    double sum = 0;
    for (std::size_t j = 0; j < na; ++j)
      sum += active[j];
    theta = (sum - a) / static_cast<double>(na);
  }
  for (int round = 0; round < 8; ++round) {
    double sum = 0;
    std::size_t count = 0;
    for (std::size_t i = 0; i < k; ++i) {
      const double y = std::abs(static_cast<double>(v[i]));
      if (y > theta) {
        sum += y;
        ++count;
      }
    }
    if (count == 0)
      break;
    const double next = (sum - a) / static_cast<double>(count);
    if (next == theta)
      break;
    theta = next;
  }
  return std::max(theta, 0.0);
}

/// sum |v_i| (vector lanes and several accumulators, not one chain of
/// dependent adds).
template <class T> double abs_sum(const T *v, std::size_t k) {
  std::size_t i = 0;
  double sum = 0;
#if defined(__GNUC__)
  if constexpr (std::is_same_v<T, double> && vector_sums) {
    V2d a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
    for (; i + 8 <= k; i += 8) {
      a0 += abs2(load2(v + i));
      a1 += abs2(load2(v + i + 2));
      a2 += abs2(load2(v + i + 4));
      a3 += abs2(load2(v + i + 6));
    }
    const V2d a = (a0 + a1) + (a2 + a3);
    sum = a[0] + a[1];
  }
#endif
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (; i + 4 <= k; i += 4) {
    s0 += std::abs(static_cast<double>(v[i]));
    s1 += std::abs(static_cast<double>(v[i + 1]));
    s2 += std::abs(static_cast<double>(v[i + 2]));
    s3 += std::abs(static_cast<double>(v[i + 3]));
  }
  for (; i < k; ++i)
    s0 += std::abs(static_cast<double>(v[i]));
  return sum + ((s0 + s1) + (s2 + s3));
}

/// w = sign(v) max(|v| - theta, 0) (w may be v), returning abs_sum(w, k)
/// bit for bit: the same lanes and accumulators in the same order, fused
/// into the pass that writes w.
template <class T> double threshold_into(const T *v, T *w, std::size_t k, double theta) {
  std::size_t i = 0;
  double sum = 0;
#if defined(__GNUC__)
  if constexpr (std::is_same_v<T, double> && vector_sums) {
    const V2d t = {theta, theta};
    const V2i sign = {std::numeric_limits<std::int64_t>::min(),
                      std::numeric_limits<std::int64_t>::min()};
    auto pair = [&](std::size_t j) {
      const V2d x = load2(v + j);
      const V2d m = abs2(x) - t;
      const V2i keep = m > V2d{0, 0};
      const V2i bits =
          (reinterpret_cast<V2i>(m) | (reinterpret_cast<V2i>(x) & sign)) & keep;
      std::memcpy(w + j, &bits, sizeof bits);
      return abs2(reinterpret_cast<V2d>(bits));
    };
    V2d a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
    for (; i + 8 <= k; i += 8) {
      a0 += pair(i);
      a1 += pair(i + 2);
      a2 += pair(i + 4);
      a3 += pair(i + 6);
    }
    const V2d a = (a0 + a1) + (a2 + a3);
    sum = a[0] + a[1];
  }
#endif
  auto one = [&](std::size_t j) {
    const double x = static_cast<double>(v[j]);
    const double m = std::abs(x) - theta;
    const T wj = static_cast<T>(m > 0 ? std::copysign(m, x) : 0.0);
    w[j] = wj;
    return std::abs(static_cast<double>(wj));
  };
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (; i + 4 <= k; i += 4) {
    s0 += one(i);
    s1 += one(i + 1);
    s2 += one(i + 2);
    s3 += one(i + 3);
  }
  for (; i < k; ++i)
    s0 += one(i);
  return sum + ((s0 + s1) + (s2 + s3));
}

/// Projects v (length k) onto the l1 ball of radius a; true when v changed.
template <class T> bool project_row(T *v, std::size_t k, double a, L1Scratch<T> &s) {
  if (k == 0)
    return false;
  const double total = abs_sum(v, k);
  if (total <= a)
    return false;
  if (a == 0) {
    std::fill(v, v + k, T(0));
    return true;
  }
  double theta = l1_threshold(v, k, a, total, s);
  // The exact projection has ||w||_1 = a; rounding may leave the computed
  // sum a few ulps above. Raise theta by about the rounding of that sum
  // (a few ulps of the entries: a relative change of w near the precision)
  // so that one pass is usually feasible, and nudge it further until the
  // result is feasible as computed and projecting again changes nothing.
  theta += static_cast<double>(std::numeric_limits<T>::epsilon()) *
           (4 * theta + 2 * a / std::sqrt(static_cast<double>(k)));
  // In place: a later nudge thresholds the result again by the small
  // remaining amount.
  double level = theta;
  for (int attempt = 0; attempt < 16; ++attempt) {
    const double excess = threshold_into(v, v, k, level) - a;
    if (excess <= 0)
      break;
    std::size_t active = 0;
    for (std::size_t i = 0; i < k; ++i)
      active += v[i] != T(0);
    if (active == 0)
      break;
    level = std::max(excess / static_cast<double>(active),
                     std::nextafter(0.0, 1.0) +
                         theta * std::numeric_limits<double>::epsilon());
  }
  return true;
}

template <class T> void check_radius(T r, const char *who) {
  if (!(r >= T(0)))
    throw InvalidArgument(std::string(who) + ": the radius must be >= 0, got " +
                          format_number(static_cast<double>(r), 17));
}

} // namespace

template <class T> bool project_l1_ball(std::span<T> v, T radius) {
  check_radius(radius, "project_l1_ball");
  if (std::isinf(radius))
    return false;
  L1Scratch<T> s;
  s.reserve(v.size());
  return project_row(v.data(), v.size(), static_cast<double>(radius), s);
}

template <class T> index_t project_inf_norm(CsrMatrix<T> &A, T kappa, Execution exec) {
  return exec.run([&]() -> index_t {
    check_radius(kappa, "project_inf_norm (kappa)");
    if (std::isinf(kappa))
      return 0;
    const auto rp = A.row_ptr();
    const index_t rows = A.rows();
    std::int64_t longest = 0;
    for (index_t i = 0; i < rows; ++i)
      longest = std::max(longest, rp[i + 1] - rp[i]);
    const double a = static_cast<double>(kappa);
    // Cheap check first: rows already inside keep the matrix (and its cached
    // transpose) untouched.
    auto values_view = A.values();
    auto row_inside = [&](index_t i) {
      return abs_sum(values_view.data() + rp[i],
                     static_cast<std::size_t>(rp[i + 1] - rp[i])) <= a;
    };
    auto project_rows = [&](std::span<T> vals, index_t r0, index_t r1, L1Scratch<T> &s) {
      index_t changed = 0;
      for (index_t i = r0; i < r1; ++i)
        changed += project_row(vals.data() + rp[i],
                               static_cast<std::size_t>(rp[i + 1] - rp[i]), a, s);
      return changed;
    };
    if (exec == Execution::reference) {
      bool any = false;
      for (index_t i = 0; i < rows && !any; ++i)
        any = !row_inside(i);
      if (!any)
        return 0;
      L1Scratch<T> s;
      s.reserve(static_cast<std::size_t>(longest));
      return project_rows(A.mutable_values(), 0, rows, s);
    }
    const int threads = tbb::this_task_arena::max_concurrency();
    const int parts = static_cast<int>(
        std::clamp<index_t>(rows / 64, 1, static_cast<index_t>(threads) * 8));
    std::vector<index_t> bounds(static_cast<std::size_t>(parts) + 1);
    detail::balanced_row_partition(rp, parts, bounds);
    std::vector<char> outside(static_cast<std::size_t>(parts), 0);
    detail::for_tasks(parts, true, [&](index_t p) {
      for (index_t i = bounds[p]; i < bounds[p + 1]; ++i)
        if (!row_inside(i)) {
          outside[p] = 1;
          break;
        }
    });
    if (std::none_of(outside.begin(), outside.end(), [](char c) { return c != 0; }))
      return 0;
    std::span<T> vals = A.mutable_values();
    std::vector<index_t> changed(static_cast<std::size_t>(parts), 0);
    detail::for_tasks(parts, true, [&](index_t p) {
      if (!outside[p])
        return;
      L1Scratch<T> s;
      s.reserve(static_cast<std::size_t>(longest));
      changed[p] = project_rows(vals, bounds[p], bounds[p + 1], s);
    });
    index_t total = 0;
    for (index_t c : changed)
      total += c;
    return total;
  });
}

template bool project_l1_ball(std::span<float>, float);
template bool project_l1_ball(std::span<double>, double);
template <class T>
CsrMatrix<T> project_matrix(const CsrMatrix<T> &A, T kappa, ProjectionReport *report,
                            Execution exec) {
  CsrMatrix<T> P = A;
  const double before = norm_inf(A);
  const index_t changed = project_inf_norm(P, kappa, exec);
  if (report) {
    report->rows_changed = changed;
    report->norm_before = before;
    report->norm_after = norm_inf(P);
    double distance2 = 0;
    const auto a = A.values(), p = P.values();
    for (std::size_t k = 0; k < a.size(); ++k) {
      const double d = static_cast<double>(a[k]) - static_cast<double>(p[k]);
      distance2 += d * d;
    }
    report->distance = std::sqrt(distance2);
  }
  return P;
}

template <class T>
Model<T> project_model(const Model<T> &model, T kappa, ProjectionReport *report,
                       Execution exec) {
  auto A = std::make_shared<CsrMatrix<T>>(
      project_matrix(model.A().to_csr(), kappa, report, exec));
  return Model<T>(std::move(A), model.B_ptr(), model.C_ptr(), model.D_ptr(),
                  {model.bias_x().begin(), model.bias_x().end()},
                  {model.bias_y().begin(), model.bias_y().end()}, model.blocks());
}

template CsrMatrix<float> project_matrix(const CsrMatrix<float> &, float,
                                         ProjectionReport *, Execution);
template CsrMatrix<double> project_matrix(const CsrMatrix<double> &, double,
                                          ProjectionReport *, Execution);
template Model<float> project_model(const Model<float> &, float, ProjectionReport *,
                                    Execution);
template Model<double> project_model(const Model<double> &, double, ProjectionReport *,
                                     Execution);
template index_t project_inf_norm(CsrMatrix<float> &, float, Execution);
template index_t project_inf_norm(CsrMatrix<double> &, double, Execution);

} // namespace tacit::inline v1
