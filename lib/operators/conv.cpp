// Conv2dOperator: tap description (reference kernels, sums, CSR) and the
// fast CHWN kernels of operators/detail/conv_kernels.hpp (through the active
// instruction-set level's table).
#include <tacit/core/csr.hpp>
#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "operators/detail/conv_plan.hpp"

namespace tacit::inline v1 {

namespace detail {

/// Scratch buffers of every convolution of the process: whole-product
/// buffers (the padded input, the adjoint's accumulator) and per-task ones
/// (packed tiles). Shared, so that a network's convolutions reuse the same
/// few buffers (first touched once, warm in the TLB) instead of one each.
template <class T> ScratchPool<T> &conv_product_buffers() {
  static ScratchPool<T> pool;
  return pool;
}
template <class T> ScratchPool<T> &conv_task_buffers() {
  static ScratchPool<T> pool;
  return pool;
}

/// One phase of a strided convolution's adjoint: the rows h of the adjoint's
/// output with (h + pad_top) % stride_h == rh (columns likewise) receive
/// only the taps kh with kh * dilation_h % stride_h == rh, from the output
/// rows oh = m - e(kh), m = (h + pad_top - rh) / stride_h: a stride-1
/// convolution of the adjoint's input with a sub-kernel, run by the forward
/// micro-kernel, which stores it straight into its rows (h = m * stride_h + rh -
/// pad_top; ConvPlan's output map).
template <class T> struct AdjointPhase {
  index_t m0h = 0, m0w = 0; ///< first phase index of each axis
  index_t hm = 0, wm = 0;   ///< the phase's rows and columns of the output
  index_t hc = 0, wc = 0;   ///< the phase convolution's output extent (>= hm, wm)
  index_t rh = 0, rw = 0;
  std::unique_ptr<Conv2dOperator<T>> op, op_abs; ///< null: no tap reaches the phase
  /// op's plan on the padded input all phases share (phase_input_plan), its
  /// output stored straight into the adjoint's rows of the phase.
  std::optional<ConvPlan> plan;
};

/// One axis of a phase: taps, first index, extent and pads.
struct PhaseAxis {
  bool ok = true;
  index_t m0 = 0, count = 0, computed = 0, pad_lo = 0, pad_hi = 0, taps = 0;
  std::vector<index_t> tap; ///< sub-kernel index of each kernel tap, -1 if none
};

inline PhaseAxis phase_axis(index_t rho, index_t s, index_t d, index_t pad, index_t K,
                            index_t in, index_t out) {
  PhaseAxis a;
  a.m0 = pad - rho <= 0 ? 0 : (pad - rho + s - 1) / s;
  const index_t last = in - 1 + pad - rho;
  a.count = last < 0 ? 0 : std::max<index_t>(0, last / s - a.m0 + 1);
  a.tap.assign(static_cast<std::size_t>(K), -1);
  index_t P = -1;
  for (index_t k = 0; k < K; ++k)
    if ((k * d) % s == rho)
      P = std::max(P, (k * d - rho) / s);
  if (P < 0 || a.count == 0)
    return a; // no tap, or no output position: the phase is empty
  a.taps = P + 1;
  for (index_t k = 0; k < K; ++k)
    if ((k * d) % s == rho)
      a.tap[k] = P - (k * d - rho) / s;
  a.pad_lo = P - a.m0;
  if (a.pad_lo < 0) {
    a.ok = false; // the phase starts past the sub-kernel's reach: not a plain conv
    return a;
  }
  a.pad_hi = std::max<index_t>(0, a.count - (out + a.pad_lo - a.taps + 1));
  a.computed = out + a.pad_lo + a.pad_hi - a.taps + 1;
  return a;
}

/// The phases share one padded copy of the adjoint's input (pads the largest
/// any phase needs): the plan that fills it, and each phase's plan reading it
/// at its own offset and writing the rows of its phase (sets `plan`).
template <class T>
ConvPlan phase_input_plan(const Conv2dGeometry &g, std::vector<AdjointPhase<T>> &phases) {
  index_t top = 0, bottom = 0, left = 0, right = 0;
  for (const auto &ph : phases)
    if (ph.op) {
      const auto &a = ph.op->geometry();
      top = std::max(top, a.pad_top);
      bottom = std::max(bottom, a.pad_bottom);
      left = std::max(left, a.pad_left);
      right = std::max(right, a.pad_right);
    }
  Conv2dGeometry f;
  f.input = g.output();
  f.out_channels = 1;
  f.pad_top = top;
  f.pad_bottom = bottom;
  f.pad_left = left;
  f.pad_right = right;
  ConvPlan fill(f);
  const index_t H = g.input.height, W = g.input.width;
  for (auto &ph : phases) {
    if (!ph.op)
      continue;
    const auto &a = ph.op->geometry();
    ConvPlan q(a);
    q.Hq = fill.Hq;
    q.Wq = fill.Wq;
    const index_t dh = top - a.pad_top, dw = left - a.pad_left;
    for (index_t c = 0; c < q.cin_g; ++c)
      for (index_t kh = 0; kh < q.KH; ++kh)
        for (index_t kw = 0; kw < q.KW; ++kw)
          q.tap_offset[(c * q.KH + kh) * q.KW + kw] =
              (c * q.Hq + kh + dh) * q.Wq + kw + dw;
    q.OH = ph.hm;
    q.OW = ph.wm;
    q.y_first = (ph.m0h * g.stride_h + ph.rh - g.pad_top) * W +
                (ph.m0w * g.stride_w + ph.rw - g.pad_left);
    q.y_chan = H * W;
    q.y_row = g.stride_h * W;
    q.y_col = g.stride_w;
    q.input_prefilled = true;
    ph.plan = std::move(q);
  }
  return fill;
}

template <class T> struct ConvState;

/// The phases of a strided convolution's adjoint (empty when one phase is not
/// a plain convolution; the scatter kernel is used then).
template <class T>
std::vector<AdjointPhase<T>> adjoint_phases(const Conv2dGeometry &g, std::span<const T> w) {
  std::vector<AdjointPhase<T>> phases;
  const auto o = g.output();
  const index_t cin_g = g.input.channels / g.groups, cout_g = g.out_channels / g.groups;
  for (index_t rh = 0; rh < g.stride_h; ++rh)
    for (index_t rw = 0; rw < g.stride_w; ++rw) {
      const PhaseAxis ah = phase_axis(rh, g.stride_h, g.dilation_h, g.pad_top, g.kernel_h,
                                      g.input.height, o.height);
      const PhaseAxis aw = phase_axis(rw, g.stride_w, g.dilation_w, g.pad_left, g.kernel_w,
                                      g.input.width, o.width);
      if (!ah.ok || !aw.ok)
        return {};
      AdjointPhase<T> ph;
      ph.rh = rh;
      ph.rw = rw;
      ph.m0h = ah.m0;
      ph.m0w = aw.m0;
      ph.hm = ah.count;
      ph.wm = aw.count;
      if (ah.count > 0 && aw.count > 0 && ah.taps > 0 && aw.taps > 0) {
        Conv2dGeometry a;
        a.input = o;
        a.out_channels = g.input.channels;
        a.kernel_h = ah.taps;
        a.kernel_w = aw.taps;
        a.pad_top = ah.pad_lo;
        a.pad_bottom = ah.pad_hi;
        a.pad_left = aw.pad_lo;
        a.pad_right = aw.pad_hi;
        a.groups = g.groups;
        ph.hc = ah.computed;
        ph.wc = aw.computed;
        std::vector<T> sub(static_cast<std::size_t>(g.input.channels * cout_g * ah.taps *
                                                    aw.taps),
                           T(0));
        std::vector<T> sub_abs = sub;
        for (index_t co = 0; co < g.out_channels; ++co)
          for (index_t c = 0; c < cin_g; ++c)
            for (index_t kh = 0; kh < g.kernel_h; ++kh)
              for (index_t kw = 0; kw < g.kernel_w; ++kw) {
                const index_t th = ah.tap[kh], tw = aw.tap[kw];
                if (th < 0 || tw < 0)
                  continue;
                const index_t grp = co / cout_g, ci = grp * cin_g + c, oc = co % cout_g;
                const T v = w[((co * cin_g + c) * g.kernel_h + kh) * g.kernel_w + kw];
                const std::size_t at =
                    static_cast<std::size_t>(((ci * cout_g + oc) * ah.taps + th) * aw.taps + tw);
                sub[at] = v;
                sub_abs[at] = std::abs(v);
              }
        ph.op = std::make_unique<Conv2dOperator<T>>(a, sub);
        ph.op_abs = std::make_unique<Conv2dOperator<T>>(a, sub_abs);
      }
      phases.push_back(std::move(ph));
    }
  return phases;
}

template <class T> struct ConvState {
  ConvPlan plan;
  std::vector<T, AlignedAllocator<T>> packed;
  std::once_flag abs_once;
  std::vector<T, AlignedAllocator<T>> packed_abs, plain_abs;

  // Adjoint of a stride-1 convolution whose padding does not exceed the
  // dilated kernel extent: the forward convolution of the output with the
  // flipped kernel, input/output channels swapped and pads d*(k-1) - p.
  std::once_flag adjoint_once;
  std::unique_ptr<Conv2dOperator<T>> adjoint, adjoint_abs;

  // Adjoint of a strided convolution: one stride-1 convolution per output
  // phase (adjoint_phases); empty when the decomposition does not apply.
  std::once_flag phases_once;
  std::vector<AdjointPhase<T>> phases;
  std::optional<ConvPlan> phase_input; ///< fills the phases' shared input

  ConvState(const Conv2dGeometry &g, std::span<const T> w)
      : plan(g), packed(pack_weights(plan, w, false)) {}
};

/// The flipped-kernel geometry of the adjoint, if it is a plain convolution.
inline std::optional<Conv2dGeometry> adjoint_geometry(const Conv2dGeometry &g) {
  if (g.stride_h != 1 || g.stride_w != 1)
    return std::nullopt;
  const index_t eh = g.dilation_h * (g.kernel_h - 1),
                ew = g.dilation_w * (g.kernel_w - 1);
  if (g.pad_top > eh || g.pad_bottom > eh || g.pad_left > ew || g.pad_right > ew)
    return std::nullopt;
  Conv2dGeometry a = g;
  a.input = g.output();
  a.out_channels = g.input.channels;
  a.pad_top = eh - g.pad_top;
  a.pad_bottom = eh - g.pad_bottom;
  a.pad_left = ew - g.pad_left;
  a.pad_right = ew - g.pad_right;
  return a;
}

template <class T>
std::vector<T> adjoint_weights(const Conv2dGeometry &g, std::span<const T> w,
                               bool absolute) {
  const index_t cin_g = g.input.channels / g.groups, cout_g = g.out_channels / g.groups;
  const index_t KH = g.kernel_h, KW = g.kernel_w;
  std::vector<T> out(w.size());
  for (index_t co = 0; co < g.out_channels; ++co)
    for (index_t c = 0; c < cin_g; ++c)
      for (index_t kh = 0; kh < KH; ++kh)
        for (index_t kw = 0; kw < KW; ++kw) {
          const index_t grp = co / cout_g, ci = grp * cin_g + c, o = co % cout_g;
          const T v = w[((co * cin_g + c) * KH + kh) * KW + kw];
          out[((ci * cout_g + o) * KH + (KH - 1 - kh)) * KW + (KW - 1 - kw)] =
              absolute ? std::abs(v) : v;
        }
  return out;
}

/// The back end measured faster for a shape (bench_conv, float, 1 thread,
/// CPU time per product on ResNet20's shapes): the direct micro-kernel, except
/// for wide products with many output channels, where packing the B tiles
/// (reused by cout_g / 8 channel blocks) beats reading K scattered rows of the
/// padded input per tile (64-channel 3x3 convs, 128 columns: 25-35% faster).
/// im2col + Eigen GEMM was never the fastest (1.1-1.8x slower than direct).
inline ConvAlgorithm choose_algorithm(const ConvPlan &p, index_t N) {
  if (p.cout_g >= 64 && p.K >= 256 && p.OW * N >= 256)
    return ConvAlgorithm::packed;
  return ConvAlgorithm::direct;
}

} // namespace detail

namespace {

/// Taps of a convolution: forward rows (co, oh, ow) over (ci, kh, kw) in
/// ascending input index; adjoint rows (ci, h, w) over (co, kh, kw).
struct ConvTaps {
  const detail::ConvPlan *p;
  index_t pt, pl;

