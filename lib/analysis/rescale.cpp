// Diagonal rescaling of a model to ||D A D^-1||_inf < 1.
//
// With v > 0 and |A| v <= rho v componentwise, D = diag(v)^-1 gives
// ||D A D^-1||_inf = max_i (|A| v)_i / v_i <= rho. v is built in the SCC
// order (A block lower triangular): for block k, with p > 0 the certified
// Perron vector of the block (|A_kk| p <= u_k p, u_k < rho; p = 1 and
// u_k = |a_ii| for a 1x1 block) and c = |A_k,<k| v_<k what flows in from
// earlier blocks, v_k = t p with
//     t = max(1, max_i 2 c_i / ((rho - u_k) p_i)),
// so that (|A| v)_i / v_i <= u_k + c_i / (t p_i) <= (u_k + rho) / 2 < rho.
// Unlike iterating v <- 1 + |A| v / rho, this costs one sweep and does not
// slow down when lambda_PF(|A|) is close to 1.

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/format.hpp>

#include "analysis/detail/perron.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace tacit::inline v1 {

namespace {

template <class T>
void check_finite(const CsrMatrix<T> &M, const char *name, const std::string &detail) {
  if (const auto e = M.find_non_finite())
    throw NumericalError(std::string("rescale_model: the rescaled ") + name +
                         " overflows the value type at entry (" +
                         std::to_string(e->row + 1) + ", " + std::to_string(e->col + 1) +
                         ")" + detail);
}

} // namespace

