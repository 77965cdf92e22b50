#pragma once
/// \file bounds.hpp
/// Componentwise bounds on the states and outputs of an implicit model
///   y = C x + D u + c,  x = phi(A x + B u + b)
/// for every input in a box lo <= u <= hi, and certified l_inf radii.
///
/// Three bounds, each at least as tight as the previous one for every state
/// and every margin (each is intersected with the previous one):
///
/// - global: |x(u) - x0| <= w = (I - L|A|)^-1 (L |B| sigma + |r0|), with x0
///   the nominal equilibrium at u0, r0 its residual, L the activation
///   Lipschitz constants and sigma the largest distance from u0 to the box.
///   For a strictly block lower triangular A (a network from the builder or
///   ONNX) w is one forward sweep over the blocks; for another nilpotent A
///   the iteration w <- L |A| w + s, which terminates after depth + 1 steps;
///   with cycles the iteration to a tolerance, raised along a positive vector
///   v with L|A| v <= rho v (rho < 1, a Collatz-Wielandt bound computed once
///   per model) until it is a supersolution w >= L|A| w + s, checked as
///   computed. A nilpotent A needs no certificate vector (rate() is 0).
/// - interval: the interval fixed point l' = phi(A+ l + A- h + B u - ...),
///   h' = phi(A+ h + A- l + ...), in centre/radius form A m +- |A| r,
///   intersected with the global interval. Every iterate is sound (the map
///   preserves enclosures because phi is monotone). A strictly block lower
///   triangular A is swept once, block by block (no global bound needed);
///   another nilpotent A takes depth + 1 steps; with cycles the iteration
///   stops when the interval stops shrinking.
/// - linear (CROWN-style): each activation is enclosed between two lines
///   valid on its pre-activation interval (ReLU: the chord h/(h-l) (z - l)
///   above and slope 0 or 1 below, chosen adaptively; leaky ReLU alike;
///   tanh/sigmoid: the chord slope with the extreme offsets, i.e. chord and
///   parallel tangent). A lower bound of w^T x + d^T u + const is obtained by
///   back-substitution through the equilibrium: the dual vector solves
///   v = w + A^T Lambda(v), Lambda the slope chosen by the sign of v, by one
///   reverse sweep over the blocks of a strictly block lower triangular A, or
///   by Jacobi iteration with transposed products (exact after depth + 1
///   steps for a nilpotent A, geometric with cycles). Any v gives a sound
///   bound: the residual e = w + A^T Lambda(v) - v is bounded with the state
///   interval. With refinement (full CROWN) the pre-activation bounds of the
///   unstable states are tightened level by level of the dependency DAG with
///   the same back-substitution, within BoundOptions::refine_budget. For a
///   feed-forward A, margins the adaptive lower lines do not prove positive
///   get the lower slopes of their unstable ReLUs optimised by projected
///   gradient ascent (as in alpha-CROWN; BoundOptions::slope_steps).
///
/// Margins y_c - y_k are bounded from the difference rows C_c - C_k (and
/// D_c - D_k), which is tighter than two rows of the sensitivity matrix.
///
/// What a certificate guarantees: the bounds hold for the exact real-number
/// model whose parameters are the stored values of T (a float model's
/// parameters are what its file holds, read as real numbers), for every real
/// input in the box; BoundAnalyzer<float> and BoundAnalyzer<double> make the
/// same statement, about their own models. The rounding of the analysis
/// itself is accounted for: every product M v it computes, by any kernel in
/// any summation order, is off by at most gamma_M Mhat |v|, with gamma_M =
/// 2 (k + 8) u for at most k products summed per output (u the unit
/// roundoff of T) and Mhat >= |M| the majorant of the parts that compute it
/// (|L| |R| for a product kept unevaluated, the sum of |parts| for blocks
/// that sum several operators; see lib/analysis/detail/rounding.hpp). Each
/// bound is widened by that much: interval radii through Mhat (r + gamma
/// (|m| + r)), the nominal residual by gamma (Ahat |x0| + Bhat |u0| + |b|),
/// each step of the global bound by a factor 1 + gamma (so that a computed
/// fixed point is a supersolution however the error grows with depth), and
/// every linear or interval lower bound sum_t a_t by gamma' sum_t |a_t| with
/// the magnitudes of the dual vectors against the state and input boxes
/// (gamma' adds the (n + p) terms of the final sum). Boxes are rounded
/// outward. So a margin that is exactly 0 in exact arithmetic is never
/// certified. It does not cover the rounding of a forward pass that
/// evaluates the model in T: the prediction of such a pass near the edge of
/// a certified box may differ from the exact model's. The relaxations of
/// tanh and sigmoid carry their own slack. All computation is deterministic.
///
/// Thread safety: a BoundAnalyzer is immutable after construction; all its
/// members may be called from several threads at once (each call has its own
/// workspace). certified_radius, certify_at and certify_dataset only read
/// the analyzer. All its work (the set-up, each bound, certify_dataset) runs
/// in BoundOptions::exec.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tacit/core/execution.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

