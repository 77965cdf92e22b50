// The global and interval bounds on a CSR model distributed by states: the
// steps of lib/analysis/bounds*.cpp (BoundAnalyzer) on each rank's own
// states, the products with A and |A| by DistributedProduct (the
// single-process row sums), the maxima, minima and conjunctions over all
// states by MPI_Allreduce (exact), so that the own slices are the
// single-process bits.

#include <tacit/mpi/bounds.hpp>
#include <tacit/mpi/product.hpp>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "analysis/detail/activation_bounds.hpp"
#include "analysis/detail/global_bound.hpp"
#include "analysis/detail/rounding.hpp"
#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
} // namespace

struct DistributedBoundAnalyzer::Impl {
  const DistributedModel &model;
  BoundOptions options;
  std::unique_ptr<DistributedProduct> product;
  index_t own = 0;
  std::vector<tacit::detail::StateAct> acts; // own states
  std::vector<double> lip;            // own states
  double gA = 0, gB = 0;
  bool nilpotent = false;
  index_t level_count = 0;
  std::vector<double> cert_v; // own states
  double rho = 1;
  bool certified = false;
  /// C^T's rows of the own states (own x q), in the order of the single
  /// process's explicit transpose; the allowances of C and D and of the
  /// final sums of the margins (BoundAnalyzer::Impl's gC, gD, gamma_sum).
  CsrMatrix<double> ct_own;
  double gC = 0, gD = 0, gamma_sum = 0;
  /// Counts and offsets of the states and outputs of each rank (MPI's ints).
  std::vector<int> state_counts, state_displs, output_counts, output_displs;

  Impl(const DistributedModel &m, BoundOptions o) : model(m), options(o) {}