template <class T>
Model<T> rescale_model(const Model<T> &model, double target, RescaleReport *report,
                       const PerronOptions &options) {
  return options.exec.run([&]() -> Model<T> {
    for (const auto &b : model.blocks())
      if (!b.activation.positively_homogeneous())
        throw Unsupported("rescale_model: state block '" + b.name + "' (states " +
                          std::to_string(b.offset + 1) + ".." +
                          std::to_string(b.offset + b.size) + ") uses " +
                          b.activation.name() +
                          ", which is not positively homogeneous; diagonal rescaling "
                          "needs phi(d z) = d phi(z) for d > 0 (relu, leaky_relu, "
                          "identity)");
    const auto A_view = csr_view(model.A());
    const CsrMatrix<T> &A = *A_view;
    const index_t n = A.rows();
    const SccDecomposition scc = strongly_connected_components(A);
    std::vector<detail::PerronBlockVector> blocks;
    const PerronBound pf = detail::perron_bound_with_vectors(A, scc, options, &blocks);
    if (!pf.certified())
      throw NumericalError(
          "rescale_model: lambda_PF(|A|) < 1 is not certified, so no "
          "diagonal scaling gives ||D A D^-1||_inf < 1 with certainty: " +
              pf.message,
          pf.upper, 1.0, pf.iterations);
    double rho = target;
    if (target <= 0)
      rho = 0.5 * (pf.upper + 1);
    else if (!(target < 1))
      throw InvalidArgument("rescale_model: target " + format_number(target, 10) +
                            " must lie strictly between the certified upper bound " +
                            format_number(pf.upper, 10) + " of lambda_PF(|A|) and 1");
    else if (!(target > pf.upper))
      throw NumericalError("rescale_model: target " + format_number(target, 10) +
                               " cannot be reached: it must lie strictly between the "
                               "certified upper bound " +
                               format_number(pf.upper, 10) + " of lambda_PF(|A|) and 1",
                           target, pf.upper, pf.iterations);

    // Perron vector entry of every state (1 outside cyclic blocks).
    std::vector<double> p(static_cast<std::size_t>(n), 1.0);
    for (const auto &bv : blocks) {
      if (bv.vector.size() != bv.states.size())
        throw NumericalError("rescale_model: no positive Perron vector was found for a "
                             "cyclic block of " +
                             std::to_string(bv.states.size()) + " states");
      for (std::size_t r = 0; r < bv.states.size(); ++r) {
        if (!(bv.vector[r] > 0))
          throw NumericalError("rescale_model: the Perron vector of a cyclic block has a "
                               "zero entry at state " +
                                   std::to_string(bv.states[r] + 1),
                               bv.vector[r], 0.0);
        p[bv.states[r]] = bv.vector[r];
      }
    }

    // Sweep the blocks level by level; the blocks of a level only read v of
    // earlier levels, and each row's sum has a fixed order, so the result does
    // not depend on the schedule.
    std::vector<double> v(static_cast<std::size_t>(n), 0.0);
    const auto rp = A.row_ptr();
    const auto vals = A.values();
    auto solve_block = [&](index_t b) {
      const double u = blocks[b].upper;
      double t = 1;
      A.visit_columns([&](auto cols) {
        for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k) {
          const index_t i = scc.order[k];
          double inflow = 0;
          for (auto e = rp[i]; e < rp[i + 1]; ++e) {
            const index_t j = cols[e];
            // Stored zeros may point to later blocks (not yet solved).
            if (vals[e] != T(0) && scc.block_of[j] != b)
              inflow += std::abs(static_cast<double>(vals[e])) * v[j];
          }
          t = std::max(t, 2 * inflow / ((rho - u) * p[i]));
        }
      });
      for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k) {
        const index_t i = scc.order[k];
        v[i] = t * p[i];
      }
    };
    const bool parallel = !options.exec.is_reference();
    for (index_t l = 0; l < scc.level_count(); ++l) {
      const index_t b0 = scc.level_ptr[l], b1 = scc.level_ptr[l + 1];
      if (parallel && b1 - b0 > 64)
        tbb::parallel_for(tbb::blocked_range<index_t>(b0, b1, 16),
                          [&](const tbb::blocked_range<index_t> &r) {
                            for (index_t b = r.begin(); b < r.end(); ++b)
                              solve_block(b);
                          });
      else
        for (index_t b = b0; b < b1; ++b)
          solve_block(b);
    }

    // Centre v geometrically so that D and D^-1 stay in range for the value
    // type (only ratios of v matter).
    double vmin = std::numeric_limits<double>::infinity(), vmax = 0;
    for (double x : v) {
      vmin = std::min(vmin, x);
      vmax = std::max(vmax, x);
    }
    if (n > 0) {
      if (!std::isfinite(vmax) || !(vmin > 0))
        throw NumericalError("rescale_model: the scaling vector leaves the range of "
                             "double (the model is too deep or its weights too large to "
                             "rescale)",
                             vmax / vmin);
      const double centre = std::exp(0.5 * (std::log(vmin) + std::log(vmax)));
      for (double &x : v)
        x /= centre;
    }
    const std::string range = " (scaling spans " + format_number(vmax / vmin, 10) + ")";

    // A' = D A D^-1, B' = D B, C' = C D^-1, b' = D b with D = diag(v)^-1.
    CsrMatrix<T> A2 = A;
    {
      auto out = A2.mutable_values();
      A.visit_columns([&](auto cols) {
        tbb::parallel_for(tbb::blocked_range<index_t>(0, n, 4096),
                          [&](const tbb::blocked_range<index_t> &r) {
                            for (index_t i = r.begin(); i < r.end(); ++i)
                              for (auto e = rp[i]; e < rp[i + 1]; ++e)
                                out[e] = static_cast<T>(static_cast<double>(vals[e]) *
                                                        v[cols[e]] / v[i]);
                          });
      });
    }
    CsrMatrix<T> B2 = model.B().to_csr(); // a copy, rescaled in place
    {
      const auto brp = B2.row_ptr();
      auto out = B2.mutable_values();
      for (index_t i = 0; i < n; ++i)
        for (auto e = brp[i]; e < brp[i + 1]; ++e)
          out[e] = static_cast<T>(static_cast<double>(out[e]) / v[i]);
    }
    CsrMatrix<T> C2 = model.C().to_csr();
    {
      auto out = C2.mutable_values();
      C2.visit_columns([&](auto cols) {
        for (std::size_t e = 0; e < out.size(); ++e)
          out[e] = static_cast<T>(static_cast<double>(out[e]) * v[cols[e]]);
      });
    }
    std::vector<T> bx(model.bias_x().begin(), model.bias_x().end());
    for (index_t i = 0; i < n; ++i)
      bx[i] = static_cast<T>(static_cast<double>(bx[i]) / v[i]);
    for (index_t i = 0; i < n; ++i)
      if (!std::isfinite(bx[i]))
        throw NumericalError("rescale_model: the rescaled state bias overflows the value "
                             "type at entry " +
                                 std::to_string(i + 1) + range,
                             static_cast<double>(bx[i]));
    check_finite(A2, "A", range);
    check_finite(B2, "B", range);
    check_finite(C2, "C", range);

    const double after = norm_inf(A2);
    if (report) {
      report->target = rho;
      report->norm_before = norm_inf(A);
      report->norm_after = after;
      report->iterations = pf.iterations;
      report->pf = pf;
      report->scaling.resize(static_cast<std::size_t>(n));
      for (index_t i = 0; i < n; ++i)
        report->scaling[i] = 1.0 / v[i];
    }
    std::vector<T> by(model.bias_y().begin(), model.bias_y().end());
    return Model<T>(std::make_shared<CsrMatrix<T>>(std::move(A2)),
                    std::make_shared<CsrMatrix<T>>(std::move(B2)),
                    std::make_shared<CsrMatrix<T>>(std::move(C2)), model.D_ptr(),
                    std::move(bx), std::move(by), model.blocks());
  });
}

template Model<float> rescale_model(const Model<float> &, double, RescaleReport *,
                                    const PerronOptions &);
template Model<double> rescale_model(const Model<double> &, double, RescaleReport *,
                                     const PerronOptions &);

} // namespace tacit::inline v1