  template <class T, class F> void fwd(const T *w, index_t r, F &&f) const {
    const auto &q = *p;
    const index_t plane = q.OH * q.OW;
    const index_t co = r / plane, oh = (r % plane) / q.OW, ow = r % q.OW;
    const index_t g = co / q.cout_g;
    for (index_t cig = 0; cig < q.cin_g; ++cig) {
      const index_t ci = g * q.cin_g + cig;
      for (index_t kh = 0; kh < q.KH; ++kh) {
        const index_t ih = oh * q.sh - pt + kh * q.dh;
        if (ih < 0 || ih >= q.H)
          continue;
        for (index_t kw = 0; kw < q.KW; ++kw) {
          const index_t iw = ow * q.sw - pl + kw * q.dw;
          if (iw < 0 || iw >= q.W)
            continue;
          f((ci * q.H + ih) * q.W + iw,
            w[((co * q.cin_g + cig) * q.KH + kh) * q.KW + kw]);
        }
      }
    }
  }
  template <class T, class F> void adj(const T *w, index_t r, F &&f) const {
    const auto &q = *p;
    const index_t plane = q.H * q.W;
    const index_t ci = r / plane, ih = (r % plane) / q.W, iw = r % q.W;
    const index_t g = ci / q.cin_g, cig = ci % q.cin_g;
    for (index_t co = g * q.cout_g; co < (g + 1) * q.cout_g; ++co)
      for (index_t kh = 0; kh < q.KH; ++kh) {
        const index_t th = ih + pt - kh * q.dh;
        if (th < 0 || th % q.sh != 0 || th / q.sh >= q.OH)
          continue;
        const index_t oh = th / q.sh;
        for (index_t kw = 0; kw < q.KW; ++kw) {
          const index_t tw = iw + pl - kw * q.dw;
          if (tw < 0 || tw % q.sw != 0 || tw / q.sw >= q.OW)
            continue;
          f((co * q.OH + oh) * q.OW + tw / q.sw,
            w[((co * q.cin_g + cig) * q.KH + kh) * q.KW + kw]);
        }
      }
  }
};

TensorShape conv_output(const Conv2dGeometry &g, std::size_t weights) {
  g.validate();
  const auto expect = static_cast<std::size_t>(
      g.out_channels * (g.input.channels / g.groups) * g.kernel_h * g.kernel_w);
  if (weights != expect)
    throw InvalidArgument("Conv2dOperator: " + std::to_string(weights) +
                          " weights given, expected out_channels * in_channels/groups * "
                          "kernel_h * kernel_w = " +
                          std::to_string(expect));
  return g.output();
}

} // namespace

#define TACIT_CONV_TAPS                                                                  \
  const ConvTaps taps{&state_->plan, geometry_.pad_top, geometry_.pad_left};             \
  const T *wd = weights_.data();                                                         \
  auto fwd = [&](index_t i, auto &&f) { taps.fwd(wd, i, f); };                           \
  auto adj = [&](index_t i, auto &&f) { taps.adj(wd, i, f); };                           \
  (void)fwd;                                                                             \
  (void)adj

template <class T>
Conv2dOperator<T>::Conv2dOperator(Conv2dGeometry g, std::vector<T> weights)
    : OperatorBase<Conv2dOperator<T>, T>(conv_output(g, weights.size()).size(),
                                         g.input.size()),
      geometry_(g), weights_(std::move(weights)),
      state_(std::make_shared<detail::ConvState<T>>(geometry_, weights_)) {}

template <class T>
void Conv2dOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                MatrixView<T> y, Execution exec) const {
  auto &st = *state_;
  const auto &p = st.plan;
  const bool ab = is_absolute(mode);
  if (exec == Execution::reference) {
    TACIT_CONV_TAPS;
    const index_t out = is_transposed(mode) ? this->cols() : this->rows();
    if (is_transposed(mode)) {
      if (ab)
        detail::gather_rows<true>(exec, out, alpha, x, beta, y, 1, adj);
      else
        detail::gather_rows<false>(exec, out, alpha, x, beta, y, 1, adj);
    } else {
      if (ab)
        detail::gather_rows<true>(exec, out, alpha, x, beta, y, 1, fwd);
      else
        detail::gather_rows<false>(exec, out, alpha, x, beta, y, 1, fwd);
    }
    return;
  }
  const index_t N = x.cols;
  if (ab)
    std::call_once(st.abs_once, [&] {
      st.packed_abs = detail::pack_weights<T>(p, weights_, true);
      st.plain_abs.resize(weights_.size());
      for (std::size_t i = 0; i < weights_.size(); ++i)
        st.plain_abs[i] = std::abs(weights_[i]);
    });
  if (!is_transposed(mode)) {
    typename detail::ScratchPool<T>::Lease xp(
        detail::conv_product_buffers<T>(),
        static_cast<std::size_t>(detail::xp_size<T>(p, N)));
    detail::ConvEpilogue<T> store;
    store.alpha = alpha;
    store.beta = beta;
    detail::conv_kernels().of<T>().forward(
        p, detail::choose_algorithm(p, N), ab ? st.packed_abs.data() : st.packed.data(),
        ab ? st.plain_abs.data() : weights_.data(), store, x, y, xp.data(),
        detail::conv_task_buffers<T>(), exec);
    return;
  }
  if (const auto ag = detail::adjoint_geometry(geometry_)) {
    std::call_once(st.adjoint_once, [&] {
      st.adjoint = std::make_unique<Conv2dOperator<T>>(
          *ag, detail::adjoint_weights<T>(geometry_, weights_, false));
      st.adjoint_abs = std::make_unique<Conv2dOperator<T>>(
          *ag, detail::adjoint_weights<T>(geometry_, weights_, true));
    });
    (ab ? st.adjoint_abs : st.adjoint)->apply(Mode::normal, alpha, x, beta, y, exec);
    return;
  }
  std::call_once(st.phases_once, [&] {
    st.phases = detail::adjoint_phases<T>(geometry_, weights_);
    if (!st.phases.empty())
      st.phase_input = detail::phase_input_plan(geometry_, st.phases);
  });
  if (!st.phases.empty()) {
    // Each phase's rows of y from its stride-1 convolution of one shared
    // padded copy of x, stored in place; phases no tap reaches get beta * y.
    const auto &g = geometry_;
    const index_t C = g.input.channels, H = g.input.height, W = g.input.width;
    const auto &kernels = detail::conv_kernels().of<T>();
    typename detail::ScratchPool<T>::Lease xp(
        detail::conv_product_buffers<T>(),
        static_cast<std::size_t>(detail::xp_size<T>(*st.phase_input, N)));
    kernels.fill(*st.phase_input, x, xp.data(), exec);
    detail::ConvEpilogue<T> store;
    store.alpha = alpha;
    store.beta = beta;
    for (const auto &ph : st.phases) {
      if (ph.hm == 0 || ph.wm == 0)
        continue;
      if (ph.op) {
        const Conv2dOperator<T> &op = ab ? *ph.op_abs : *ph.op;
        kernels.forward(*ph.plan, detail::choose_algorithm(*ph.plan, N),
                        op.state_->packed.data(), op.weights_.data(), store, x, y,
                        xp.data(), detail::conv_task_buffers<T>(), exec);
        continue;
      }
      detail::for_range(exec, C * ph.hm, 1, [&](index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
          const index_t ci = r / ph.hm, i = r % ph.hm;
          const index_t h = (ph.m0h + i) * g.stride_h + ph.rh - g.pad_top;
          for (index_t j = 0; j < ph.wm; ++j) {
            const index_t wi = (ph.m0w + j) * g.stride_w + ph.rw - g.pad_left;
            T *__restrict dst = y.row((ci * H + h) * W + wi);
            for (index_t c = 0; c < N; ++c)
              dst[c] = beta == T(0) ? T(0) : beta * dst[c];
          }
        }
      });
    }
    return;
  }
  const index_t out_elems = p.Co * p.OH * p.OW * N;
  const std::size_t acc_size = static_cast<std::size_t>(p.C * p.channel_stride() * N);
  const bool compact = x.ld == N;
  typename detail::ScratchPool<T>::Lease buf(
      detail::conv_product_buffers<T>(),
      acc_size + (compact ? 0 : static_cast<std::size_t>(out_elems)));
  const T *xc = x.data;
  if (!compact) {
    T *dst = buf.data() + acc_size;
    for (index_t i = 0; i < x.rows; ++i)
      std::memcpy(dst + i * N, x.row(i), static_cast<std::size_t>(N) * sizeof(T));
    xc = dst;
  }
  detail::conv_kernels().of<T>().adjoint(p, weights_, ab, alpha, xc, beta, y, buf.data(),
                                         exec);
}

