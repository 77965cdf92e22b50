// Scaling of the mpi component on generated truly implicit models
// (random_implicit_model: 16 random columns per row, ||A||_inf = 0.9), an MPI
// program:
//
//   mpirun -np P bench_mpi scaling [--states N] [--weak-states N] [--columns K]
//       [--repeats R] [--product-rounds S]
//       strong scaling (N states on 1..P ranks) and weak scaling (N per rank)
//       of the distributed SpMV (MatMult of the PETSc shell matrix of A on tacit's
//       CSR kernel, DistributedProduct; PETSc's MatMPIAIJ MatMult beside it at
//       one rank), Picard (distributed_predict,
//       per iteration) and the lambda_PF(|A|) enclosure, each rank count a
//       sub-communicator of the same run, as efficiency against one rank; and
//       one rank against the single-process tacit kernels on the same model
//       (CsrMatrix product, EquilibriumSolver Picard, perron_frobenius_bound).
//       All of them are timed in interleaved rounds (best of S single products,
//       best of R solves and enclosures), so that the host's drift reaches
//       every variant alike.
//   mpirun -np P bench_mpi enclosure [--states N]
//       where the lambda_PF(|A|) enclosure's time goes on 1..P ranks: the
//       set-up (DistributedProduct) and the iteration, the products alone;
//       at one rank the single-process SCC decomposition and
//       perron_frobenius_bound with and without it.
//   bench_mpi cost-model [--states 1e6,1e7,1e8] [--ranks 64,128,256,512,1024]
//       [--bandwidth GBIT] [--latency US] [--ns-per-nnz T] [--columns K]
//       the halo of the balanced partitions of the generated models, counted
//       without building them, against a network: bytes received per rank and
//       Picard iteration, and the time of that exchange against the compute
//       time at the measured per-core rate.
//   mpirun -np P bench_mpi large --states N --memory-budget BYTES
//       a model too large for one rank's budget: refused on one rank, then
//       generated across the P ranks (each its share), its lambda_PF(|A|)
//       certified and a slab of inputs solved; the bytes each rank holds.
//
// Every rank computes with one thread (--threads to change), so that P ranks
// use P cores.

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/model.hpp>
#include <tacit/mpi/generate.hpp>
#include <tacit/mpi/mpi.hpp>
#include <tacit/mpi/product.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/solve/solve.hpp>

#include <petscmat.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace tacit;

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

/// --name value options.
struct Options {
  std::map<std::string, std::string> values;
  std::string get(const std::string &n, const std::string &fallback) const {
    const auto it = values.find(n);
    return it == values.end() ? fallback : it->second;
  }
  double real(const std::string &n, double fallback) const {
    const auto it = values.find(n);
    if (it == values.end())
      return fallback;
    // Not a number (or trailing text): NaN, which every range check refuses.
    char *end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    return end == it->second.c_str() || *end != '\0' ? std::nan("") : v;
  }
  std::vector<double> list(const std::string &n, const std::string &fallback) const {
    std::vector<double> out;
    std::string s = get(n, fallback);
    std::size_t at = 0;
    while (at <= s.size()) {
      const auto comma = s.find(',', at);
      const std::string item =
          s.substr(at, comma == std::string::npos ? comma : comma - at);
      if (!item.empty())
        out.push_back(std::strtod(item.c_str(), nullptr));
      if (comma == std::string::npos)
        break;
      at = comma + 1;
    }
    return out;
  }
};

/// Best of `repeats` timings of f() (collective: the slowest rank's time).
template <class F> double best_time(MPI_Comm comm, int repeats, F &&f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    MPI_Barrier(comm);
    const double t0 = now();
    f();
    double t = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
    best = std::min(best, t);
  }
  return best;
}

/// The distributed A as a PETSc MatMPIAIJ (as the mpi component builds it).
Mat petsc_A(const mpi::DistributedModel &m) {
  const auto &L = m.A.local;
  const index_t own = L.rows();
  std::vector<PetscInt> rp(L.row_ptr().begin(), L.row_ptr().end());
  std::vector<PetscInt> ci(static_cast<std::size_t>(L.nnz()));
  for (std::int64_t e = 0; e < L.nnz(); ++e)
    ci[e] = static_cast<PetscInt>(L.column(e));
  std::vector<PetscScalar> v(L.values().begin(), L.values().end());
  Mat A = nullptr;
  MatCreateMPIAIJWithArrays(m.comm, static_cast<PetscInt>(own),
                            static_cast<PetscInt>(own), static_cast<PetscInt>(m.n),
                            static_cast<PetscInt>(m.n), rp.data(), ci.data(), v.data(),
                            &A);
  return A;
}