/// Which bound to use for margins and certification. `best` tries global,
/// then interval, then linear, stopping at the first that certifies; its
/// margins are those of `linear`.
enum class BoundMethod { global, interval, linear, best };
/// "global", "interval", "linear", "best".
TACIT_EXPORT std::string to_string(BoundMethod m);
/// Inverse of to_string. \throws InvalidArgument otherwise.
TACIT_EXPORT BoundMethod parse_bound_method(std::string_view s);

/// A box of inputs lower <= u <= upper (both of size p).
template <class T> struct TACIT_EXPORT InputBox { std::vector<T> lower, upper; };

/// The box |u - u0| <= eps, intersected with [domain_lo, domain_hi] when
/// domain_lo <= domain_hi (pass domain_lo > domain_hi for no clipping).
/// \throws InvalidArgument when eps is negative or NaN.
template <class T>
TACIT_EXPORT InputBox<T> linf_box(std::span<const T> u0, T eps, T domain_lo = T(1),
                                  T domain_hi = T(0));
/// The box |u - u0| <= sigma componentwise (sigma >= 0, size p).
template <class T>
TACIT_EXPORT InputBox<T> box_around(std::span<const T> u0, std::span<const T> sigma);

struct TACIT_EXPORT BoundOptions {
  /// Iteration budget of every fixed point (global, interval, dual) on a
  /// model with cycles; a feed-forward model needs depth + 1 iterations.
  int max_iterations = 500;
  /// Relative change below which a cyclic iteration stops.
  double tolerance = 1e-10;
  /// Refine intermediate pre-activation bounds by back-substitution (full
  /// CROWN) in the linear bound.
  bool refine = true;
  /// Columns per back-substitution batch during refinement.
  index_t refine_batch = 256;
  /// Work limit of the refinement of one box, in state entries of the
  /// back-substitutions (columns times the states they sweep). Once spent,
  /// the remaining states keep their interval bounds (sound, looser): on a
  /// deep network every state of the later levels may look unstable to the
  /// interval bound, and refining them all would cost a back-substitution
  /// per state. The committed Fashion-MNIST models stay well inside it.
  double refine_budget = 67108864; // 2^26

  /// Linear bound of a feed-forward model: margins that the adaptive lower
  /// lines of the unstable ReLUs do not prove positive get their lower
  /// slopes optimised (projected gradient ascent on the bound, as in
  /// alpha-CROWN) for this many steps; 0 disables. Skipped when the
  /// refinement was truncated by refine_budget.
  int slope_steps = 20;

  /// Use the linear region of the nominal point (BoundAnalyzer::
  /// linear_region) where it applies: certify_dataset computes it once per
  /// input for the linear and best bounds of a piecewise-linear feed-forward
  /// model, and margins within its radius come from the exact affine map.
  bool linear_region = true;
  /// Columns of the Jacobian pushed through the network at a time by
  /// linear_region (memory: states x columns values).
  index_t region_columns = 64;

  /// Where the analyzer's work runs: its set-up, every bound and the
  /// certification of a data set (Execution::threads(4): at most 4 threads).
  Execution exec = Execution::parallel;
};

enum class BoundStatus {
  ok,       ///< bounds computed (every iteration converged)
  inexact,  ///< an iteration hit its budget; bounds still sound, looser
  unbounded ///< no certificate lambda_PF(L|A|) < 1: bounds are infinite
};
TACIT_EXPORT std::string to_string(BoundStatus s);

/// Bounds on the states x and pre-activations z = A x + B u + b.
template <class T> struct TACIT_EXPORT StateBounds {
  std::vector<T> x_lower, x_upper;
  std::vector<T> z_lower, z_upper;
  BoundStatus status = BoundStatus::ok;
  int iterations = 0; ///< interval iterations (or global iterations)
};

