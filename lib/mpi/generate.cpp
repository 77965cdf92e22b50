// Generated models across ranks (each rank its own rows of
// random_implicit_model) and the halo of a state partition, measured on a
// distributed model or counted for ranks that do not exist.

#include <tacit/mpi/generate.hpp>
#include <tacit/nn/generate.hpp>

#include <algorithm>
#include <bit>
#include <limits>
#include <string>
#include <vector>

#include <tbb/parallel_for.h>

#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {

/// The rows of A of the generated model: every row has this many nonzeros.
index_t row_count(const ImplicitModelShape &s) {
  return std::min(s.row_nnz, s.states);
}

RowPartition generated_partition(const ImplicitModelShape &s, int ranks) {
  const auto per_row = static_cast<std::int64_t>(row_count(s));
  return balanced_partition(s.states, ranks,
                            [per_row](index_t i) { return per_row * std::int64_t(i); });
}

void check_shape(const ImplicitModelShape &s) {
  if (s.states < 1 || s.inputs < 1 || s.outputs < 1 || s.row_nnz < 1 ||
      !(s.norm_inf > 0) || !std::isfinite(s.norm_inf))
    throw InvalidArgument(
        "generated model: states, inputs, outputs and nonzeros per row must be >= 1 and "
        "the norm positive and finite, got n = " +
        std::to_string(s.states) + ", p = " + std::to_string(s.inputs) +
        ", q = " + std::to_string(s.outputs) + ", " + std::to_string(s.row_nnz) +
        " per row, norm " + std::to_string(s.norm_inf));
  if (s.states > std::numeric_limits<std::int32_t>::max() ||
      row_count(s) * s.states > std::numeric_limits<std::int32_t>::max())
    throw InvalidArgument("generated model: n = " + std::to_string(s.states) + " with " +
                          std::to_string(row_count(s)) +
                          " nonzeros per row exceeds PETSc's 32-bit indices");
}

} // namespace

DistributedModel generate_distributed_model(const ImplicitModelShape &shape,
                                            MPI_Comm comm, std::size_t memory_budget) {
  DistributedModel m;
  m.comm = comm;
  MPI_Comm_rank(comm, &m.rank);
  MPI_Comm_size(comm, &m.ranks);
  // Phase 1, the same on every rank: the partition and the budget.
  detail::collective(comm, [&] {
    check_shape(shape);
    m.n = shape.states;
    m.p = shape.inputs;
    m.q = shape.outputs;
    m.states = generated_partition(shape, m.ranks);
    m.outputs = even_partition(m.q, m.ranks);
    for (int r = 0; r < m.ranks; ++r)
      if (m.states.size(r) < 1)
        throw InvalidArgument(
            "the partition of the " + std::to_string(m.n) + " states over " +
            std::to_string(m.ranks) + " ranks leaves rank " + std::to_string(r) +
            " without states (run with at most " + std::to_string(m.n) + " ranks)");
    if (memory_budget > 0) {
      const index_t r0 = m.own_begin(), r1 = m.own_end();
      const index_t outs = m.outputs.size(m.rank);
      auto share = [](index_t rows, std::int64_t per_row, index_t cols) {
        const std::uint64_t width = cols > 0x7fffffff ? 8 : 4;
        return static_cast<std::uint64_t>(rows + 1) * 8 +
               static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(per_row) *
                   (width + 8);
      };
      const std::uint64_t need =
          share(r1 - r0, row_count(shape), m.n) +
          share(r1 - r0, std::min<index_t>(m.p, 4), m.p) +
          share(outs, std::min<index_t>(m.n, 32), m.n) +
          static_cast<std::uint64_t>(r1 - r0) * (8 + sizeof(Activation));
      if (need > memory_budget)
        throw InvalidArgument("rank " + std::to_string(m.rank) + " would hold " +
                              std::to_string(need) + " bytes of the model (states [" +
                              std::to_string(r0) + ", " + std::to_string(r1) +
                              ")), more than the memory budget of " +
                              std::to_string(memory_budget) + " bytes: use more ranks");
    }
  });
  // Phase 2: each rank its rows; the largest row sum of |A| agreed by all
  // (argument errors were ruled out above, the same on every rank).
  auto part = std::make_shared<ImplicitModelPart<double>>();
  detail::collective(comm, [&] {
    *part = random_implicit_model_part<double>(
        shape.states, shape.inputs, shape.outputs, shape.row_nnz, shape.norm_inf,
        shape.seed, m.own_begin(), m.own_end(), m.outputs.begin(m.rank),
        m.outputs.end(m.rank), [&](double &largest, index_t &row) {
          const double mine = largest;
          MPI_Allreduce(MPI_IN_PLACE, &largest, 1, MPI_DOUBLE, MPI_MAX, comm);
          // The first row holding the largest sum (the ranks without it offer none).
          std::int64_t first = mine == largest && row < m.own_end()
                                   ? static_cast<std::int64_t>(row)
                                   : std::numeric_limits<std::int64_t>::max();
          MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT64_T, MPI_MIN, comm);
          row = static_cast<index_t>(first);
        });
  });
  const index_t r0 = m.own_begin();
  const std::int64_t per_row = row_count(shape);
  m.A = {m.n, m.n, r0, per_row * std::int64_t(m.n), std::move(part->A)};
  m.B = {m.n, m.p, r0, std::int64_t(std::min<index_t>(m.p, 4)) * std::int64_t(m.n),
         std::move(part->B)};
  m.C = {m.q, m.n, m.outputs.begin(m.rank),
         std::int64_t(std::min<index_t>(m.n, 32)) * std::int64_t(m.q),
         std::move(part->C)};
  m.bias_x = std::move(part->bias_x);
  m.blocks = {{"states", 0, m.n, Activation{}}};
  m.activations.assign(static_cast<std::size_t>(m.own_end() - r0), Activation{});
  if (m.rank == 0)
    m.bias_y.assign(static_cast<std::size_t>(m.q), 0.0);
  return m;
}