struct Timing {
  int ranks = 0;
  index_t n = 0;
  double spmv = 1e300, petsc_spmv = 1e300, picard_iter = 1e300, pf = 1e300;
  int picard_iterations = 0, pf_products = 0;
  // Single-process tacit on the same model (one rank only).
  double tacit_spmv = 1e300, tacit_picard_iter = 1e300, tacit_pf = 1e300,
         tacit_pf_given = 1e300;
  int tacit_picard_iterations = 0, tacit_pf_products = 0;
};

/// One rank count's objects on this rank (comm is MPI_COMM_NULL on the ranks
/// outside it): the distributed model, its shell and MatMPIAIJ, and at one
/// rank the single-process model.
struct RankCount {
  MPI_Comm comm = MPI_COMM_NULL;
  Timing t;
  std::unique_ptr<mpi::DistributedModel> m;
  std::unique_ptr<mpi::DistributedProduct> product;
  Mat shell = nullptr, aij = nullptr;
  Vec sx = nullptr, sy = nullptr, ax = nullptr, ay = nullptr;
  std::shared_ptr<CsrMatrix<double>> single_A;
  std::unique_ptr<Model<double>> single;
  std::unique_ptr<EquilibriumSolver<double>> solver;
  SccDecomposition scc;
  Batch<double> xs, ys;

  RankCount(int p, index_t n, const PicardOptions &po) {
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < p ? 0 : MPI_UNDEFINED, world_rank(),
                   &comm);
    t.ranks = p;
    t.n = n;
    if (comm == MPI_COMM_NULL)
      return;
    mpi::ImplicitModelShape shape;
    shape.states = n;
    shape.inputs = 256;
    m = std::make_unique<mpi::DistributedModel>(
        mpi::generate_distributed_model(shape, comm));
    product = std::make_unique<mpi::DistributedProduct>(*m);
    shell = product->petsc(Mode::normal);
    MatCreateVecs(shell, &sx, &sy);
    VecSet(sx, 1.0);
    aij = petsc_A(*m);
    MatCreateVecs(aij, &ax, &ay);
    VecSet(ax, 1.0);
    if (p == 1) {
      single_A = std::make_shared<CsrMatrix<double>>(m->A.local);
      single = std::make_unique<Model<double>>(
          single_A, std::make_shared<CsrMatrix<double>>(m->B.local),
          std::make_shared<CsrMatrix<double>>(m->C.local), nullptr, m->bias_x);
      SolveOptions so;
      so.method = SolveMethod::picard;
      so.picard = po;
      solver = std::make_unique<EquilibriumSolver<double>>(*single, so);
      // The distributed enclosure iterates on all the states as one block
      // without an SCC decomposition: the single-process one is timed with
      // and without it.
      scc = strongly_connected_components(*single_A);
      xs = Batch<double>(n, 1);
      ys = Batch<double>(n, 1);
      for (index_t i = 0; i < n; ++i)
        xs(i, 0) = 1.0;
    }
  }
  ~RankCount() {
    VecDestroy(&sx);
    VecDestroy(&sy);
    VecDestroy(&ax);
    VecDestroy(&ay);
    MatDestroy(&aij);
    product.reset();
    m.reset();
    if (comm != MPI_COMM_NULL)
      MPI_Comm_free(&comm);
  }
  RankCount(const RankCount &) = delete;
  RankCount &operator=(const RankCount &) = delete;

  /// Times f() on this rank count's ranks (the slowest rank) into `best`,
  /// the others waiting: collective over MPI_COMM_WORLD.
  template <class F> void time(double &best, F &&f) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (comm != MPI_COMM_NULL) {
      const double t0 = now();
      f();
      double s = now() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, comm);
      best = std::min(best, s);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
};