/// Lower bounds of the margins y_label - y_k for every k (entry label is 0),
/// and componentwise output bounds.
template <class T> struct TACIT_EXPORT MarginBounds {
  std::vector<T> margin_lower;     ///< size q; +inf-free, entry label = 0
  std::vector<T> y_lower, y_upper; ///< size q
  BoundStatus status = BoundStatus::ok;
  /// All margins k != label are > 0: the label is certified on the box.
  bool certified() const noexcept;
  int label = 0;
};

/// The linear region of a piecewise-linear feed-forward model around an
/// input u0: the l_inf radius on which no ReLU-like state changes its
/// activation pattern (so that y(u) = y(u0) + J (u - u0) exactly), and the
/// outputs and Jacobian that describe the model there. Computed by
/// BoundAnalyzer::linear_region:
/// - the states and outputs at u0 in double-double arithmetic (about 106
///   bits, error-free products and sums over the operators' explicit
///   entries), with an a-priori bound of their error: the interval bounds
///   widen by |A| per level (about 50x per residual block of ResNet20), so
///   double precision alone leaves errors larger than the margins of a deep
///   network, while 106 bits leave them below 1e-9;
/// - the Jacobian J of the pre-activations with respect to u under the
///   pattern at u0, pushed through the network's own operators (in T) a
///   block of columns at a time, and the l1 norm of each of its rows with an
///   a-priori bound of their rounding.
/// The radius is min_i (|z_i| - e_i) / (||J_i||_1 + d_i) over the ReLU-like
/// states i (z_i the pre-activation at u0, e_i and d_i the error bounds), so
/// every input within it gives every such state the sign it has at u0.
/// Margins within the radius: m_k(u) >= m_k(u0) - eps ||J_label - J_k||_1,
/// with the error bounds subtracted.
struct TACIT_EXPORT LinearRegion {
  index_t inputs = 0, outputs = 0;
  /// Certified radius of the activation pattern (0 when some pre-activation
  /// at u0 is within its error bound of 0).
  double radius = 0;
  /// The state whose pre-activation limits the radius (-1 when none does).
  index_t limiting_state = -1;
  /// Outputs at u0 and bounds of their error.
  std::vector<double> y, y_error;
  /// q x p row-major: the computed output Jacobian in the region, and per
  /// row a bound of the l1 distance to the exact one.
  std::vector<double> jacobian, jacobian_error;
  /// Wall time of its computation.
  double seconds = 0;

  /// A lower bound of y_label(u) - y_k(u) over ||u - u0||_inf <= eps, or
  /// -infinity when eps exceeds the radius.
  double margin_lower(int label, int k, double eps) const;
  /// Lower and upper bounds of y_k(u) over ||u - u0||_inf <= eps (infinite
  /// when eps exceeds the radius).
  std::pair<double, double> output_bounds(int k, double eps) const;
  /// The largest eps (<= radius) at which every margin of label is > 0 by
  /// margin_lower; 0 when none.
  double certified_radius(int label) const;
};

/// The exact real-number model's pre-activations z*, states x* and outputs
/// y* at an input u0, to about 106 bits: each as hi + lo (double-double,
/// error-free products and sums over the operators' explicit entries) with
/// an a-priori bound of its distance to the exact value, e.g.
/// |z*_i - (z_hi_i + z_lo_i)| <= z_error_i. Computed by
/// BoundAnalyzer::precise_nominal for a piecewise-linear feed-forward
/// network; the linear region and the interval bound around u0
/// (BoundAnalyzer::interval_margins_around) start from it.
struct TACIT_EXPORT PreciseNominal {
  std::vector<double> z_hi, z_lo, z_error;
  std::vector<double> x_hi, x_lo, x_error;
  /// Outputs rounded to double, and bounds of their error.
  std::vector<double> y, y_error;
  /// Wall time of its computation.
  double seconds = 0;
};

/// The nominal point: equilibrium x0 at u0, outputs y0, the residual
/// r0 = x0 - phi(A x0 + B u0 + b).
template <class T> struct TACIT_EXPORT NominalPoint {
  std::vector<T> u, x, y, residual;
  /// Bound on the rounding error of `residual` (componentwise).
  std::vector<T> residual_rounding;
  /// argmax of y (first on ties).
  int predicted() const noexcept;
  /// The linear region around u (BoundAnalyzer::linear_region), when it was
  /// computed: margins with the linear and best bounds on boxes within its
  /// radius use it, and certified_radius starts from it.
  std::shared_ptr<const LinearRegion> region;
  /// The point to ~106 bits (BoundAnalyzer::precise_nominal), when it was
  /// computed: certify_at with the interval bound then bounds the offsets
  /// from it (interval_margins_around), and linear_region reuses it.
  std::shared_ptr<const PreciseNominal> precise;
};