std::vector<RankHalo> distributed_halo(const DistributedModel &model) {
  RankHalo mine;
  mine.rank = model.rank;
  mine.rows = model.own_end() - model.own_begin();
  mine.nnz = model.A.local.nnz();
  // Ghosts and the ranks owning them.
  std::vector<index_t> ghosts;
  const index_t r0 = model.own_begin(), r1 = model.own_end();
  model.A.local.visit_columns([&](auto cols) {
    for (const auto c : cols)
      if (c < r0 || c >= r1)
        ghosts.push_back(static_cast<index_t>(c));
  });
  std::sort(ghosts.begin(), ghosts.end());
  ghosts.erase(std::unique(ghosts.begin(), ghosts.end()), ghosts.end());
  mine.ghosts = static_cast<index_t>(ghosts.size());
  const int P = model.ranks;
  std::vector<std::int64_t> from(static_cast<std::size_t>(P), 0);
  for (const index_t g : ghosts) {
    const auto it =
        std::upper_bound(model.states.starts.begin(), model.states.starts.end(), g);
    ++from[static_cast<std::size_t>(it - model.states.starts.begin() - 1)];
  }
  mine.neighbours = static_cast<int>(
      std::count_if(from.begin(), from.end(), [](std::int64_t c) { return c > 0; }));
  // What each rank sends is what the others receive from it.
  std::vector<std::int64_t> to(static_cast<std::size_t>(P), 0);
  MPI_Reduce_scatter_block(from.data(), to.data(), 1, MPI_INT64_T, MPI_SUM, model.comm);
  mine.sent = to[0];
  std::vector<std::int64_t> readers(static_cast<std::size_t>(P));
  for (int r = 0; r < P; ++r)
    readers[r] = from[r] > 0 ? 1 : 0;
  std::int64_t read_by = 0;
  MPI_Reduce_scatter_block(readers.data(), &read_by, 1, MPI_INT64_T, MPI_SUM, model.comm);
  mine.readers = static_cast<int>(read_by);
  // Gathered on rank 0.
  const std::int64_t row[7] = {mine.rank,       mine.rows, mine.nnz,    mine.ghosts,
                               mine.neighbours, mine.sent, mine.readers};
  std::vector<std::int64_t> all(model.rank == 0 ? 7 * static_cast<std::size_t>(P) : 7);
  MPI_Gather(row, 7, MPI_INT64_T, all.data(), 7, MPI_INT64_T, 0, model.comm);
  if (model.rank != 0)
    return {mine};
  std::vector<RankHalo> out(static_cast<std::size_t>(P));
  for (int r = 0; r < P; ++r) {
    const auto *v = all.data() + 7 * r;
    out[r] = {static_cast<int>(v[0]),     static_cast<index_t>(v[1]), v[2],
              static_cast<index_t>(v[3]), static_cast<int>(v[4]),     v[5],
              static_cast<int>(v[6])};
  }
  return out;
}