template <class T>
bool Conv2dOperator<T>::apply_activated(T alpha, ConstMatrixView<T> x, T beta,
                                        MatrixView<T> y, std::span<const T> bias,
                                        const Activation &phi, Execution exec,
                                        ConstMatrixView<T> residual,
                                        T residual_scale) const {
  if (!bias.empty() && static_cast<index_t>(bias.size()) != this->rows())
    throw InvalidArgument("Conv2dOperator::apply_activated: bias has " +
                          std::to_string(bias.size()) + " entries, expected " +
                          std::to_string(this->rows()));
  const bool has_residual = residual.data != nullptr;
  if (has_residual &&
      (residual.rows != y.rows || residual.cols != y.cols || residual.ld < residual.cols))
    throw InvalidArgument("Conv2dOperator::apply_activated: the residual is " +
                          std::to_string(residual.rows) + " x " +
                          std::to_string(residual.cols) + " (ld " +
                          std::to_string(residual.ld) + "), y is " +
                          std::to_string(y.rows) + " x " + std::to_string(y.cols));
  if (!this->check_views(Mode::normal, x, y))
    return true;
  if (exec == Execution::reference)
    return apply_activated_unfused<T>(*this, alpha, x, beta, y, bias, phi, exec, residual,
                                      residual_scale);
  auto &st = *state_;
  const auto &p = st.plan;
  typename detail::ScratchPool<T>::Lease xp(
      detail::conv_product_buffers<T>(),
      static_cast<std::size_t>(detail::xp_size<T>(p, x.cols)));
  detail::ConvEpilogue<T> store;
  store.alpha = alpha;
  store.beta = beta;
  store.activated = true;
  store.bias = bias.empty() ? nullptr : bias.data();
  store.phi = phi;
  store.residual = has_residual ? residual.data : nullptr;
  store.residual_ld = residual.ld;
  store.residual_scale = residual_scale;
  return detail::conv_kernels().of<T>().forward(
      p, detail::choose_algorithm(p, x.cols), st.packed.data(), weights_.data(), store, x,
      y, xp.data(), detail::conv_task_buffers<T>(), exec);
}

