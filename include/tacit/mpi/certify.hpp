#pragma once
/// \file certify.hpp
/// Certified l_inf robustness of a CSR model distributed by states
/// (component tacit::mpi): the certify_at, certified_radius and
/// certify_dataset of tacit/analysis/bounds.hpp with the global and interval
/// bounds of DistributedBoundAnalyzer, no rank holding the whole model.
///
/// Per input: the nominal states by the distributed Picard solve (the bits
/// of the single-process Picard solver, distributed_predict), the nominal
/// point and outputs (DistributedBoundAnalyzer::nominal), then for each
/// radius the box |u - u0| <= eps rounded outward and clipped to the domain
/// (linf_box), and the margins (DistributedBoundAnalyzer::margins: the
/// single-process bits on the same nominal point). An input counts as
/// certified at eps when it is classified right and every margin's lower
/// bound is > 0: the statement of a certificate is BoundAnalyzer's (the
/// exact real-number model with the stored float64 parameters, every real
/// input in the box; the analysis' own rounding accounted for).
///
/// Against `tacit certify` on the whole model: the same margins bit for bit
/// whenever the nominal states are the same bits, i.e. when the single
/// process solves by Picard (a model that is (almost) one strongly connected
/// block). Where it sweeps instead (feed-forward or block triangular A) its
/// states may differ from the Picard fixed point in the last bits
/// (within the solver's tolerance), and the margins by as little.
///
/// The inputs are certified one after another, each step spread over the
/// ranks (the single process certifies several inputs at once on its
/// threads). Thread safety: the calls are collective over the model's
/// communicator.

#include <functional>
#include <span>

#include <tacit/analysis/bounds.hpp>
#include <tacit/mpi/bounds.hpp>
#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi {

/// Whether `label` is certified on the l_inf ball of radius eps around
/// nominal.u (certify_at of bounds.hpp; options.method global, interval or
/// best = global, then interval). Collective; the same on every rank.
TACIT_EXPORT bool certify_at(const DistributedBoundAnalyzer &analyzer,
                             const NominalPoint<double> &nominal, int label, double eps,
                             const CertifyOptions &options);

/// The largest certified l_inf radius (certified_radius of bounds.hpp: the
/// same search, without a linear region). Collective.
TACIT_EXPORT double certified_radius(const DistributedBoundAnalyzer &analyzer,
                                     const NominalPoint<double> &nominal, int label,
                                     const CertifyOptions &options);

/// certify_dataset of bounds.hpp on the distributed model: U (p x k) and
/// the labels the same on every rank; the result the same on every rank.
/// `solve` are the options of the nominal Picard solve (the single process's
/// defaults by default). `timings` (when given): per rank, setup and solve
/// of the nominal solve, output the certification (gathered on rank 0).
/// Collective. \throws InvalidArgument (on every rank) when U does not have
/// p rows, the labels are not one per input in [0, q), an eps is negative or
/// not finite; Unsupported for BoundMethod::linear.
TACIT_EXPORT CertifiedAccuracy certify_states(
    const DistributedBoundAnalyzer &analyzer, const Batch<double> &U,
    std::span<const int> labels, std::span<const double> eps, bool radius,
    const CertifyOptions &options, const PicardOptions &solve = {},
    RankTimings *timings = nullptr,
    const std::function<void(index_t, index_t)> &progress = {});

} // namespace tacit::inline v1::mpi