std::vector<RankHalo> random_implicit_halo(const ImplicitModelShape &shape, int ranks,
                                           int sample) {
  check_shape(shape);
  if (ranks < 1 || ranks > shape.states)
    throw InvalidArgument("random_implicit_halo: " + std::to_string(ranks) +
                          " ranks for " + std::to_string(shape.states) + " states");
  const RowPartition part = generated_partition(shape, ranks);
  std::vector<int> chosen;
  if (sample <= 0 || sample >= ranks) {
    for (int r = 0; r < ranks; ++r)
      chosen.push_back(r);
  } else if (sample == 1) {
    chosen.push_back(0);
  } else {
    for (int k = 0; k < sample; ++k)
      chosen.push_back(static_cast<int>(
          (static_cast<std::int64_t>(ranks - 1) * k + (sample - 1) / 2) / (sample - 1)));
    chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());
  }
  std::vector<RankHalo> out(chosen.size());
  const index_t n = shape.states;
  // One rank at a time (its rows are generated in parallel inside), with a
  // bitmap of the states for its ghosts.
  std::vector<std::uint64_t> seen(static_cast<std::size_t>((n + 63) / 64));
  for (std::size_t k = 0; k < chosen.size(); ++k) {
    const int r = chosen[k];
    const index_t r0 = part.begin(r), r1 = part.end(r);
    // Rows in chunks, so that a rank of 10^8 / 64 rows needs little memory.
    std::fill(seen.begin(), seen.end(), 0);
    std::int64_t nnz = 0;
    constexpr index_t chunk = 1 << 18;
    for (index_t a = r0; a < r1; a += chunk) {
      const index_t b = std::min(r1, a + chunk);
      const auto rows = random_implicit_pattern(n, shape.row_nnz, shape.seed, a, b);
      nnz += rows.nnz();
      rows.visit_columns([&](auto cols) {
        for (const auto c : cols)
          if (c < r0 || c >= r1)
            seen[static_cast<std::size_t>(c) >> 6] |= std::uint64_t(1) << (c & 63);
      });
    }
    RankHalo h;
    h.rank = r;
    h.rows = r1 - r0;
    h.nnz = nnz;
    std::vector<char> neighbour(static_cast<std::size_t>(ranks), 0);
    tbb::parallel_for(0, ranks, [&](int o) {
      if (o == r)
        return;
      const index_t b = part.begin(o), e = part.end(o);
      for (index_t i = b; i < e;) {
        // Whole words where they lie inside [b, e).
        if ((i & 63) == 0 && i + 64 <= e) {
          if (seen[static_cast<std::size_t>(i) >> 6]) {
            neighbour[o] = 1;
            return;
          }
          i += 64;
        } else {
          if (seen[static_cast<std::size_t>(i) >> 6] >> (i & 63) & 1) {
            neighbour[o] = 1;
            return;
          }
          ++i;
        }
      }
    });
    index_t ghosts = 0;
    for (const auto w : seen)
      ghosts += std::popcount(w);
    h.ghosts = ghosts;
    h.neighbours = static_cast<int>(std::count(neighbour.begin(), neighbour.end(), 1));
    out[k] = h;
  }
  return out;
}

} // namespace tacit::inline v1::mpi