template <class T> void Conv2dOperator<T>::row_abs_sums_into(std::span<T> out) const {
  TACIT_CONV_TAPS;
  detail::tap_abs_sums(this->rows(), out, 64, fwd);
}
template <class T> void Conv2dOperator<T>::col_abs_sums_into(std::span<T> out) const {
  TACIT_CONV_TAPS;
  detail::tap_abs_sums(this->cols(), out, 64, adj);
}
template <class T> std::int64_t Conv2dOperator<T>::nnz_count() const {
  // Separable count: taps inside the image = (valid kh per oh) x (valid kw per ow).
  const auto &p = state_->plan;
  std::int64_t rows = 0, cols = 0;
  for (index_t oh = 0; oh < p.OH; ++oh)
    for (index_t kh = 0; kh < p.KH; ++kh) {
      const index_t ih = oh * p.sh - p.pt + kh * p.dh;
      rows += ih >= 0 && ih < p.H;
    }
  for (index_t ow = 0; ow < p.OW; ++ow)
    for (index_t kw = 0; kw < p.KW; ++kw) {
      const index_t iw = ow * p.sw - p.pl + kw * p.dw;
      cols += iw >= 0 && iw < p.W;
    }
  return p.Co * p.cin_g * rows * cols;
}
template <class T> std::size_t Conv2dOperator<T>::storage_bytes() const {
  return weights_.size() * sizeof(T) + sizeof(*this);
}
template <class T> CsrMatrix<T> Conv2dOperator<T>::materialise() const {
  TACIT_CONV_TAPS;
  return detail::tap_to_csr<T>(this->rows(), this->cols(), fwd);
}
template <class T> std::optional<Entry> Conv2dOperator<T>::first_non_finite() const {
  bool any = false;
  for (T v : weights_)
    any = any || !std::isfinite(v);
  if (!any)
    return std::nullopt;
  TACIT_CONV_TAPS;
  return detail::tap_find_non_finite(this->rows(), fwd);
}
#undef TACIT_CONV_TAPS