/// Strong or weak scaling over 1..P ranks. The host's speed drifts (other
/// tenants' memory traffic), so the rank counts and the single-process
/// kernels are timed in interleaved rounds and each figure is the best of its
/// rounds: every variant sees the same conditions.
std::vector<Timing> run_scaling(int P, bool strong, index_t strong_n, index_t weak_n,
                                index_t columns, int repeats, int product_rounds) {
  const PicardOptions po;
  std::vector<std::unique_ptr<RankCount>> counts;
  for (int p = 1; p <= P; ++p)
    counts.push_back(std::make_unique<RankCount>(p, strong ? strong_n : weak_n * p, po));
  // SpMV: MatMult of the shell matrix (tacit's CSR kernel on the own rows,
  // the ghosts by a VecScatter), of PETSc's MatMPIAIJ, and the single-process
  // CsrMatrix product; one product per round.
  for (int r = 0; r < product_rounds; ++r)
    for (auto &c : counts) {
      c->time(c->t.spmv, [&] { MatMult(c->shell, c->sx, c->sy); });
      c->time(c->t.petsc_spmv, [&] { MatMult(c->aij, c->ax, c->ay); });
      // Collective over the world: every rank enters, rank 0 alone runs it.
      if (c->t.ranks == 1)
        c->time(c->t.tacit_spmv,
                [&] { c->single_A->apply(Mode::normal, 1.0, c->xs, 0.0, c->ys); });
    }
  // Picard (the solve phase: the iteration, B u + b included; not the set-up
  // of the communication plan nor C x) and lambda_PF(|A|).
  const auto U = random_batch<double>(256, columns, 3);
  for (int r = 0; r < repeats; ++r)
    for (auto &c : counts) {
      MPI_Barrier(MPI_COMM_WORLD);
      if (c->comm != MPI_COMM_NULL) {
        Batch<double> Y;
        mpi::RankTimings timings;
        const SolveReport report = mpi::distributed_predict(*c->m, U, Y, po, &timings);
        double s = timings.solve.empty() ? 0 : timings.solve[0];
        if (c->m->rank == 0)
          s = *std::max_element(timings.solve.begin(), timings.solve.end());
        MPI_Bcast(&s, 1, MPI_DOUBLE, 0, c->comm);
        c->t.picard_iterations = report.iterations;
        c->t.picard_iter = std::min(c->t.picard_iter, s / std::max(1, report.iterations));
      }
      PerronBound pf;
      c->time(c->t.pf, [&] { pf = mpi::distributed_perron_bound(*c->m); });
      c->t.pf_products = pf.iterations;
      if (c->t.ranks == 1) { // collective over the world, as above
        SolveReport sr;
        double s = 1e300;
        c->time(s, [&] {
          Batch<double> Y;
          sr = c->solver->predict(U, Y);
        });
        c->t.tacit_picard_iterations = sr.iterations;
        c->t.tacit_picard_iter =
            std::min(c->t.tacit_picard_iter, s / std::max(1, sr.iterations));
        PerronBound b;
        c->time(c->t.tacit_pf, [&] { b = perron_frobenius_bound(*c->single_A); });
        c->t.tacit_pf_products = b.iterations;
        c->time(c->t.tacit_pf_given,
                [&] { b = perron_frobenius_bound(*c->single_A, c->scc); });
      }
    }
  std::vector<Timing> rows;
  for (const auto &c : counts)
    rows.push_back(c->t);
  return rows;
}