  // The whole n-vector from each rank's own entries (on every rank).
  std::vector<double> all_states(std::span<const double> mine) const {
    std::vector<double> all(static_cast<std::size_t>(model.n));
    MPI_Allgatherv(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(),
                   state_counts.data(), state_displs.data(), MPI_DOUBLE, model.comm);
    return all;
  }
  // The q-vector on rank 0 from each rank's own outputs (empty elsewhere).
  std::vector<double> outputs_on_root(std::span<const double> mine) const {
    std::vector<double> all(model.rank == 0 ? static_cast<std::size_t>(model.q) : 0);
    MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(),
                output_counts.data(), output_displs.data(), MPI_DOUBLE, 0, model.comm);
    return all;
  }

  // Lower bounds of g_j^T y over the box for the k columns of G (q x k,
  // row-major) from the state bounds (BoundAnalyzer::interval_lower_in_arena
  // with its output_rows and output_rounding), the same on every rank.
  std::vector<double> interval_lower(const StateBounds<double> &b, const InputBox<double> &box,
                                     const std::vector<double> &G, index_t k) const {
    const index_t q = model.q, p = model.p;
    const int rank = model.rank, ranks = model.ranks;
    const MPI_Comm comm = model.comm;
    const ConstMatrixView<double> Gv{G.data(), q, k, k};
    std::vector<double> W(static_cast<std::size_t>(own * k));
    ct_own.apply(Mode::normal, 1.0, Gv, 0.0, MatrixView<double>{W.data(), own, k, k});
    // acc (first k) and mag (last k), summed over the states in their order:
    // rank 0 starts with G^T c, each rank adds its states and passes them on.
    std::vector<double> sums(static_cast<std::size_t>(2 * k), 0.0);
    double *acc = sums.data(), *mag = sums.data() + k;
    constexpr int tag = 7418;
    if (rank == 0) {
      for (index_t r = 0; r < q; ++r)
        for (index_t j = 0; j < k; ++j)
          acc[j] += Gv(r, j) * model.bias_y[r];
      for (index_t j = 0; j < k; ++j)
        mag[j] = std::abs(acc[j]);
    } else {
      MPI_Recv(sums.data(), static_cast<int>(2 * k), MPI_DOUBLE, rank - 1, tag, comm,
               MPI_STATUS_IGNORE);
    }
    for (index_t i = 0; i < own; ++i) {
      const double xm = std::max(std::abs(b.x_lower[i]), std::abs(b.x_upper[i]));
      for (index_t j = 0; j < k; ++j) {
        acc[j] += tacit::detail::min_product(W[i * k + j], b.x_lower[i], b.x_upper[i]);
        mag[j] += std::abs(W[i * k + j]) * xm;
      }
    }
    if (rank + 1 < ranks)
      MPI_Send(sums.data(), static_cast<int>(2 * k), MPI_DOUBLE, rank + 1, tag, comm);
    else if (ranks > 1)
      MPI_Send(sums.data(), static_cast<int>(2 * k), MPI_DOUBLE, 0, tag, comm);
    if (rank == 0 && ranks > 1)
      MPI_Recv(sums.data(), static_cast<int>(2 * k), MPI_DOUBLE, ranks - 1, tag, comm,
               MPI_STATUS_IGNORE);
    // |C| xmag by the owners of C's rows, for the rounding of W.
    const std::vector<double> xmag =
        all_states(tacit::detail::magnitudes(b.x_lower, b.x_upper));
    std::vector<double> rc_own(static_cast<std::size_t>(model.C.local.rows()));
    model.C.local.apply(Mode::abs, 1.0, std::span<const double>(xmag), 0.0,
                        std::span<double>(rc_own));
    const std::vector<double> rc = outputs_on_root(rc_own);
    std::vector<double> out(static_cast<std::size_t>(k));
    if (rank == 0) {
      std::vector<double> Du(static_cast<std::size_t>(p * k), 0.0), rd(q, 0.0);
      if (model.D) {
        model.D->apply(Mode::transpose, 1.0, Gv, 0.0, MatrixView<double>{Du.data(), p, k, k});
        const std::vector<double> umag = tacit::detail::magnitudes(box.lower, box.upper);
        model.D->apply(Mode::abs, 1.0, std::span<const double>(umag), 0.0,
                       std::span<double>(rd));
      }
      for (index_t i = 0; i < p; ++i) {
        const double um = std::max(std::abs(box.lower[i]), std::abs(box.upper[i]));
        for (index_t j = 0; j < k; ++j) {
          acc[j] += tacit::detail::min_product(Du[i * k + j], box.lower[i], box.upper[i]);
          mag[j] += std::abs(Du[i * k + j]) * um;
        }
      }
      std::vector<double> extra(static_cast<std::size_t>(k), 0.0);
      for (index_t r = 0; r < q; ++r) {
        const double reach = gC * rc[r] + gD * rd[r];
        for (index_t j = 0; j < k; ++j)
          extra[j] += std::abs(Gv(r, j)) * reach;
      }
      for (auto &v : extra)
        v *= 2;
      for (index_t j = 0; j < k; ++j)
        out[j] = acc[j] - (2 * gamma_sum * mag[j] + extra[j]);
    }
    MPI_Bcast(out.data(), static_cast<int>(k), MPI_DOUBLE, 0, comm);
    return out;
  }

  // The interval fixed point started from the global bound
  // (BoundAnalyzer::Impl::interval_from without the block sweep).
  StateBounds<double> interval_from(StateBounds<double> s, const InputBox<double> &box) const {
    if (s.status == BoundStatus::unbounded)
      return s;
    std::vector<double> bc, br;
    input_centre(box, bc, br);
    const int steps = budget();
    int it = 0;
    for (; it < steps; ++it) {
      const double change = interval_step(s, bc, br);
      if (change == 0 || (!nilpotent && change <= options.tolerance))
        break;
    }
    s.iterations = std::min(it + 1, steps);
    return s;
  }

  int budget() const {
    return nilpotent ? static_cast<int>(level_count) + 2 : std::max(1, options.max_iterations);
  }
  double max_all(double v) const {
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, model.comm);
    return v;
  }
  void max_all(double *v, int count) const {
    MPI_Allreduce(MPI_IN_PLACE, v, count, MPI_DOUBLE, MPI_MAX, model.comm);
  }
  bool all(bool b) const {
    int v = b ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, model.comm);
    return v != 0;
  }

  // out = (1 + gA) (lip .* fl(|A| w)) + s (BoundAnalyzer::Impl::global_step).
  void global_step(std::span<const double> w, std::span<const double> s,
                   std::span<double> out) const {
    product->apply(Mode::abs, w, out);
    const double f = 1 + gA;
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = f * (lip[i] * out[i]) + s[i];
  }

  void input_centre(const InputBox<double> &box, std::vector<double> &zc,
                    std::vector<double> &zr) const {
    const index_t np = model.p;
    std::vector<double> uc(np), ur(np);
    for (index_t j = 0; j < np; ++j) {
      uc[j] = (box.lower[j] + box.upper[j]) / 2;
      ur[j] = (box.upper[j] - box.lower[j]) / 2;
    }
    zc.assign(own, 0.0);
    zr.assign(own, 0.0);
    const auto &B = model.B.local;
    B.apply(Mode::normal, 1.0, std::span<const double>(uc), 0.0, std::span<double>(zc));
    const double g = gB;
    for (index_t j = 0; j < np; ++j)
      ur[j] += g * (std::abs(uc[j]) + ur[j]);
    B.apply(Mode::abs, 1.0, std::span<const double>(ur), 0.0, std::span<double>(zr));
    for (index_t i = 0; i < own; ++i) {
      zc[i] += model.bias_x[i];
      zr[i] += g * (std::abs(zc[i]) + zr[i]);
    }
  }

  void preactivation(const std::vector<double> &xl, const std::vector<double> &xh,
                     const std::vector<double> &bc, const std::vector<double> &br,
                     std::vector<double> &zl, std::vector<double> &zh) const {
    std::vector<double> m(own), rr(own), zc(own), zr(own);
    const double g = gA;
    for (index_t i = 0; i < own; ++i) {
      m[i] = xl[i] / 2 + xh[i] / 2;
      const double r = xh[i] / 2 - xl[i] / 2;
      rr[i] = r + g * (std::abs(m[i]) + r);
    }
    product->apply(Mode::normal, m, zc);
    product->apply(Mode::abs, rr, zr);
    zl.resize(own);
    zh.resize(own);
    for (index_t i = 0; i < own; ++i) {
      const double c = zc[i] + bc[i];
      const double rad = zr[i] + br[i] + g * (std::abs(c) + zr[i] + br[i]);
      zl[i] = c - rad;
      zh[i] = c + rad;
    }
  }

  // BoundAnalyzer::Impl::tighten on own state i (global index in errors).
  double tighten(StateBounds<double> &s, index_t i, double zl, double zh) const {
    zl = std::max(zl, s.z_lower[i]);
    zh = std::min(zh, s.z_upper[i]);
    const double lo = std::max(s.x_lower[i], acts[i].apply_lower(zl));
    const double hi = std::min(s.x_upper[i], acts[i].apply_upper(zh));
    if (zh < zl || hi < lo)
      throw Error("bounds: the enclosures of state " +
                  std::to_string(model.own_begin() + i) + " do not intersect (pre-activation [" +
                  std::to_string(zl) + ", " + std::to_string(zh) + "], state [" +
                  std::to_string(lo) + ", " + std::to_string(hi) +
                  "]): the nominal point is not an equilibrium within its recorded "
                  "residual, or a rounding allowance is too small");
    const double width = s.x_upper[i] - s.x_lower[i];
    const double shrink = (lo - s.x_lower[i]) + (s.x_upper[i] - hi);
    s.x_lower[i] = lo;
    s.x_upper[i] = hi;
    s.z_lower[i] = zl;
    s.z_upper[i] = zh;
    return shrink > 0 ? (width > 0 ? shrink / width : 1.0) : 0.0;
  }

  // One interval step; the largest relative shrink over all states.
  double interval_step(StateBounds<double> &s, const std::vector<double> &bc,
                       const std::vector<double> &br) const {
    std::vector<double> zl, zh;
    preactivation(s.x_lower, s.x_upper, bc, br, zl, zh);
    if (s.z_lower.empty()) {
      s.z_lower.assign(own, -inf);
      s.z_upper.assign(own, inf);
    }
    double change = 0;
    std::exception_ptr error;
    try {
      for (index_t i = 0; i < own; ++i)
        change = std::max(change, tighten(s, i, zl[i], zh[i]));
    } catch (const std::exception &) {
      error = std::current_exception();
    }
    collective_check(model.comm, error);
    return max_all(change);
  }
};