template <class T>
void Conv2dOperator<T>::add_abs_sums(bool rows, std::span<double> out) const {
  const index_t want = rows ? this->rows() : this->cols();
  if (static_cast<index_t>(out.size()) != want)
    throw InvalidArgument("Conv2dOperator::add_abs_sums: out has " +
                          std::to_string(out.size()) + " entries, expected " +
                          std::to_string(want));
  const auto &g = geometry_;
  const auto w = weights();
  const TensorShape o = g.output();
  const index_t KH = g.kernel_h, KW = g.kernel_w, cin_g = g.input.channels / g.groups,
                cout_g = g.out_channels / g.groups;
  // Valid kernel rows/cols per output (rows) or input (columns) position.
  auto valid = [](index_t outer, index_t inner, index_t K, index_t stride, index_t pad,
                  index_t dil, bool forward) {
    std::vector<std::vector<index_t>> v(
        static_cast<std::size_t>(forward ? outer : inner));
    for (index_t p = 0; p < outer; ++p)
      for (index_t k = 0; k < K; ++k) {
        const index_t i = p * stride - pad + k * dil;
        if (i >= 0 && i < inner)
          v[static_cast<std::size_t>(forward ? p : i)].push_back(k);
      }
    for (auto &list : v) { // a kernel row may reach an input row from one output only
      std::sort(list.begin(), list.end());
      list.erase(std::unique(list.begin(), list.end()), list.end());
    }
    return v;
  };
  const auto vh =
      valid(o.height, g.input.height, KH, g.stride_h, g.pad_top, g.dilation_h, rows);
  const auto vw =
      valid(o.width, g.input.width, KW, g.stride_w, g.pad_left, g.dilation_w, rows);
  const index_t channels = rows ? g.out_channels : g.input.channels;
  std::vector<double> S(static_cast<std::size_t>(channels * KH * KW), 0.0);
  for (index_t co = 0; co < g.out_channels; ++co)
    for (index_t c = 0; c < cin_g; ++c) {
      const index_t ci = (co / cout_g) * cin_g + c;
      for (index_t k = 0; k < KH * KW; ++k)
        S[(rows ? co : ci) * KH * KW + k] +=
            std::abs(static_cast<double>(w[(co * cin_g + c) * KH * KW + k]));
    }
  const index_t H = static_cast<index_t>(vh.size()), W = static_cast<index_t>(vw.size());
  for (index_t c = 0; c < channels; ++c)
    for (index_t h = 0; h < H; ++h)
      for (index_t x = 0; x < W; ++x) {
        double sum = 0;
        for (const index_t kh : vh[h])
          for (const index_t kw : vw[x])
            sum += S[(c * KH + kh) * KW + kw];
        out[(c * H + h) * W + x] += sum;
      }
}