/// Statistics of a linear bound.
struct TACIT_EXPORT LinearBoundStats {
  index_t unstable_before = 0; ///< unstable ReLU-like states from the interval bound
  index_t unstable_after = 0;  ///< after refinement
  index_t refined = 0;         ///< pre-activation bounds refined (both sides)
  bool truncated = false;      ///< the refinement stopped at BoundOptions::refine_budget
  int dual_iterations = 0;     ///< largest dual iteration count
};

/// Local Lipschitz bounds of the outputs over a box. For u, u' in the box,
/// y(u) - y(u') = J (u - u') with a mean-value Jacobian
///     J = C P (I - A P)^-1 B + D,   P = diag(s),
/// s_i a secant slope of phi_i between two points of the pre-activation
/// interval [z_lower_i, z_upper_i] (ReLU: 0 or 1 when stable, [0, 1] when
/// unstable). J is enclosed by interval arithmetic through the equilibrium
/// (centre/radius form, signs of A, B and C kept): one reverse sweep for a
/// strictly block lower triangular A, a fixed point iteration otherwise
/// (exact after depth + 1 steps for a feed-forward A; with cycles, verified
/// by an inflated inclusion F(W) within W).
struct TACIT_EXPORT LocalLipschitz {
  /// q x p, row-major: |J_kj| <= magnitude[k * p + j] for every such J.
  std::vector<double> magnitude;
  /// Row sums of `magnitude`: |y_k(u) - y_k(u')| <= upper[k] ||u - u'||_inf
  /// for all u, u' in the box.
  std::vector<double> upper;
  /// unbounded (all entries +inf) when the state bounds are, or when the
  /// inclusion of a cyclic iteration could not be verified.
  BoundStatus status = BoundStatus::ok;
  int iterations = 0; ///< sweeps (1) or fixed point steps
};