DistributedBoundAnalyzer::DistributedBoundAnalyzer(const DistributedModel &model,
                                                   BoundOptions options,
                                                   std::size_t memory_budget)
    : impl_(std::make_unique<Impl>(model, options)) {
  Impl &I = *impl_;
  const MPI_Comm comm = model.comm;
  I.own = model.own_end() - model.own_begin();
  const index_t own = I.own, n = model.n;
  detail::collective(comm, [&] {
    I.acts.resize(own);
    I.lip.resize(own);
    for (index_t i = 0; i < own; ++i) {
      const Activation &a = model.activations[i];
      if (a.kind == ActivationKind::leaky_relu && a.slope < 0)
        throw Unsupported("bounds: the leaky ReLU of state " +
                          std::to_string(model.own_begin() + i) + " has a negative slope " +
                          std::to_string(a.slope) + " and is not monotone");
      I.acts[i] = tacit::detail::StateAct::from(a);
      I.lip[i] = a.lipschitz();
    }
  });
  I.product = std::make_unique<DistributedProduct>(model);
  DistributedProduct &P = *I.product;
  const auto &L = P.local_matrix();
  const index_t g = P.ghosts_below(), m = own + P.ghosts();
  // Most terms of a row or a column of A (detail::csr_terms over all ranks):
  // the column counts of the own rows, the ghosts' added to their owners.
  {
    double most = 1;
    const auto rp = L.row_ptr();
    for (index_t i = 0; i < own; ++i)
      most = std::max(most, static_cast<double>(rp[i + 1] - rp[i]));
    std::vector<double> count(static_cast<std::size_t>(m), 0.0);
    L.visit_columns([&](auto cols) {
      for (const auto c : cols)
        count[static_cast<std::size_t>(c)] += 1;
    });
    std::vector<double> own_count(count.begin() + g, count.begin() + g + own);
    P.add_to_owners(count, own_count);
    for (const double c : own_count)
      most = std::max(most, c);
    I.gA = tacit::detail::product_gamma<double>(static_cast<index_t>(I.max_all(most)));
  }
  {
    // B: its own rows, and its p column counts summed over the ranks.
    const auto &B = model.B.local;
    std::int64_t most = 1;
    const auto rp = B.row_ptr();
    for (index_t i = 0; i < B.rows(); ++i)
      most = std::max<std::int64_t>(most, rp[i + 1] - rp[i]);
    std::vector<std::int64_t> count(static_cast<std::size_t>(model.p), 0);
    B.visit_columns([&](auto cols) {
      for (const auto c : cols)
        ++count[static_cast<std::size_t>(c)];
    });
    MPI_Allreduce(MPI_IN_PLACE, count.data(), static_cast<int>(count.size()), MPI_INT64_T,
                  MPI_SUM, comm);
    for (const auto c : count)
      most = std::max(most, c);
    MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_INT64_T, MPI_MAX, comm);
    I.gB = tacit::detail::product_gamma<double>(static_cast<index_t>(most));
  }
  // C's columns to the owners of their states: each rank sends the entries
  // of its rows of C, row by row, to the owner of each column, so that the
  // entries a rank receives (in the order of the source ranks, which own
  // increasing rows) are sorted by row within each state.
  {
    const int ranks = model.ranks;
    const auto &starts = model.states.starts;
    for (int r = 0; r < ranks; ++r) {
      I.state_counts.push_back(static_cast<int>(model.states.size(r)));
      I.state_displs.push_back(static_cast<int>(model.states.begin(r)));
      I.output_counts.push_back(static_cast<int>(model.outputs.size(r)));
      I.output_displs.push_back(static_cast<int>(model.outputs.begin(r)));
    }
    const auto &C = model.C.local;
    std::vector<std::vector<std::int64_t>> idx(static_cast<std::size_t>(ranks));
    std::vector<std::vector<double>> val(static_cast<std::size_t>(ranks));
    const auto rp = C.row_ptr();
    const auto values = C.values();
    std::int64_t most = 1;
    C.visit_columns([&](auto cols) {
      for (index_t r = 0; r < C.rows(); ++r) {
        most = std::max<std::int64_t>(most, rp[r + 1] - rp[r]);
        for (auto e = rp[r]; e < rp[r + 1]; ++e) {
          const auto c = static_cast<index_t>(cols[e]);
          const auto to = static_cast<std::size_t>(
              std::upper_bound(starts.begin(), starts.end(), c) - starts.begin() - 1);
          idx[to].push_back(model.C.row_begin + r);
          idx[to].push_back(c);
          val[to].push_back(values[e]);
        }
      }
    });
    std::vector<int> send(ranks), recv(ranks), sdis(ranks), rdis(ranks);
    for (int r = 0; r < ranks; ++r)
      send[r] = static_cast<int>(val[r].size());
    MPI_Alltoall(send.data(), 1, MPI_INT, recv.data(), 1, MPI_INT, comm);
    if (memory_budget > 0) {
      // C^T's rows of the own states are a second copy of C's entries,
      // beside the rows of C the rank holds: counted before they are sent.
      std::uint64_t entries = 0;
      for (const int c : recv)
        entries += static_cast<std::uint64_t>(c);
      const std::uint64_t width =
          model.q > std::numeric_limits<std::int32_t>::max() ? 8 : 4;
      const std::uint64_t ct = static_cast<std::uint64_t>(own + 1) * 8 + entries * (width + 8);
      const std::uint64_t held = model.local_bytes();
      detail::collective(comm, [&] {
        if (held + ct > memory_budget)
          throw InvalidArgument(
              "rank " + std::to_string(model.rank) + " would hold " +
              std::to_string(held + ct) + " bytes for the bounds (" + std::to_string(held) +
              " of the model and " + std::to_string(ct) + " of C's columns of its states [" +
              std::to_string(model.own_begin()) + ", " + std::to_string(model.own_end()) +
              ")), more than the memory budget of " + std::to_string(memory_budget) +
              " bytes: use more ranks");
      });
    }
    std::vector<std::int64_t> sidx, ridx;
    std::vector<double> sval, rval;
    int total = 0;
    for (int r = 0; r < ranks; ++r) {
      sdis[r] = static_cast<int>(sval.size());
      sidx.insert(sidx.end(), idx[r].begin(), idx[r].end());
      sval.insert(sval.end(), val[r].begin(), val[r].end());
      rdis[r] = total;
      total += recv[r];
    }
    rval.resize(static_cast<std::size_t>(total));
    MPI_Alltoallv(sval.data(), send.data(), sdis.data(), MPI_DOUBLE, rval.data(), recv.data(),
                  rdis.data(), MPI_DOUBLE, comm);
    for (int r = 0; r < ranks; ++r) {
      send[r] *= 2;
      sdis[r] *= 2;
      recv[r] *= 2;
      rdis[r] *= 2;
    }
    ridx.resize(static_cast<std::size_t>(2 * total));
    MPI_Alltoallv(sidx.data(), send.data(), sdis.data(), MPI_INT64_T, ridx.data(), recv.data(),
                  rdis.data(), MPI_INT64_T, comm);
    // Counting sort by state, stable: each state's entries keep their rows' order.
    const index_t b0 = model.own_begin();
    std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(own) + 1, 0);
    for (int e = 0; e < total; ++e)
      ++row_ptr[static_cast<std::size_t>(ridx[2 * e + 1] - b0) + 1];
    for (index_t i = 0; i < own; ++i) {
      row_ptr[i + 1] += row_ptr[i];
      most = std::max<std::int64_t>(most, row_ptr[i + 1] - row_ptr[i]);
    }
    std::vector<std::int64_t> cols(static_cast<std::size_t>(total)), next(row_ptr);
    std::vector<double> vals(static_cast<std::size_t>(total));
    for (int e = 0; e < total; ++e) {
      const auto slot = next[static_cast<std::size_t>(ridx[2 * e + 1] - b0)]++;
      cols[slot] = ridx[2 * e];
      vals[slot] = rval[e];
    }
    I.ct_own = CsrMatrix<double>(own, model.q, std::move(row_ptr), cols, std::move(vals));
    MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_INT64_T, MPI_MAX, comm);
    I.gC = tacit::detail::product_gamma<double>(static_cast<index_t>(most));
    double gD = 0;
    if (model.rank == 0 && model.D)
      gD = tacit::detail::product_gamma<double>(tacit::detail::csr_terms(*model.D));
    MPI_Bcast(&gD, 1, MPI_DOUBLE, 0, comm);
    I.gD = gD;
    const double gamma = std::max({I.gA, I.gB, I.gC, I.gD});
    I.gamma_sum = gamma + 2.0 * double(n + model.p + model.q + 8) *
                              std::numeric_limits<double>::epsilon() / 2;
  }
  // Levels: level_i = 1 + the highest level its row reads (0 for an empty
  // row), iterated from 0 to its fixed point (depth + 1 iterations); a level
  // of n or more, or no fixed point within the budget, means a cycle.
  {
    std::vector<double> level(static_cast<std::size_t>(m), 0.0), next(own);
    const auto rp = L.row_ptr();
    const int cap = std::max(1, options.max_iterations);
    bool settled = false;
    double highest = 0;
    for (int t = 0; t <= cap; ++t) {
      P.exchange(level);
      bool changed = false;
      highest = 0;
      L.visit_columns([&](auto cols) {
        for (index_t i = 0; i < own; ++i) {
          double l = 0;
          for (auto e = rp[i]; e < rp[i + 1]; ++e)
            l = std::max(l, level[static_cast<std::size_t>(cols[e])] + 1);
          next[i] = l;
          changed = changed || l != level[g + i];
          highest = std::max(highest, l);
        }
      });
      std::copy(next.begin(), next.end(), level.begin() + g);
      double red[2] = {changed ? 1.0 : 0.0, highest};
      I.max_all(red, 2);
      highest = red[1];
      if (red[0] == 0) {
        settled = true;
        break;
      }
      if (highest >= static_cast<double>(n))
        break;
    }
    I.nilpotent = settled;
    I.level_count = settled && n > 0 ? static_cast<index_t>(highest) + 1 : 0;
  }
  if (I.nilpotent) {
    I.rho = 0;
    I.certified = true;
    return;
  }
  // Certificate vector (BoundAnalyzer's constructor).
  std::vector<double> ones(own, 1.0), v(own, 1.0), next(own);
  const int budget = I.budget();
  for (int it = 0; it < budget; ++it) {
    I.global_step(v, ones, next);
    double red[2] = {0, 0}; // diff, scale
    for (index_t i = 0; i < own; ++i) {
      red[0] = std::max(red[0], std::abs(next[i] - v[i]));
      red[1] = std::max(red[1], std::abs(next[i]));
    }
    I.max_all(red, 2);
    v.swap(next);
    if (!(red[0] > options.tolerance * red[1]))
      break;
  }
  P.apply(Mode::abs, v, next);
  double rho = 0;
  bool finite = true;
  const double up = 1 + 4 * std::numeric_limits<double>::epsilon();
  for (index_t i = 0; i < own; ++i) {
    if (!std::isfinite(v[i]) || !(v[i] > 0) || !std::isfinite(next[i])) {
      finite = false;
      break;
    }
    rho = std::max(rho, (1 + I.gA) * I.lip[i] * next[i] / v[i] * up);
  }
  finite = I.all(finite);
  rho = I.max_all(rho);
  I.rho = finite ? rho : 1.0;
  I.certified = finite && rho < 1.0;
  I.cert_v = std::move(v);
}