int scaling(const Options &o) {
  int P = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  const bool rank0 = world_rank() == 0;
  // Each option read once and checked before it is converted. The same
  // options on every rank: every rank refuses alike, no collective is left
  // waiting.
  bool valid = true;
  auto count = [&](const char *name, double fallback) {
    const double v = o.real(name, fallback);
    if (v >= 1 && v <= 1e9) // also fits the int counts
      return static_cast<index_t>(v);
    if (rank0 && valid)
      std::fprintf(stderr,
                   "bench_mpi scaling: --%s must be a number in [1, 1e9], got '%s'\n",
                   name, o.get(name, "").c_str());
    valid = false;
    return index_t(1);
  };
  const index_t strong_n = count("states", 1e6), weak_n = count("weak-states", 5e5),
                columns = count("columns", 32);
  const int repeats = static_cast<int>(count("repeats", 3)),
            product_rounds = static_cast<int>(count("product-rounds", 40));
  if (!valid)
    return 2;
  if (rank0)
    std::printf("generated model: random_implicit_model, 16 nonzeros per row, "
                "||A||_inf = 0.9, p = 256; Picard on %lld inputs; rank counts and "
                "single process timed in interleaved rounds: SpMV best of %d single "
                "products, Picard and lambda_PF best of %d\n",
                static_cast<long long>(columns), product_rounds, repeats);
  for (const bool strong : {true, false}) {
    const std::vector<Timing> rows =
        run_scaling(P, strong, strong_n, weak_n, columns, repeats, product_rounds);
    if (!rank0)
      continue;
    std::printf("\n%s scaling (%s)\n", strong ? "strong" : "weak",
                strong ? ("n = " + std::to_string(strong_n)).c_str()
                       : ("n = " + std::to_string(weak_n) + " per rank").c_str());
    std::printf("%5s %11s | %11s %5s | %13s %5s %4s | %11s %5s %5s\n", "ranks", "n",
                "SpMV s", "eff", "Picard s/it", "eff", "its", "lambda_PF s", "eff",
                "prods");
    const Timing &one = rows[0];
    for (const Timing &t : rows) {
      const double scale = strong ? t.ranks : 1.0;
      std::printf("%5d %11lld | %11.4g %5.2f | %13.4g %5.2f %4d | %11.4g %5.2f %5d\n",
                  t.ranks, static_cast<long long>(t.n), t.spmv,
                  one.spmv / (scale * t.spmv), t.picard_iter,
                  one.picard_iter / (scale * t.picard_iter), t.picard_iterations, t.pf,
                  one.pf / (scale * t.pf), t.pf_products);
    }
    std::printf(
        "one rank against single-process tacit (the same model, one thread):\n"
        "  SpMV %.4g s (PETSc MatMPIAIJ %.4g s) vs tacit %.4g s (x%.3f); Picard %.4g "
        "s/it (%d its) vs "
        "tacit %.4g s/it (%d its) (x%.3f); lambda_PF %.4g s (%d products) vs tacit "
        "%.4g s (%d products) (x%.3f; x%.3f against %.4g s with the SCC decomposition "
        "given)\n",
        one.spmv, one.petsc_spmv, one.tacit_spmv, one.spmv / one.tacit_spmv,
        one.picard_iter, one.picard_iterations, one.tacit_picard_iter,
        one.tacit_picard_iterations, one.picard_iter / one.tacit_picard_iter, one.pf,
        one.pf_products, one.tacit_pf, one.tacit_pf_products, one.pf / one.tacit_pf,
        one.pf / one.tacit_pf_given, one.tacit_pf_given);
    std::fflush(stdout);
  }
  return 0;
}