/// Prepared bound computations for one model: activations, levels of the
/// strongly connected components of A and the certificate vector of the
/// global bound are computed once. All methods are const and may be called
/// from several threads at once (they allocate their own workspace).
template <class T> class TACIT_EXPORT BoundAnalyzer {
public:
  /// \throws Unsupported for a leaky ReLU with a negative slope (not
  /// monotone).
  explicit BoundAnalyzer(const Model<T> &model, BoundOptions options = {});
  ~BoundAnalyzer();
  BoundAnalyzer(BoundAnalyzer &&) noexcept;
  BoundAnalyzer &operator=(BoundAnalyzer &&) noexcept;

  const Model<T> &model() const noexcept;
  const BoundOptions &options() const noexcept;
  /// Whether lambda_PF(L|A|) < 1 was certified (always for a feed-forward A).
  bool certified_well_posed() const noexcept;
  /// The certified rate rho >= lambda_PF(L|A|) of the global bound: 0 for a
  /// nilpotent A (exact), otherwise a Collatz-Wielandt bound computed
  /// upward (1 when it is not below 1).
  double rate() const noexcept;
  /// Number of levels of the SCC DAG (depth + 1 of a feed-forward A).
  index_t levels() const noexcept;
  /// A is nilpotent (feed-forward).
  bool feed_forward() const noexcept;
  /// Whether linear_region applies: A strictly block lower triangular (a
  /// network from the builder or ONNX) and every activation ReLU, leaky ReLU
  /// or identity. Otherwise `why` (when given) says what is missing.
  bool linear_region_supported(std::string *why = nullptr) const;

  /// Nominal point from u0 and its equilibrium x0 (from a solver).
  NominalPoint<T> nominal(std::span<const T> u0, std::span<const T> x0) const {
    return run([&] { return nominal_in_arena(u0, x0); });
  }
  /// Nominal point, solving the equilibrium (sweep/Picard).
  NominalPoint<T> nominal(std::span<const T> u0) const {
    return run([&] { return nominal_in_arena(u0); });
  }

  /// The linear region around nominal.u (see LinearRegion); the first call
  /// materialises the operators' entries once (kept by the analyzer).
  /// \throws Unsupported unless linear_region_supported().
  LinearRegion linear_region(const NominalPoint<T> &nominal) const {
    return run([&] { return linear_region_in_arena(nominal); });
  }
  /// The nominal point's pre-activations, states and outputs to ~106 bits
  /// (see PreciseNominal).
  /// \throws Unsupported unless linear_region_supported().
  PreciseNominal precise_nominal(const NominalPoint<T> &nominal) const {
    return run([&] { return precise_nominal_in_arena(nominal); });
  }
  /// Margins y_label - y_k and output bounds by the interval bound on the
  /// l_inf ball of radius eps around nominal.u (clipped to [domain_lo,
  /// domain_hi] when domain_lo <= domain_hi), propagated as offsets from the
  /// exact nominal point of `precise`: d = x(u) - x*(u0) satisfies
  /// d_z = A d_x + B (u - u0) (no bias, no rounding of the nominal values)
  /// and d_x = phi(z* + d_z) - phi(z*), enclosed by centre/radius interval
  /// arithmetic one block at a time. In exact arithmetic these are the
  /// interval bound's sets; in floating point every rounding is relative to
  /// the offsets, and the ball is never rounded to T, so radii far below
  /// the unit roundoff of the inputs stay meaningful: on a deep network
  /// whose interval widths grow by |A| per layer, the point-box rounding of
  /// the box bound (interval_bounds) exceeds the margins, this one does not.
  /// \throws Unsupported unless linear_region_supported(); InvalidArgument
  /// for a bad eps, label or a `precise` of other dimensions.
  MarginBounds<T> interval_margins_around(const NominalPoint<T> &nominal,
                                          const PreciseNominal &precise, double eps,
                                          int label, double domain_lo = 1,
                                          double domain_hi = 0) const {
    return run([&] {
      return interval_margins_around_in_arena(nominal, precise, eps, label, domain_lo,
                                              domain_hi);
    });
  }

  /// The global interval x0 -/+ w.
  StateBounds<T> global_bounds(const NominalPoint<T> &nominal,
                               const InputBox<T> &box) const {
    return run([&] { return global_bounds_in_arena(nominal, box); });
  }
  /// The interval fixed point, started from the global interval.
  StateBounds<T> interval_bounds(const NominalPoint<T> &nominal,
                                 const InputBox<T> &box) const {
    return run([&] { return interval_bounds_in_arena(nominal, box); });
  }
  /// Interval bounds refined by back-substitution (full CROWN) when
  /// options().refine; otherwise the interval bounds.
  StateBounds<T> linear_state_bounds(const NominalPoint<T> &nominal,
                                     const InputBox<T> &box,
                                     LinearBoundStats *stats = nullptr) const {
    return run([&] { return linear_state_bounds_in_arena(nominal, box, stats); });
  }

  /// Margins y_label - y_k and output bounds with the given method (best =
  /// linear margins, computed lazily: stops at the first certifying bound).
  MarginBounds<T> margins(const NominalPoint<T> &nominal, const InputBox<T> &box,
                          int label, BoundMethod method,
                          LinearBoundStats *stats = nullptr) const {
    return run([&] { return margins_in_arena(nominal, box, label, method, stats); });
  }

  /// Lower bounds of g_j^T y over the box, for the columns g_j of G (q x k,
  /// row-major), by the linear bound on top of the given state bounds.
  std::vector<T> linear_lower(const StateBounds<T> &bounds, const InputBox<T> &box,
                              ConstMatrixView<T> G,
                              int *dual_iterations = nullptr) const {
    return run([&] { return linear_lower_in_arena(bounds, box, G, dual_iterations); });
  }
  /// The same by interval arithmetic on the state bounds.
  std::vector<T> interval_lower(const StateBounds<T> &bounds, const InputBox<T> &box,
                                ConstMatrixView<T> G) const {
    return run([&] { return interval_lower_in_arena(bounds, box, G); });
  }

  /// Local Lipschitz bounds over a box from pre-activation bounds valid on
  /// it (the tighter, the tighter the result: linear_state_bounds gives the
  /// best). Each upper[k] is at most the global (S 1)_k in exact arithmetic.
  LocalLipschitz local_lipschitz(const StateBounds<T> &bounds) const {
    return run([&] { return local_lipschitz_in_arena(bounds); });
  }

private:
  // The public members run these in options().exec.
  template <class F> decltype(auto) run(F &&f) const { return options().exec.run(f); }
  NominalPoint<T> nominal_in_arena(std::span<const T> u0, std::span<const T> x0) const;
  NominalPoint<T> nominal_in_arena(std::span<const T> u0) const;
  StateBounds<T> global_bounds_in_arena(const NominalPoint<T> &,
                                        const InputBox<T> &) const;
  StateBounds<T> interval_bounds_in_arena(const NominalPoint<T> &,
                                          const InputBox<T> &) const;
  StateBounds<T> linear_state_bounds_in_arena(const NominalPoint<T> &,
                                              const InputBox<T> &,
                                              LinearBoundStats *) const;
  MarginBounds<T> margins_in_arena(const NominalPoint<T> &, const InputBox<T> &,
                                   int label, BoundMethod, LinearBoundStats *) const;
  std::vector<T> linear_lower_in_arena(const StateBounds<T> &, const InputBox<T> &,
                                       ConstMatrixView<T> G, int *dual_iterations) const;
  std::vector<T> interval_lower_in_arena(const StateBounds<T> &, const InputBox<T> &,
                                         ConstMatrixView<T> G) const;
  LocalLipschitz local_lipschitz_in_arena(const StateBounds<T> &) const;
  LinearRegion linear_region_in_arena(const NominalPoint<T> &) const;
  PreciseNominal precise_nominal_in_arena(const NominalPoint<T> &) const;
  MarginBounds<T> interval_margins_around_in_arena(const NominalPoint<T> &,
                                                   const PreciseNominal &, double eps,
                                                   int label, double domain_lo,
                                                   double domain_hi) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- certification

struct TACIT_EXPORT CertifyOptions {
  BoundMethod method = BoundMethod::best;
  BoundOptions bounds;
  /// Clip boxes to [domain_lo, domain_hi] (no clipping when lo > hi).
  double domain_lo = 1, domain_hi = 0;
  /// Radius search: largest radius tried, and bisection steps.
  double max_radius = 1.0;
  int bisection_steps = 16;
};

/// Per-input outcome.
struct TACIT_EXPORT Certificate {
  int label = 0;
  int predicted = 0;
  /// Largest l_inf radius found certified (0 when misclassified).
  double radius = 0;
  /// Certified at each requested epsilon (false when misclassified).
  std::vector<char> certified;
  /// Radius of the linear region around the input (-1 when not computed).
  double region_radius = -1;
};

/// Largest certified l_inf radius around u0 for `label` (0 when the nominal
/// prediction differs): grows the radius geometrically, then bisects between
/// the last certified and the first failed radius. With a linear region in
/// the nominal point (linear and best bounds), starts from the region's
/// certified radius and returns it when twice that radius fails. The
/// returned radius was certified by the chosen bound.
template <class T>
TACIT_EXPORT double certified_radius(const BoundAnalyzer<T> &analyzer,
                                     const NominalPoint<T> &nominal, int label,
                                     const CertifyOptions &options);

/// Whether `label` is certified on the l_inf ball of radius eps.
template <class T>
TACIT_EXPORT bool certify_at(const BoundAnalyzer<T> &analyzer,
                             const NominalPoint<T> &nominal, int label, double eps,
                             const CertifyOptions &options);

/// Summary over a dataset.
struct TACIT_EXPORT CertifiedAccuracy {
  index_t count = 0;
  index_t correct = 0;                ///< nominal accuracy numerator
  std::vector<double> eps;            ///< the requested radii
  std::vector<index_t> certified;     ///< per eps: certified and correct
  std::vector<Certificate> per_input; ///< in input order
  double seconds = 0;
};

/// Certifies every column of U (labels per column): nominal states by one
/// batched solve, then per-input bounds in parallel (TBB). For the linear and
/// best bounds of a model where linear_region_supported() (and
/// BoundOptions::linear_region), each correctly classified input's linear
/// region is computed once and used by its margins and radius. With
/// `radius` the largest certified radius of each input is searched too.
/// `progress(done, total)` is called from the calling thread or workers
/// (serialised), may be empty.
template <class T>
TACIT_EXPORT CertifiedAccuracy certify_dataset(
    const BoundAnalyzer<T> &analyzer, const Batch<T> &U, std::span<const int> labels,
    std::span<const double> eps, bool radius, const CertifyOptions &options,
    const std::function<void(index_t, index_t)> &progress = {});

} // namespace tacit::inline v1