DistributedBoundAnalyzer::~DistributedBoundAnalyzer() = default;

bool DistributedBoundAnalyzer::certified_well_posed() const noexcept {
  return impl_->certified;
}
double DistributedBoundAnalyzer::rate() const noexcept { return impl_->rho; }
bool DistributedBoundAnalyzer::feed_forward() const noexcept { return impl_->nilpotent; }
index_t DistributedBoundAnalyzer::levels() const noexcept { return impl_->level_count; }

NominalPoint<double> DistributedBoundAnalyzer::nominal(std::span<const double> u0,
                                                       std::span<const double> x0) const {
  const Impl &I = *impl_;
  const DistributedModel &M = I.model;
  const index_t own = I.own;
  detail::collective(M.comm, [&] {
    if (static_cast<index_t>(u0.size()) != M.p || static_cast<index_t>(x0.size()) != own)
      throw InvalidArgument("nominal: u0 has " + std::to_string(u0.size()) +
                            " entries (p = " + std::to_string(M.p) + "), x0 " +
                            std::to_string(x0.size()) + " (this rank owns " +
                            std::to_string(own) + " states)");
  });
  NominalPoint<double> nom;
  nom.u.assign(u0.begin(), u0.end());
  nom.x.assign(x0.begin(), x0.end());
  // z = B u0 + A x0 (the kernel's y = acc + y: the same rounding as adding
  // A x0 to B u0 afterwards).
  std::vector<double> z(own), t(own);
  M.B.local.apply(Mode::normal, 1.0, u0, 0.0, std::span<double>(z));
  I.product->apply(Mode::normal, x0, t);
  for (index_t i = 0; i < own; ++i)
    z[i] = t[i] + z[i];
  nom.residual.resize(own);
  for (index_t i = 0; i < own; ++i)
    nom.residual[i] = x0[i] - I.acts[i].apply(z[i] + M.bias_x[i]);
  std::vector<double> ax(own), au(u0.size()), mag(own);
  for (index_t i = 0; i < own; ++i)
    ax[i] = std::abs(x0[i]);
  for (std::size_t j = 0; j < u0.size(); ++j)
    au[j] = std::abs(u0[j]);
  M.B.local.apply(Mode::abs, 1.0, std::span<const double>(au), 0.0, std::span<double>(mag));
  I.product->apply(Mode::abs, ax, t);
  for (index_t i = 0; i < own; ++i)
    mag[i] = t[i] + mag[i];
  const double g = std::max(I.gA, I.gB);
  nom.residual_rounding.resize(own);
  for (index_t i = 0; i < own; ++i)
    nom.residual_rounding[i] =
        g * (I.lip[i] * (mag[i] + std::abs(M.bias_x[i])) + std::abs(x0[i]) +
             std::abs(nom.residual[i]));
  // y = C x0 (by the owners of C's rows, the single-process row sums) + D u0
  // + c on rank 0, then on every rank.
  const std::vector<double> xall = I.all_states(x0);
  std::vector<double> y_own(static_cast<std::size_t>(M.C.local.rows()));
  M.C.local.apply(Mode::normal, 1.0, std::span<const double>(xall), 0.0,
                  std::span<double>(y_own));
  nom.y = I.outputs_on_root(y_own);
  if (M.rank == 0) {
    if (M.D)
      M.D->apply(Mode::normal, 1.0, u0, 1.0, std::span<double>(nom.y));
    for (index_t k = 0; k < M.q; ++k)
      nom.y[k] += M.bias_y[k];
  }
  nom.y.resize(static_cast<std::size_t>(M.q));
  MPI_Bcast(nom.y.data(), static_cast<int>(M.q), MPI_DOUBLE, 0, M.comm);
  return nom;
}