int cost_model(const Options &o) {
  if (world_rank() != 0)
    return 0;
  const auto sizes = o.list("states", "1e6,1e7,1e8");
  const auto rank_list = o.list("ranks", "64,128,256,512,1024");
  const double gbit = o.real("bandwidth", 100);       // Gb/s per rank (link)
  const double latency = o.real("latency", 2) * 1e-6; // s per message
  const double ns_nnz = o.real("ns-per-nnz", 1.0);    // per nonzero and column
  const auto columns = static_cast<index_t>(o.real("columns", 32));
  const int sample = static_cast<int>(o.real("sample", 8));
  const double bytes_per_s = gbit * 1e9 / 8;
  std::printf(
      "cost model: random_implicit_model (16 random columns per row), balanced "
      "partitions; per rank and Picard iteration on %lld inputs: receives ghosts x "
      "8 x %lld bytes from its neighbours; network %.0f Gb/s per rank, latency %.1f "
      "us per message (+ one allreduce, log2(P) latencies); compute %.3g ns per "
      "nonzero and input (measured on this machine, one core); no overlap\n",
      static_cast<long long>(columns), static_cast<long long>(columns), gbit,
      latency * 1e6, ns_nnz);
  std::printf("%11s %6s | %9s %11s %9s %5s | %11s %11s %11s %6s\n", "n", "ranks", "rows",
              "nnz", "ghosts", "nbrs", "MB/it", "compute s", "comm s", "eff");
  for (const double nd : sizes) {
    mpi::ImplicitModelShape shape;
    shape.states = static_cast<index_t>(nd);
    for (const double pd : rank_list) {
      const int P = static_cast<int>(pd);
      const bool all = shape.states <= 10000000;
      const auto halo = mpi::random_implicit_halo(shape, P, all ? 0 : sample);
      // The worst rank counted.
      const auto worst =
          *std::max_element(halo.begin(), halo.end(), [](const auto &a, const auto &b) {
            return a.ghosts < b.ghosts;
          });
      std::int64_t nnz_max = 0;
      for (const auto &h : halo)
        nnz_max = std::max(nnz_max, h.nnz);
      int nb = 0;
      for (const auto &h : halo)
        nb = std::max(nb, h.neighbours);
      const double bytes = double(worst.ghosts) * 8.0 * double(columns);
      const double compute = double(nnz_max) * double(columns) * ns_nnz * 1e-9;
      const double comm =
          nb * latency + bytes / bytes_per_s + std::ceil(std::log2(double(P))) * latency;
      std::printf(
          "%11lld %6d | %9lld %11lld %9lld %5d | %11.3f %11.4g %11.4g %6.2f%s\n",
          static_cast<long long>(shape.states), P, static_cast<long long>(worst.rows),
          static_cast<long long>(nnz_max), static_cast<long long>(worst.ghosts), nb,
          bytes / 1e6, compute, comm, compute / (compute + comm),
          all ? "" : (" (" + std::to_string(halo.size()) + " ranks counted)").c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

/// Where the enclosure's time goes, per rank count (diagnostic): the set-up
/// and the iteration of distributed_perron_bound (slowest rank), the
/// products alone, and at one rank the single-process SCC decomposition and
/// perron_frobenius_bound with and without it.
int enclosure(const Options &o) {
  int P = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  const auto n = static_cast<index_t>(o.real("states", 1e6));
  const int repeats = static_cast<int>(o.real("repeats", 3));
  const bool rank0 = world_rank() == 0;
  for (int p = 1; p <= P; ++p) {
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < p ? 0 : MPI_UNDEFINED, world_rank(),
                   &sub);
    if (sub != MPI_COMM_NULL) {
      mpi::ImplicitModelShape shape;
      shape.states = n;
      shape.inputs = 256;
      const auto m = mpi::generate_distributed_model(shape, sub);
      const auto slowest = [&](double t) {
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, sub);
        return t;
      };
      double setup = 1e300, solve = 1e300;
      PerronBound pf;
      for (int r = 0; r < repeats; ++r) {
        mpi::RankTimings tm;
        MPI_Barrier(sub);
        pf = mpi::distributed_perron_bound(m, {}, &tm);
        setup = std::min(setup, slowest(tm.setup[0]));
        solve = std::min(solve, slowest(tm.solve[0]));
      }
      const double total =
          best_time(sub, repeats, [&] { mpi::distributed_perron_bound(m); });
      const double build = best_time(sub, repeats, [&] { mpi::DistributedProduct d(m); });
      mpi::DistributedProduct d(m);
      const index_t own = m.own_end() - m.own_begin();
      std::vector<double> v(static_cast<std::size_t>(own), 1.0), y(v.size());
      const int k = pf.iterations;
      const double abs_products = best_time(sub, repeats, [&] {
        for (int i = 0; i < k; ++i)
          d.apply(Mode::abs, v, y);
      });
      const double products = best_time(sub, repeats, [&] {
        for (int i = 0; i < k; ++i)
          d.apply(Mode::normal, v, y);
      });
      // The same products through the PETSc shell matrix (MatMult).
      double shell = 0;
      {
        Mat S = d.petsc(Mode::normal);
        Vec xv = nullptr, yv = nullptr;
        MatCreateVecs(S, &xv, &yv);
        VecSet(xv, 1.0);
        shell = best_time(sub, repeats, [&] {
          for (int i = 0; i < k; ++i)
            MatMult(S, xv, yv);
        });
        VecDestroy(&xv);
        VecDestroy(&yv);
      }
      if (rank0)
        std::printf(
            "%d ranks, n = %lld: distributed_perron_bound %.4g s = set-up %.4g s "
            "(DistributedProduct %.4g s) + iteration %.4g s (%d products; "
            "%d |A| products alone %.4g s, A products %.4g s, by MatMult %.4g s)\n",
            p, static_cast<long long>(n), total, setup, build, solve, k, k, abs_products,
            products, shell);
      if (p == 1) {
        const CsrMatrix<double> &A = m.A.local;
        const double scc_time =
            best_time(sub, repeats, [&] { (void)strongly_connected_components(A); });
        const auto scc = strongly_connected_components(A);
        PerronBound b;
        const double whole =
            best_time(sub, repeats, [&] { b = perron_frobenius_bound(A); });
        const double given =
            best_time(sub, repeats, [&] { b = perron_frobenius_bound(A, scc); });
        std::printf("  single process: perron_frobenius_bound %.4g s = SCC decomposition "
                    "%.4g s + the rest; with the SCCs given %.4g s (%d products; "
                    "[%.17g, %.17g] against [%.17g, %.17g])\n",
                    whole, scc_time, given, b.iterations, b.lower, b.upper, pf.lower,
                    pf.upper);
      }
      std::fflush(stdout);
      MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return 0;
}

int large(const Options &o) {
  const bool rank0 = world_rank() == 0;
  mpi::ImplicitModelShape shape;
  shape.states = static_cast<index_t>(o.real("states", 4e6));
  shape.inputs = 256;
  const auto budget = static_cast<std::size_t>(o.real("memory-budget", 0));
  const auto columns = static_cast<index_t>(o.real("columns", 32));
  // One rank alone: refused by the budget (before anything is generated).
  MPI_Comm self = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank0 ? 0 : MPI_UNDEFINED, 0, &self);
  if (self != MPI_COMM_NULL) {
    try {
      mpi::generate_distributed_model(shape, self, budget);
      std::printf("one rank: the model fits the budget of %zu bytes\n", budget);
    } catch (const std::exception &e) {
      std::printf("one rank: %s\n", e.what());
    }
    MPI_Comm_free(&self);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = now();
  const auto m = mpi::generate_distributed_model(shape, MPI_COMM_WORLD, budget);
  const double build = now() - t0;
  std::int64_t bytes = static_cast<std::int64_t>(m.local_bytes());
  std::vector<std::int64_t> all(static_cast<std::size_t>(m.ranks));
  MPI_Gather(&bytes, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  t0 = now();
  const PerronBound pf = mpi::distributed_perron_bound(m);
  const double certify = now() - t0;
  const auto U = random_batch<double>(shape.inputs, columns, 3);
  Batch<double> Y;
  t0 = now();
  const SolveReport r = mpi::distributed_predict(m, U, Y);
  const double solve = now() - t0;
  if (rank0) {
    std::int64_t total = 0;
    std::printf("n = %lld, nnz(A) = %lld over %d ranks, budget %zu bytes per rank\n",
                static_cast<long long>(m.n), static_cast<long long>(m.A.global_nnz),
                m.ranks, budget);
    for (int k = 0; k < m.ranks; ++k) {
      std::printf("  rank %d: states [%lld, %lld), holds %lld bytes\n", k,
                  static_cast<long long>(m.states.begin(k)),
                  static_cast<long long>(m.states.end(k)),
                  static_cast<long long>(all[k]));
      total += all[k];
    }
    std::printf("  together %lld bytes; generated in %.3g s\n",
                static_cast<long long>(total), build);
    std::printf("  lambda_PF(|A|) in [%.17g, %.17g] (%s, %d products, %.3g s): %s\n",
                pf.lower, pf.upper, to_string(pf.status).c_str(), pf.iterations, certify,
                pf.certified() ? "certified well-posed" : "not certified");
    std::printf("  solve of %lld inputs: %s, %d iterations, residual %.3g (%.3g s)\n",
                static_cast<long long>(columns), to_string(r.status).c_str(),
                r.iterations, r.residual, solve);
  }
  return r.ok() && pf.certified() ? 0 : 3;
}

} // namespace

int main(int argc, char **argv) {
  tacit::mpi::Environment env(argc, argv);
  if (argc < 2) {
    if (world_rank() == 0)
      std::fprintf(
          stderr,
          "usage: mpirun -np P bench_mpi scaling|cost-model|large [--name value]...\n");
    return 1;
  }
  Options o;
  for (int i = 2; i + 1 < argc; i += 2)
    o.values[std::string(argv[i]).substr(2)] = argv[i + 1];
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(o.real("threads", 1)));
  const std::string mode = argv[1];
  if (mode == "scaling")
    return scaling(o);
  if (mode == "cost-model")
    return cost_model(o);
  if (mode == "large")
    return large(o);
  if (mode == "enclosure")
    return enclosure(o);
  if (world_rank() == 0)
    std::fprintf(stderr, "bench_mpi: unknown mode '%s' (scaling or cost-model)\n",
                 mode.c_str());
  return 1;
}
