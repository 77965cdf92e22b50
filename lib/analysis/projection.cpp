// Exact Euclidean projections onto the l1 ball and, row by row, onto
// {||A||_inf <= kappa}.
//
// Projecting v onto {||w||_1 <= a} soft-thresholds it: w_i = sign(v_i)
// max(|v_i| - theta, 0) with theta the level where sum_i max(|v_i| - theta, 0)
// = a. Theta comes from Michelot's method on short vectors (a few passes,
// each dropping the entries at or below the current level) and from Condat's
// algorithm on long ones (expected O(k), "Fast projection onto the simplex
// and the l1 ball", Math. Program. 2016), in both cases recomputed from the
// final active set, so the result is the exact projection up to the rounding
// of the final formula. The rows of A are independent problems, and the
// entries of a row that are not stored are zero and stay zero
// (|0| - theta <= 0), so projecting the stored values row by row is the exact
// Frobenius projection.

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/format.hpp>

#include "core/detail/csr_schedule.hpp"
#include "core/detail/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

namespace tacit::inline v1 {

namespace {

/// Scratch for one projection: buffers of the vector's length.
template <class T> struct L1Scratch {
  std::vector<double> active, waiting;
  std::vector<T> out;
  void reserve(std::size_t k) {
    if (active.size() < k) {
      active.resize(k);
      waiting.resize(k);
      out.resize(k);
    }
  }
};

/// The soft-threshold level theta > 0 of |v| for radius a, assuming
/// sum |v_i| > a > 0 (so that theta lies in (0, max |v_i|)).
/// Rows up to this length use Michelot's method (few cheap passes, O(k^2) at
/// worst), longer ones Condat's (expected O(k), but a division per element).
constexpr std::size_t michelot_max_length = 64;

template <class T>
double l1_threshold(const T *v, std::size_t k, double a, L1Scratch<T> &s) {
  double *active = s.active.data();
  double *waiting = s.waiting.data();
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

template <class T> double abs_sum(const T *v, std::size_t k) {
  double s = 0;
  for (std::size_t i = 0; i < k; ++i)
    s += std::abs(static_cast<double>(v[i]));
  return s;
}

/// Projects v (length k) onto the l1 ball of radius a; true when v changed.
template <class T> bool project_row(T *v, std::size_t k, double a, L1Scratch<T> &s) {
  if (k == 0 || abs_sum(v, k) <= a)
    return false;
  if (a == 0) {
    std::fill(v, v + k, T(0));
    return true;
  }
  double theta = l1_threshold(v, k, a, s);
  // The exact projection has ||w||_1 = a; rounding may leave the computed
  // sum a few ulps above. Nudge theta up until it is not, so that the result
  // is feasible as computed and projecting again changes nothing.
  T *w = s.out.data();
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::size_t active = 0;
    for (std::size_t i = 0; i < k; ++i) {
      const double x = static_cast<double>(v[i]);
      const double m = std::abs(x) - theta;
      w[i] = m > 0 ? static_cast<T>(std::copysign(m, x)) : T(0);
      active += w[i] != T(0);
    }
    const double excess = abs_sum(w, k) - a;
    if (excess <= 0 || active == 0)
      break;
    theta = std::max(theta + excess / static_cast<double>(active),
                     std::nextafter(theta, std::numeric_limits<double>::infinity()));
  }
  std::copy(w, w + k, v);
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