StateBounds<double> DistributedBoundAnalyzer::global_bounds(const NominalPoint<double> &nom,
                                                            const InputBox<double> &box) const {
  const Impl &I = *impl_;
  const DistributedModel &M = I.model;
  const index_t own = I.own, p = M.p;
  detail::collective(M.comm, [&] {
    tacit::detail::check_box(box, p);
    tacit::detail::check_nominal(nom, p, own,
                                 "this rank " + std::to_string(own) + " states");
  });
  StateBounds<double> out;
  const auto unbounded = [&] { return tacit::detail::make_unbounded(out, own); };
  if (!I.certified)
    return unbounded();
  const std::vector<double> sigma = tacit::detail::box_radii(nom, box);
  std::vector<double> s(own);
  M.B.local.apply(Mode::abs, 1.0, std::span<const double>(sigma), 0.0, std::span<double>(s));
  tacit::detail::global_source(std::span<double>(s), I.lip, nom, I.gA, I.gB);
  std::vector<double> w = s, next(own);
  int it = 0;
  if (I.nilpotent) {
    const int budget = I.budget();
    bool exact = false;
    for (; it < budget && !exact; ++it) {
      I.global_step(w, s, next);
      exact = I.all(std::equal(w.begin(), w.end(), next.begin()));
      w.swap(next);
    }
    if (!exact)
      return unbounded();
  } else {
    const int budget = I.budget();
    bool converged = false;
    for (; it < budget; ++it) {
      I.global_step(w, s, next);
      double red[2] = {0, 0};
      for (index_t i = 0; i < own; ++i) {
        red[0] = std::max(red[0], std::abs(next[i] - w[i]));
        red[1] = std::max(red[1], std::abs(next[i]));
      }
      I.max_all(red, 2);
      w.swap(next);
      if (!(red[0] > I.options.tolerance * red[1])) {
        converged = true;
        break;
      }
    }
    if (!converged)
      out.status = BoundStatus::inexact;
    I.global_step(w, s, next);
    double c = 0;
    for (index_t i = 0; i < own; ++i)
      c = std::max(c, (next[i] - w[i]) / ((1.0 - I.rho) * I.cert_v[i]));
    c = I.max_all(c);
    if (!(c > 0)) {
      double wmax = 0;
      for (index_t i = 0; i < own; ++i)
        wmax = std::max(wmax, w[i] / I.cert_v[i]);
      wmax = I.max_all(wmax);
      c = std::max(wmax, 1.0) * std::numeric_limits<double>::epsilon();
    }
    std::vector<double> cand(own);
    bool verified = false;
    for (int attempt = 0; attempt < 64 && !verified && std::isfinite(c); ++attempt) {
      for (index_t i = 0; i < own; ++i)
        cand[i] = w[i] + c * I.cert_v[i];
      I.global_step(cand, s, next);
      bool ok = true;
      for (index_t i = 0; i < own && ok; ++i)
        ok = next[i] <= cand[i];
      verified = I.all(ok);
      c *= 2;
    }
    if (!verified)
      return unbounded();
    w.swap(cand);
  }
  bool finite = true;
  for (index_t i = 0; i < own; ++i)
    finite = finite && std::isfinite(w[i]);
  if (!I.all(finite))
    return unbounded();
  out.iterations = it + 1;
  tacit::detail::global_interval(std::span<const double>(w), nom, I.gA, I.acts, out);
  std::vector<double> bc, br;
  I.input_centre(box, bc, br);
  I.preactivation(out.x_lower, out.x_upper, bc, br, out.z_lower, out.z_upper);
  return out;
}