template <class T>
OperatorPtr<T> Conv2dOperator<T>::scaled_rows(std::span<const T> d) const {
  const index_t plane = this->rows() / geometry_.out_channels;
  if (static_cast<index_t>(d.size()) != this->rows())
    return nullptr;
  for (index_t o = 0; o < geometry_.out_channels; ++o)
    for (index_t k = 1; k < plane; ++k)
      if (!(d[o * plane + k] == d[o * plane]))
        return nullptr;
  std::vector<T> w(weights_.begin(), weights_.end());
  const index_t per_out = static_cast<index_t>(w.size()) / geometry_.out_channels;
  for (index_t o = 0; o < geometry_.out_channels; ++o)
    for (index_t k = 0; k < per_out; ++k)
      w[o * per_out + k] *= d[o * plane];
  return std::make_shared<Conv2dOperator<T>>(geometry_, std::move(w));
}

template <class T>
OperatorPtr<T> Conv2dOperator<T>::plus(const LinearOperator<T> &other) const {
  const auto *conv = capability<Conv2dOperator<T>>(other);
  if (!conv || !(conv->geometry() == geometry_))
    return nullptr;
  std::vector<T> w(weights_.begin(), weights_.end());
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] += conv->weights()[i];
  return std::make_shared<Conv2dOperator<T>>(geometry_, std::move(w));
}

// Trainable (the rest is in conv_gradient.cpp): new weights, new packed
// copies and adjoint kernels.
template <class T> void Conv2dOperator<T>::parameters_changed() {
  state_ = std::make_shared<detail::ConvState<T>>(geometry_, weights_);
}

template class Conv2dOperator<float>;
template class Conv2dOperator<double>;

} // namespace tacit::inline v1