StateBounds<double>
DistributedBoundAnalyzer::interval_bounds(const NominalPoint<double> &nom,
                                          const InputBox<double> &box) const {
  return impl_->interval_from(global_bounds(nom, box), box);
}

MarginBounds<double> DistributedBoundAnalyzer::margins(const NominalPoint<double> &nom,
                                                       const InputBox<double> &box, int label,
                                                       BoundMethod method) const {
  const Impl &I = *impl_;
  const index_t q = I.model.q;
  detail::collective(I.model.comm, [&] {
    if (label < 0 || label >= q)
      throw InvalidArgument("margins: label " + std::to_string(label) + " is not in [0, " +
                            std::to_string(q) + ")");
    if (method == BoundMethod::linear)
      throw Unsupported("margins: the linear bound is not available on a model "
                        "distributed by states (global, interval or best)");
  });
  // G = [e_label - e_k (k = 0..q-1), e_j, -e_j] (BoundAnalyzer::margins).
  const index_t k = 3 * q;
  std::vector<double> G(static_cast<std::size_t>(q * k), 0.0);
  for (index_t j = 0; j < q; ++j) {
    G[label * k + j] += 1;
    G[j * k + j] -= 1;
    G[j * k + q + j] = 1;
    G[j * k + 2 * q + j] = -1;
  }
  MarginBounds<double> out;
  out.label = label;
  const auto fill = [&](const std::vector<double> &lb, BoundStatus status) {
    out.status = status;
    out.margin_lower.assign(lb.begin(), lb.begin() + q);
    out.margin_lower[label] = 0;
    out.y_lower.assign(lb.begin() + q, lb.begin() + 2 * q);
    out.y_upper.resize(q);
    for (index_t j = 0; j < q; ++j)
      out.y_upper[j] = -lb[2 * q + j];
  };
  StateBounds<double> s = global_bounds(nom, box);
  if (s.status == BoundStatus::unbounded)
    fill(std::vector<double>(k, -inf), s.status);
  else
    fill(I.interval_lower(s, box, G, k), s.status);
  if (method == BoundMethod::global || (method == BoundMethod::best && out.certified()))
    return out;
  s = I.interval_from(std::move(s), box);
  if (s.status == BoundStatus::unbounded)
    return out;
  fill(I.interval_lower(s, box, G, k), s.status);
  return out;
}

const DistributedModel &DistributedBoundAnalyzer::model() const noexcept {
  return impl_->model;
}
const BoundOptions &DistributedBoundAnalyzer::options() const noexcept {
  return impl_->options;
}

} // namespace tacit::inline v1::mpi
