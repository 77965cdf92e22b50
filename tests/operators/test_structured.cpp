#include <catch2/catch.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/operators/structured.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>

#include <tbb/task_arena.h>

using namespace tacit;

namespace {

/// Dense row-major matrix in double, the independent reference.
struct Dense {
  index_t rows = 0, cols = 0;
  std::vector<double> a;
  Dense(index_t r, index_t c)
      : rows(r), cols(c), a(static_cast<std::size_t>(r * c), 0.0) {}
  double &operator()(index_t i, index_t j) { return a[i * cols + j]; }
  double operator()(index_t i, index_t j) const { return a[i * cols + j]; }
};

template <class T> std::vector<T> random_values(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> v(n);
  for (auto &x : v)
    x = static_cast<T>(u(rng));
  return v;
}

/// Dense conv matrix assembled from the PyTorch definition.
template <class T> Dense dense_conv(const Conv2dGeometry &g, const std::vector<T> &w) {
  const index_t C = g.input.channels, H = g.input.height, W = g.input.width;
  const index_t OH =
      (H + g.pad_top + g.pad_bottom - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h +
      1;
  const index_t OW =
      (W + g.pad_left + g.pad_right - g.dilation_w * (g.kernel_w - 1) - 1) / g.stride_w +
      1;
  const index_t cin_g = C / g.groups, cout_g = g.out_channels / g.groups;
  Dense M(g.out_channels * OH * OW, C * H * W);
  for (index_t co = 0; co < g.out_channels; ++co)
    for (index_t oh = 0; oh < OH; ++oh)
      for (index_t ow = 0; ow < OW; ++ow)
        for (index_t c = 0; c < cin_g; ++c)
          for (index_t kh = 0; kh < g.kernel_h; ++kh)
            for (index_t kw = 0; kw < g.kernel_w; ++kw) {
              const index_t ih = oh * g.stride_h + kh * g.dilation_h - g.pad_top;
              const index_t iw = ow * g.stride_w + kw * g.dilation_w - g.pad_left;
              if (ih < 0 || iw < 0 || ih >= H || iw >= W)
                continue;
              const index_t ci = (co / cout_g) * cin_g + c;
              M((co * OH + oh) * OW + ow, (ci * H + ih) * W + iw) +=
                  w[((co * cin_g + c) * g.kernel_h + kh) * g.kernel_w + kw];
            }
  return M;
}

std::int64_t dense_nnz(const Dense &M) {
  std::int64_t n = 0;
  for (double v : M.a)
    n += v != 0;
  return n;
}

template <class T> Dense csr_dense(const CsrMatrix<T> &A) {
  Dense M(A.rows(), A.cols());
  const auto rp = A.row_ptr();
  const auto v = A.values();
  for (index_t i = 0; i < A.rows(); ++i)
    for (auto k = rp[i]; k < rp[i + 1]; ++k)
      M(i, A.column(k)) += v[k];
  return M;
}

template <class T> double tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-13;
}

/// Checks op against the dense reference M in every mode, with 1 and 37
/// columns (plain views with ld > cols and batches with slab width 8),
/// alpha/beta pairs, the CSR product, the reference kernel and NaN in y with
/// beta = 0. With `bitwise`, parallel and reference kernels must agree bit
/// for bit.
template <class T>
void check_operator(const LinearOperator<T> &op, const Dense &M, bool bitwise,
                    bool structural_nnz = true) {
  REQUIRE(op.rows() == M.rows);
  REQUIRE(op.cols() == M.cols);
  const CsrMatrix<T> csr = op.to_csr();
  const Dense Mc = csr_dense(csr);
  double diff = 0;
  for (std::size_t i = 0; i < M.a.size(); ++i)
    diff = std::max(diff, std::abs(Mc.a[i] - M.a[i]));
  REQUIRE(diff <= 1e-6);
  if (structural_nnz)
    CHECK(op.nnz() == csr.nnz());
  CHECK(op.nnz() >= dense_nnz(M));
  // Absolute sums against |M|.
  const auto rs = op.row_abs_sums(), cs = op.col_abs_sums();
  for (index_t i = 0; i < M.rows; ++i) {
    double s = 0;
    for (index_t j = 0; j < M.cols; ++j)
      s += std::abs(M(i, j));
    REQUIRE(rs[i] == Approx(s).epsilon(1e-5).margin(1e-6));
  }
  for (index_t j = 0; j < M.cols; ++j) {
    double s = 0;
    for (index_t i = 0; i < M.rows; ++i)
      s += std::abs(M(i, j));
    REQUIRE(cs[j] == Approx(s).epsilon(1e-5).margin(1e-6));
  }
  const auto csr_rs = csr.row_abs_sums(), csr_cs = csr.col_abs_sums();
  for (index_t i = 0; i < M.rows; ++i)
    REQUIRE(rs[i] == Approx(csr_rs[i]).epsilon(1e-5));
  for (index_t j = 0; j < M.cols; ++j)
    REQUIRE(cs[j] == Approx(csr_cs[j]).epsilon(1e-5));

  const T nan = std::numeric_limits<T>::quiet_NaN();
  unsigned seed = 11;
  for (Mode mode : {Mode::normal, Mode::transpose, Mode::abs, Mode::abs_transpose}) {
    const bool tr = is_transposed(mode), ab = is_absolute(mode);
    const index_t in = tr ? M.rows : M.cols, out = tr ? M.cols : M.rows;
    for (index_t k : {index_t(1), index_t(37)}) {
      for (auto [alpha, beta] : {std::pair<T, T>{T(1), T(0)}, {T(0.75), T(-1.25)}}) {
        const index_t ld = k + 3;
        const auto x = random_values<T>(static_cast<std::size_t>(in * ld), seed++);
        auto y0 = random_values<T>(static_cast<std::size_t>(out * ld), seed++);
        if (beta == T(0))
          std::fill(y0.begin(), y0.end(), nan);
        // Expected, from the dense reference in double.
        std::vector<double> expect(static_cast<std::size_t>(out * k));
        double scale = 0;
        for (index_t i = 0; i < out; ++i)
          for (index_t c = 0; c < k; ++c) {
            double s = 0, s_abs = 0;
            for (index_t j = 0; j < in; ++j) {
              double m = tr ? M(j, i) : M(i, j);
              if (ab)
                m = std::abs(m);
              s += m * static_cast<double>(x[j * ld + c]);
              s_abs += std::abs(m * static_cast<double>(x[j * ld + c]));
            }
            const double yv = beta == T(0) ? 0.0 : static_cast<double>(y0[i * ld + c]);
            expect[i * k + c] = alpha * s + beta * yv;
            scale = std::max(scale, s_abs + std::abs(yv));
          }
        const double eps = tol<T>() * std::max(1.0, scale);
        ConstMatrixView<T> xv(x.data(), in, k, ld);
        std::vector<T> y_par = y0, y_ref = y0, y_csr = y0;
        op.apply(mode, alpha, xv, beta, MatrixView<T>{y_par.data(), out, k, ld},
                 Execution::parallel);
        op.apply(mode, alpha, xv, beta, MatrixView<T>{y_ref.data(), out, k, ld},
                 Execution::reference);
        csr.apply(mode, alpha, xv, beta, MatrixView<T>{y_csr.data(), out, k, ld});
        INFO("kind " << op.kind() << " mode " << int(mode) << " k " << k << " alpha "
                     << alpha);
        double err_par = 0, err_ref = 0, err_csr = 0;
        bool same = true;
        for (index_t i = 0; i < out; ++i)
          for (index_t c = 0; c < k; ++c) {
            const double e = expect[i * k + c];
            err_par = std::max(err_par, std::abs(y_par[i * ld + c] - e));
            err_ref = std::max(err_ref, std::abs(y_ref[i * ld + c] - e));
            err_csr = std::max(err_csr, std::abs(y_csr[i * ld + c] - e));
            same = same && y_par[i * ld + c] == y_ref[i * ld + c];
          }
        REQUIRE(err_par <= eps); // also false for NaN
        REQUIRE(err_ref <= eps);
        REQUIRE(err_csr <= eps);
        if (bitwise)
          REQUIRE(same);
        // Padding columns untouched.
        bool untouched = true;
        for (index_t i = 0; i < out; ++i)
          for (index_t c = k; c < ld; ++c) {
            const T a = y_par[i * ld + c], b = y0[i * ld + c];
            untouched = untouched && (a == b || (std::isnan(a) && std::isnan(b)));
          }
        REQUIRE(untouched);
        // Batches with slab width 8 (ragged last slab) equal the view product.
        if (k == 37) {
          Batch<T> xb(in, k, 8), yb(out, k, 8);
          for (index_t j = 0; j < in; ++j)
            for (index_t c = 0; c < k; ++c)
              xb(j, c) = x[j * ld + c];
          for (index_t i = 0; i < out; ++i)
            for (index_t c = 0; c < k; ++c)
              yb(i, c) = y0[i * ld + c];
          op.apply(mode, alpha, xb, beta, yb);
          double err = 0;
          for (index_t i = 0; i < out; ++i)
            for (index_t c = 0; c < k; ++c)
              err = std::max(err, std::abs(yb(i, c) - expect[i * k + c]));
          REQUIRE(err <= eps);
        }
      }
    }
  }
}

/// Parallel products are the same bits with 1 and 2 threads.
template <class T> void check_deterministic(const LinearOperator<T> &op, index_t k) {
  for (Mode mode : {Mode::normal, Mode::transpose, Mode::abs, Mode::abs_transpose}) {
    const bool tr = is_transposed(mode);
    const index_t in = tr ? op.rows() : op.cols(), out = tr ? op.cols() : op.rows();
    const auto x = random_values<T>(static_cast<std::size_t>(in * k), 5);
    std::vector<T> y1(static_cast<std::size_t>(out * k)), y2 = y1;
    tbb::task_arena one(1), two(2);
    one.execute([&] {
      op.apply(mode, T(1), ConstMatrixView<T>(x.data(), in, k, k), T(0),
               MatrixView<T>{y1.data(), out, k, k});
    });
    two.execute([&] {
      op.apply(mode, T(1), ConstMatrixView<T>(x.data(), in, k, k), T(0),
               MatrixView<T>{y2.data(), out, k, k});
    });
    REQUIRE(y1 == y2);
  }
}

/// Every column of a product equals the product of that column alone, bit for
/// bit (alpha, beta not 0 or 1, x with a leading dimension wider than k).
template <class T> void check_column_independent(const LinearOperator<T> &op, index_t k) {
  for (Mode mode : {Mode::normal, Mode::transpose}) {
    INFO("mode " << int(mode) << ", k " << k);
    const bool tr = is_transposed(mode);
    const index_t in = tr ? op.rows() : op.cols(), out = tr ? op.cols() : op.rows();
    const index_t ld = k + 3;
    const auto x = random_values<T>(static_cast<std::size_t>(in * ld), 6);
    auto y = random_values<T>(static_cast<std::size_t>(out * ld), 7);
    const auto y0 = y;
    op.apply(mode, T(1.5), ConstMatrixView<T>(x.data(), in, k, ld), T(0.75),
             MatrixView<T>{y.data(), out, k, ld});
    for (index_t c = 0; c < k; ++c) {
      auto yc = y0;
      op.apply(mode, T(1.5), ConstMatrixView<T>(x.data() + c, in, 1, ld), T(0.75),
               MatrixView<T>{yc.data() + c, out, 1, ld});
      for (index_t i = 0; i < out; ++i)
        REQUIRE(std::memcmp(&yc[i * ld + c], &y[i * ld + c], sizeof(T)) == 0);
    }
  }
}

Conv2dGeometry geom(TensorShape in, index_t co, index_t k, index_t s, index_t p) {
  Conv2dGeometry g;
  g.input = in;
  g.out_channels = co;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = s;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = p;
  return g;
}

} // namespace

TEMPLATE_TEST_CASE("Conv2dOperator matches the dense convolution matrix", "[structured]",
                   float, double) {
  using T = TestType;
  std::vector<std::pair<std::string, Conv2dGeometry>> cases;
  cases.push_back({"3x3 stride 1 pad 1", geom({3, 6, 5}, 4, 3, 1, 1)});
  cases.push_back({"3x3 stride 2 pad 1", geom({2, 7, 8}, 3, 3, 2, 1)});
  auto asym = geom({2, 6, 7}, 3, 3, 1, 0);
  asym.pad_top = 2;
  asym.pad_left = 0;
  asym.pad_bottom = 1;
  asym.pad_right = 3;
  asym.kernel_w = 2;
  asym.stride_w = 3;
  cases.push_back({"asymmetric pads and strides, 3x2 kernel", asym});
  auto dil = geom({2, 9, 8}, 2, 3, 1, 2);
  dil.dilation_h = dil.dilation_w = 2;
  cases.push_back({"dilation 2", dil});
  auto grp = geom({4, 5, 5}, 6, 3, 1, 1);
  grp.groups = 2;
  cases.push_back({"groups 2", grp});
  auto dw = geom({3, 6, 6}, 3, 3, 2, 1);
  dw.groups = 3;
  cases.push_back({"depthwise", dw});
  cases.push_back({"1x1 stride 2 (option B shortcut)", geom({3, 6, 6}, 5, 1, 2, 0)});
  cases.push_back({"1x1", geom({2, 3, 4}, 9, 1, 1, 0)});
  // Strided adjoints run as one stride-1 convolution per output phase:
  // phases with several taps, with none, with dilation, and pads past the
  // sub-kernel's reach (the scatter kernel then).
  auto s2d2 = geom({2, 9, 9}, 3, 3, 2, 2);
  s2d2.dilation_h = s2d2.dilation_w = 2;
  cases.push_back({"stride 2, dilation 2 (one phase empty)", s2d2});
  auto s3 = geom({3, 11, 10}, 4, 5, 3, 2);
  s3.dilation_w = 2;
  cases.push_back({"5x5 stride 3 pad 2, dilation 2 across", s3});
  cases.push_back({"3x3 stride 2 pad 3 (scatter kernel)", geom({2, 7, 6}, 3, 3, 2, 3)});
  auto s2g = geom({4, 8, 7}, 6, 4, 2, 1);
  s2g.groups = 2;
  cases.push_back({"4x4 stride 2, groups 2", s2g});
  auto big = geom({2, 4, 4}, 2, 5, 1, 4);
  big.dilation_h = 2;
  cases.push_back({"kernel larger than the image", big});
  unsigned seed = 1;
  for (const auto &[name, g] : cases) {
    SECTION(name) {
      const auto o = g.output();
      const auto w =
          random_values<T>(static_cast<std::size_t>(g.out_channels * g.input.channels /
                                                    g.groups * g.kernel_h * g.kernel_w),
                           seed);
      Conv2dOperator<T> op(g, w);
      CHECK(op.kind() == "conv2d");
      CHECK(op.rows() == o.size());
      CHECK(op.bytes() >= w.size() * sizeof(T));
      check_operator<T>(op, dense_conv(g, w), false);
      check_deterministic<T>(op, 37);
      CHECK(!op.find_non_finite());
    }
    ++seed;
  }
}

TEMPLATE_TEST_CASE("Conv2dOperator: ResNet shapes, wide batches, non-finite weights",
                   "[structured]", float, double) {
  using T = TestType;
  // A ResNet20 stage-2 downsampling conv on a small plane with many columns:
  // exercises full micro-tiles and row segments.
  auto g = geom({8, 8, 8}, 16, 3, 2, 1);
  const auto w = random_values<T>(16 * 8 * 9, 3);
  Conv2dOperator<T> op(g, w);
  const Dense M = dense_conv(g, w);
  for (index_t k : {index_t(1), index_t(7), index_t(64), index_t(130)}) {
    const auto x = random_values<T>(static_cast<std::size_t>(op.cols() * k), 4);
    std::vector<T> y(static_cast<std::size_t>(op.rows() * k));
    op.apply(Mode::normal, T(1), ConstMatrixView<T>(x.data(), op.cols(), k, k), T(0),
             MatrixView<T>{y.data(), op.rows(), k, k});
    for (index_t i = 0; i < op.rows(); i += 7)
      for (index_t c = 0; c < k; c += 3) {
        double s = 0;
        for (index_t j = 0; j < op.cols(); ++j)
          s += M(i, j) * x[j * k + c];
        REQUIRE(y[i * k + c] == Approx(s).margin(50 * tol<T>()));
      }
  }
  // The adjoint (one stride-1 convolution per phase) on the same widths.
  for (index_t k : {index_t(1), index_t(64), index_t(130)}) {
    const auto x = random_values<T>(static_cast<std::size_t>(op.rows() * k), 5);
    std::vector<T> y(static_cast<std::size_t>(op.cols() * k), T(0.25));
    op.apply(Mode::transpose, T(2), ConstMatrixView<T>(x.data(), op.rows(), k, k), T(-1),
             MatrixView<T>{y.data(), op.cols(), k, k});
    for (index_t j = 0; j < op.cols(); j += 5)
      for (index_t c = 0; c < k; c += 3) {
        double s = -0.25;
        for (index_t i = 0; i < op.rows(); ++i)
          s += 2 * M(i, j) * x[i * k + c];
        REQUIRE(y[j * k + c] == Approx(s).margin(100 * tol<T>()));
      }
  }
  auto bad = w;
  bad[5 * 72 + 4] = std::numeric_limits<T>::infinity(); // co 5, ci 0, centre tap
  Conv2dOperator<T> op_bad(g, bad);
  const auto e = op_bad.find_non_finite();
  REQUIRE(e);
  const CsrMatrix<T> csr = op_bad.to_csr();
  const auto e2 = csr.find_non_finite();
  REQUIRE(e2);
  CHECK(e->row == e2->row);
  CHECK(e->col == e2->col);
  CHECK(e->row == 5 * 16);
}

TEST_CASE("Conv2dGeometry validation names the field", "[structured]") {
  auto g = geom({4, 5, 5}, 6, 3, 1, 1);
  g.groups = 3;
  CHECK_THROWS_WITH(g.validate(), Catch::Contains("groups"));
  g = geom({4, 5, 5}, 6, 3, 0, 1);
  CHECK_THROWS_WITH(g.validate(), Catch::Contains("stride_h"));
  g = geom({4, 2, 2}, 6, 5, 1, 0);
  CHECK_THROWS_WITH(g.validate(), Catch::Contains("kernel_h"));
  g = geom({4, 5, 5}, 6, 3, 1, 1);
  g.pad_right = -1;
  CHECK_THROWS_WITH(g.validate(), Catch::Contains("pad_right"));
  CHECK_THROWS_WITH(Conv2dOperator<double>(geom({4, 5, 5}, 6, 3, 1, 1), {1.0, 2.0}),
                    Catch::Contains("weights"));
  CHECK(geom({3, 32, 32}, 16, 3, 2, 1).output() == TensorShape{16, 16, 16});
}

TEMPLATE_TEST_CASE("Identity, diagonal, dense operators", "[structured]", float, double) {
  using T = TestType;
  SECTION("identity") {
    IdentityOperator<T> op(9, T(-1.5));
    Dense M(9, 9);
    for (index_t i = 0; i < 9; ++i)
      M(i, i) = -1.5;
    CHECK(op.kind() == "identity");
    check_operator<T>(op, M, true);
    check_deterministic<T>(op, 5);
  }
  SECTION("diagonal") {
    auto d = random_values<T>(11, 9);
    d[3] = 0; // structural zero
    DiagonalOperator<T> op(d);
    Dense M(11, 11);
    for (index_t i = 0; i < 11; ++i)
      M(i, i) = d[i];
    CHECK(op.kind() == "diagonal");
    CHECK(op.nnz() == 11);
    check_operator<T>(op, M, true);
    d[4] = std::numeric_limits<T>::quiet_NaN();
    const auto e = DiagonalOperator<T>(d).find_non_finite();
    REQUIRE(e);
    CHECK(e->row == 4);
  }
  SECTION("dense") {
    const auto a = random_values<T>(7 * 13, 10);
    DenseOperator<T> op(7, 13, a);
    Dense M(7, 13);
    for (index_t i = 0; i < 7 * 13; ++i)
      M.a[i] = a[i];
    CHECK(op.kind() == "dense");
    CHECK(op.bytes() >= a.size() * sizeof(T));
    // The parallel kernel is the level's register-tiled one: equal to the
    // reference up to rounding (fused multiply-adds).
    check_operator<T>(op, M, false);
    check_deterministic<T>(op, 37);
    check_column_independent<T>(op, 5);
    check_column_independent<T>(op, 37);
    // Wide enough for the 8-row register block of a single column.
    const auto b = random_values<T>(19 * 300, 12);
    check_column_independent<T>(DenseOperator<T>(19, 300, b), 3);
    CHECK_THROWS_AS(DenseOperator<T>(3, 3, a), InvalidArgument);
  }
}

TEMPLATE_TEST_CASE("Channel padding and average pooling", "[structured]", float, double) {
  using T = TestType;
  SECTION("channel pad (ResNet option A)") {
    const TensorShape in{3, 5, 6};
    ChannelPadOperator<T> op(in, 7, 2, 2);
    CHECK(op.output_shape() == TensorShape{7, 3, 3});
    Dense M(op.rows(), op.cols());
    for (index_t c = 0; c < 3; ++c)
      for (index_t h = 0; h < 3; ++h)
        for (index_t w = 0; w < 3; ++w)
          M(((c + 2) * 3 + h) * 3 + w, (c * 5 + 2 * h) * 6 + 2 * w) = 1;
    CHECK(op.kind() == "channel_pad");
    check_operator<T>(op, M, true);
    check_deterministic<T>(op, 9);
    CHECK_THROWS_AS(ChannelPadOperator<T>(in, 4, 2, 2), InvalidArgument);
  }
  for (bool cip : {false, true}) {
    SECTION(std::string("avg pool 3x2, stride 2x1, asymmetric pads, count_include_pad ") +
            (cip ? "on" : "off")) {
      const TensorShape in{2, 7, 5};
      const index_t kh = 3, kw = 2, sh = 2, sw = 1, pt = 1, pl = 1, pb = 2, pr = 0;
      AvgPool2dOperator<T> op(in, kh, kw, sh, sw, pt, pl, pb, pr, cip);
      const index_t OH = (7 + pt + pb - kh) / sh + 1, OW = (5 + pl + pr - kw) / sw + 1;
      REQUIRE(op.output_shape() == TensorShape{2, OH, OW});
      Dense M(op.rows(), op.cols());
      for (index_t c = 0; c < 2; ++c)
        for (index_t oh = 0; oh < OH; ++oh)
          for (index_t ow = 0; ow < OW; ++ow) {
            // PyTorch avg_pool2d: window clipped to the padded input for the
            // divisor, then to the image for the taps.
            index_t h0 = oh * sh - pt, w0 = ow * sw - pl;
            index_t h1 = std::min(h0 + kh, 7 + pb), w1 = std::min(w0 + kw, 5 + pr);
            const index_t pool = (h1 - h0) * (w1 - w0);
            h0 = std::max<index_t>(h0, 0);
            w0 = std::max<index_t>(w0, 0);
            h1 = std::min<index_t>(h1, 7);
            w1 = std::min<index_t>(w1, 5);
            const double div = cip ? pool : (h1 - h0) * (w1 - w0);
            for (index_t h = h0; h < h1; ++h)
              for (index_t w = w0; w < w1; ++w)
                M((c * OH + oh) * OW + ow, (c * 7 + h) * 5 + w) = 1.0 / div;
          }
      CHECK(op.kind() == "avg_pool");
      check_operator<T>(op, M, true);
      check_deterministic<T>(op, 37);
    }
  }
  SECTION("global average pool") {
    auto op = AvgPool2dOperator<T>::global({4, 3, 5});
    CHECK(op.rows() == 4);
    Dense M(4, 60);
    for (index_t c = 0; c < 4; ++c)
      for (index_t j = 0; j < 15; ++j)
        M(c, c * 15 + j) = 1.0 / 15;
    check_operator<T>(op, M, true);
  }
  CHECK_THROWS_WITH(AvgPool2dOperator<T>({1, 4, 4}, 2, 2, 1, 1, 2, 0, 0, 0, true),
                    Catch::Contains("pad_top"));
}

TEMPLATE_TEST_CASE("ComposedOperator: classifier after pooling", "[structured]", float,
                   double) {
  using T = TestType;
  auto pool =
      std::make_shared<AvgPool2dOperator<T>>(AvgPool2dOperator<T>::global({6, 2, 3}));
  const auto a = random_values<T>(4 * 6, 21);
  auto fc = std::make_shared<DenseOperator<T>>(4, 6, a);
  ComposedOperator<T> op(fc, pool);
  Dense M(4, 36);
  for (index_t i = 0; i < 4; ++i)
    for (index_t c = 0; c < 6; ++c)
      for (index_t j = 0; j < 6; ++j)
        M(i, c * 6 + j) = a[i * 6 + c] / 6.0;
  CHECK(op.kind() == "composed");
  CHECK(op.bytes() >= fc->bytes() + pool->bytes());
  // Abs modes go through the explicit product's CSR kernels, whose parallel
  // and reference kernels agree to rounding only.
  check_operator<T>(op, M, false);
  check_deterministic<T>(op, 37);
  // |L R| differs from |L||R| when signs cancel: abs mode uses |L R|.
  auto l = std::make_shared<DenseOperator<T>>(1, 2, std::vector<T>{1, 1});
  auto r = std::make_shared<DenseOperator<T>>(2, 1, std::vector<T>{1, -1});
  ComposedOperator<T> cancel(l, r);
  std::vector<T> x{2}, y{5};
  cancel.apply(Mode::abs, T(1), std::span<const T>(x), T(0), std::span<T>(y));
  CHECK(y[0] == 0);
  CHECK(cancel.row_abs_sums()[0] == 0);
  CHECK_THROWS_AS(ComposedOperator<T>(r, r), InvalidArgument);
}

TEMPLATE_TEST_CASE("BlockOperator: products, sums and triangularity", "[structured]",
                   float, double) {
  using T = TestType;
  // Three state blocks: conv (2x4x4 -> 3x4x4), a shortcut and a classifier.
  auto g = geom({2, 4, 4}, 3, 3, 1, 1);
  const auto w = random_values<T>(3 * 2 * 9, 31);
  auto conv = std::make_shared<Conv2dOperator<T>>(g, w);
  auto pad = std::make_shared<ChannelPadOperator<T>>(TensorShape{2, 4, 4}, 3, 1, 1);
  auto pad2 = std::make_shared<ChannelPadOperator<T>>(TensorShape{2, 4, 4}, 3, 1, 0);
  const auto a = random_values<T>(5 * 48, 32);
  auto fc = std::make_shared<DenseOperator<T>>(5, 48, a);
  auto diag = std::make_shared<DiagonalOperator<T>>(random_values<T>(48, 33));
  // Rows: block 0 (32, no entries), 1 (48), 2 (5); same columns.
  std::vector<BlockEntry<T>> entries = {
      {2, 1, fc}, {1, 0, conv}, {1, 0, pad}, {1, 0, pad2}};
  BlockOperator<T> op({32, 48, 5}, {32, 48, 5}, entries);
  CHECK(op.kind() == "block");
  CHECK(op.row_blocks() == 3);
  CHECK(op.row_offset(2) == 80);
  CHECK(op.col_offset(3) == 85);
  REQUIRE(op.entries().size() == 4);
  CHECK(op.entries()[0].block_row == 1);
  CHECK(op.entries()[0].op == conv); // stable within a block
  CHECK(op.entries()[3].block_row == 2);
  CHECK(op.entries_in_row(0).empty());
  CHECK(op.entries_in_row(1).size() == 3);
  CHECK(op.entries_in_col(1).size() == 1);
  CHECK(op.strictly_block_lower_triangular());
  CHECK(op.block_lower_triangular());
  Dense M(85, 85);
  const Dense Mc = dense_conv(g, w);
  for (index_t i = 0; i < 48; ++i)
    for (index_t j = 0; j < 32; ++j)
      M(32 + i, j) = Mc(i, j);
  for (index_t c = 0; c < 2; ++c)
    for (index_t p = 0; p < 16; ++p) {
      M(32 + (c + 1) * 16 + p, c * 16 + p) += 1;
      M(32 + c * 16 + p, c * 16 + p) += 1;
    }
  for (index_t i = 0; i < 5; ++i)
    for (index_t j = 0; j < 48; ++j)
      M(80 + i, 32 + j) = a[i * 48 + j];
  // The summed block has cancellations only through |.|: checked by abs modes.
  check_operator<T>(op, M, false, true);
  check_deterministic<T>(op, 37);

  BlockOperator<T> with_diag({32, 48, 5}, {32, 48, 5},
                             {{1, 0, conv}, {1, 1, diag}, {2, 1, fc}});
  CHECK(!with_diag.strictly_block_lower_triangular());
  CHECK(with_diag.block_lower_triangular());
  BlockOperator<T> upper(
      {32, 48, 5}, {32, 48, 5},
      {{0, 1,
        std::make_shared<DenseOperator<T>>(32, 48, std::vector<T>(32 * 48, T(1)))}});
  CHECK(!upper.block_lower_triangular());
  BlockOperator<T> rect({48}, {32}, {{0, 0, conv}});
  CHECK(!rect.square_partition());
  CHECK(!rect.block_lower_triangular());
  CHECK_THROWS_WITH(BlockOperator<T>({32, 48}, {32, 48}, {{0, 0, conv}}),
                    Catch::Contains("entry 0"));
  CHECK_THROWS_AS(BlockOperator<T>({32}, {32}, {{0, 1, conv}}), InvalidArgument);
  // find_non_finite maps the entry position to the whole matrix.
  auto bad_a = a;
  bad_a[2 * 48 + 7] = std::numeric_limits<T>::quiet_NaN();
  BlockOperator<T> bad(
      {32, 48, 5}, {32, 48, 5},
      {{1, 0, conv}, {2, 1, std::make_shared<DenseOperator<T>>(5, 48, bad_a)}});
  const auto e = bad.find_non_finite();
  REQUIRE(e);
  CHECK(e->row == 82);
  CHECK(e->col == 39);
}

#include "operators/detail/conv_plan.hpp"

TEMPLATE_TEST_CASE("Conv2d back ends: direct, packed tiles and im2col + GEMM agree",
                   "[structured]", float, double) {
  using T = TestType;
  // Shapes that select each back end through Conv2dOperator (64 output
  // channels, K >= 256, wide products take the packed tiles) and odd ones.
  std::vector<Conv2dGeometry> cases = {geom({32, 4, 4}, 64, 3, 1, 1),
                                       geom({3, 7, 6}, 10, 3, 2, 1)};
  auto odd = geom({4, 9, 7}, 6, 3, 1, 0);
  odd.groups = 2;
  odd.dilation_h = 2;
  odd.pad_top = 3;
  odd.pad_right = 1;
  odd.stride_w = 2;
  cases.push_back(odd);
  for (const auto &g : cases) {
    const auto w = random_values<T>(
        static_cast<std::size_t>(g.out_channels * g.input.channels / g.groups * 9), 41);
    const Dense M = dense_conv(g, w);
    const detail::ConvPlan plan(g);
    const auto packed = detail::pack_weights<T>(plan, w, false);
    detail::ScratchPool<T> pool;
    Conv2dOperator<T> op(g, w);
    for (index_t k : {index_t(1), index_t(64)}) {
      const auto x = random_values<T>(static_cast<std::size_t>(M.cols * k), 42);
      std::vector<T, detail::AlignedAllocator<T>> xp(
          static_cast<std::size_t>(detail::xp_size<T>(plan, k)));
      std::vector<double> expect(static_cast<std::size_t>(M.rows * k));
      for (index_t i = 0; i < M.rows; ++i)
        for (index_t j = 0; j < M.cols; ++j) {
          const double m = M(i, j);
          if (m == 0)
            continue;
          for (index_t c = 0; c < k; ++c)
            expect[i * k + c] += m * x[j * k + c];
        }
      std::vector<std::vector<T>> ys;
      for (auto algo : {detail::ConvAlgorithm::direct, detail::ConvAlgorithm::packed,
                        detail::ConvAlgorithm::im2col}) {
        std::vector<T> y(static_cast<std::size_t>(M.rows * k), T(1));
        detail::ConvEpilogue<T> store;
        store.alpha = T(2);
        store.beta = T(-1);
        detail::conv_kernels().of<T>().forward(plan, algo, packed.data(), w.data(), store,
                                               ConstMatrixView<T>(x.data(), M.cols, k, k),
                                               MatrixView<T>{y.data(), M.rows, k, k},
                                               xp.data(), pool, Execution::parallel);
        double err = 0;
        for (std::size_t i = 0; i < y.size(); ++i)
          err = std::max(err, std::abs(y[i] - (2 * expect[i] - 1)));
        REQUIRE(err <= 100 * tol<T>());
        ys.push_back(y);
      }
      // Same micro-kernel and summation order with and without packing.
      CHECK(ys[0] == ys[1]);
      std::vector<T> y(static_cast<std::size_t>(M.rows * k), T(1));
      op.apply(Mode::normal, T(2), ConstMatrixView<T>(x.data(), M.cols, k, k), T(-1),
               MatrixView<T>{y.data(), M.rows, k, k});
      CHECK(y == ys[0]);
    }
  }
}

TEMPLATE_TEST_CASE("Conv2dOperator::apply_activated equals the product, bias and "
                   "activation in separate passes",
                   "[structured]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (const auto &g : {geom({3, 6, 5}, 4, 3, 1, 1), geom({8, 8, 8}, 16, 3, 2, 1)}) {
    const auto w = random_values<T>(
        static_cast<std::size_t>(g.out_channels * g.input.channels * 9), 11);
    Conv2dOperator<T> op(g, w);
    const auto bias = random_values<T>(static_cast<std::size_t>(op.rows()), 12);
    for (const auto kind : {ActivationKind::relu, ActivationKind::leaky_relu,
                            ActivationKind::identity, ActivationKind::tanh}) {
      const Activation phi{kind, 0.1};
      for (index_t k : {index_t(1), index_t(3), index_t(32)})
        for (const T beta : {T(0), T(1)})
          for (const int with_bias : {0, 1})
            for (const int with_residual : {0, 1}) {
              CAPTURE(phi.name(), k, beta, with_bias, with_residual, g.stride_h);
              const auto x =
                  random_values<T>(static_cast<std::size_t>(op.cols() * k), 13);
              const auto y0 =
                  random_values<T>(static_cast<std::size_t>(op.rows() * k), 14);
              // A residual with a wider leading dimension than y.
              const index_t rld = k + 5;
              const auto r =
                  random_values<T>(static_cast<std::size_t>(op.rows() * rld), 16);
              const T rscale = T(0.75);
              // Expected: apply, then + bias + residual, then phi (separate passes).
              std::vector<T> expect = y0;
              op.apply(Mode::normal, T(0.5),
                       ConstMatrixView<T>(x.data(), op.cols(), k, k), beta,
                       MatrixView<T>{expect.data(), op.rows(), k, k});
              for (index_t i = 0; i < op.rows(); ++i)
                for (index_t c = 0; c < k; ++c) {
                  T &e = expect[i * k + c];
                  e = phi(e + (with_bias ? bias[i] : T(0)) +
                          (with_residual ? rscale * r[i * rld + c] : T(0)));
                }
              const std::span<const T> b =
                  with_bias ? std::span<const T>(bias) : std::span<const T>();
              const ConstMatrixView<T> rv =
                  with_residual ? ConstMatrixView<T>(r.data(), op.rows(), k, rld)
                                : ConstMatrixView<T>();
              for (const auto exec : {Execution::parallel, Execution::reference}) {
                std::vector<T> y = y0;
                const bool finite = op.apply_activated(
                    T(0.5), ConstMatrixView<T>(x.data(), op.cols(), k, k), beta,
                    MatrixView<T>{y.data(), op.rows(), k, k}, b, phi, exec, rv, rscale);
                CHECK(finite);
                double err = 0;
                for (std::size_t i = 0; i < y.size(); ++i)
                  err = std::max(err, double(std::abs(y[i] - expect[i])));
                REQUIRE(err <= 50 * tol<T>());
              }
            }
    }
    // A NaN before the activation is reported even though ReLU hides it.
    const index_t k = 4;
    auto x = random_values<T>(static_cast<std::size_t>(op.cols() * k), 15);
    x[static_cast<std::size_t>(op.cols() / 2 * k + 2)] = nan;
    std::vector<T> y(static_cast<std::size_t>(op.rows() * k));
    for (const auto exec : {Execution::parallel, Execution::reference})
      CHECK_FALSE(op.apply_activated(T(1), ConstMatrixView<T>(x.data(), op.cols(), k, k),
                                     T(0), MatrixView<T>{y.data(), op.rows(), k, k}, {},
                                     Activation{}, exec));
    const std::vector<T> short_bias(3);
    CHECK_THROWS_WITH(op.apply_activated(T(1),
                                         ConstMatrixView<T>(x.data(), op.cols(), k, k),
                                         T(0), MatrixView<T>{y.data(), op.rows(), k, k},
                                         short_bias, Activation{}),
                      Catch::Contains("bias has 3 entries"));
    const std::vector<T> small(static_cast<std::size_t>(op.rows() * (k - 1)));
    CHECK_THROWS_WITH(
        op.apply_activated(T(1), ConstMatrixView<T>(x.data(), op.cols(), k, k), T(0),
                           MatrixView<T>{y.data(), op.rows(), k, k}, {}, Activation{},
                           Execution::parallel,
                           ConstMatrixView<T>(small.data(), op.rows(), k - 1, k - 1)),
        Catch::Contains("the residual is"));
  }
}

TEMPLATE_TEST_CASE("Conv2dOperator::apply_activated: each column of a wide batch has "
                   "the bits of the same column alone",
                   "[structured]", float, double) {
  using T = TestType;
  // Wide batches store whole vectors from the micro-kernel's registers, a
  // single column goes through the tile buffer: the same sums and the same
  // fused store, so the same bits. K = 144 is one piece of k, K = 288 two;
  // 36 output channels leave a partial register tile; stride 2 discards
  // columns.
  for (const auto &g : {geom({16, 8, 8}, 16, 3, 1, 1), geom({32, 6, 6}, 36, 3, 1, 1),
                        geom({16, 9, 9}, 8, 3, 2, 1)}) {
    const auto w = random_values<T>(
        static_cast<std::size_t>(g.out_channels * g.input.channels * 9), 21);
    Conv2dOperator<T> op(g, w);
    const auto bias = random_values<T>(static_cast<std::size_t>(op.rows()), 22);
    for (const auto kind : {ActivationKind::relu, ActivationKind::identity}) {
      const Activation phi{kind, 0};
      for (index_t k : {index_t(8), index_t(16), index_t(24), index_t(48)})
        for (const T beta : {T(0), T(0.5)}) {
          CAPTURE(phi.name(), k, beta, g.out_channels, g.stride_h);
          const auto x = random_values<T>(static_cast<std::size_t>(op.cols() * k), 23);
          const auto r = random_values<T>(static_cast<std::size_t>(op.rows() * k), 24);
          auto y = random_values<T>(static_cast<std::size_t>(op.rows() * k), 25);
          const std::vector<T> y0 = y;
          REQUIRE(op.apply_activated(
              T(0.5), ConstMatrixView<T>(x.data(), op.cols(), k, k), beta,
              MatrixView<T>{y.data(), op.rows(), k, k}, bias, phi, Execution::parallel,
              ConstMatrixView<T>(r.data(), op.rows(), k, k), T(0.75)));
          index_t mismatches = 0;
          for (index_t c = 0; c < k; ++c) {
            std::vector<T> xc(static_cast<std::size_t>(op.cols())),
                rc(static_cast<std::size_t>(op.rows())),
                yc(static_cast<std::size_t>(op.rows()));
            for (index_t i = 0; i < op.cols(); ++i)
              xc[i] = x[i * k + c];
            for (index_t i = 0; i < op.rows(); ++i) {
              rc[i] = r[i * k + c];
              yc[i] = y0[i * k + c];
            }
            REQUIRE(op.apply_activated(
                T(0.5), ConstMatrixView<T>(xc.data(), op.cols(), 1, 1), beta,
                MatrixView<T>{yc.data(), op.rows(), 1, 1}, bias, phi, Execution::parallel,
                ConstMatrixView<T>(rc.data(), op.rows(), 1, 1), T(0.75)));
            for (index_t i = 0; i < op.rows(); ++i)
              mismatches += yc[i] != y[i * k + c];
          }
          CHECK(mismatches == 0);
        }
    }
  }
}

TEMPLATE_TEST_CASE("Conv2dOperator capabilities: double-accumulated sums, folds",
                   "[structured]", float, double) {
  using T = TestType;
  auto g = geom({3, 6, 5}, 4, 3, 2, 1);
  g.dilation_w = 2;
  const auto w = random_values<T>(static_cast<std::size_t>(4 * 3 * 9), 5);
  const auto op = std::make_shared<Conv2dOperator<T>>(g, w);
  const Dense M = dense_conv(g, w);
  for (const bool rows : {true, false}) {
    std::vector<double> s(static_cast<std::size_t>(rows ? op->rows() : op->cols()), 0.5);
    op->add_abs_sums(rows, s);
    for (index_t i = 0; i < static_cast<index_t>(s.size()); ++i) {
      double ref = 0.5;
      for (index_t j = 0; j < (rows ? M.cols : M.rows); ++j)
        ref += std::abs(rows ? M(i, j) : M(j, i));
      CHECK(s[i] == Approx(ref).epsilon(1e-13));
    }
  }
  CHECK(capability<AccurateAbsSums<T>>(static_cast<const LinearOperator<T> &>(*op)));

  // diag(d) conv folds when d is constant per output channel, not otherwise.
  const index_t plane = op->rows() / 4;
  std::vector<T> d(static_cast<std::size_t>(op->rows()));
  for (index_t i = 0; i < op->rows(); ++i)
    d[i] = static_cast<T>(0.5 + i / plane);
  const auto scaled = op->scaled_rows(d);
  REQUIRE(scaled);
  CHECK(scaled->kind() == "conv2d");
  Dense SM(M.rows, M.cols);
  for (index_t i = 0; i < M.rows; ++i)
    for (index_t j = 0; j < M.cols; ++j)
      SM(i, j) = M(i, j) * double(d[i]);
  check_operator<T>(*scaled, SM, false);
  d[1] = T(7);
  CHECK(!op->scaled_rows(d));

  // conv + conv of the same geometry is a convolution; other sums are not folded.
  const auto w2 = random_values<T>(w.size(), 6);
  const auto sum = op->plus(Conv2dOperator<T>(g, w2));
  REQUIRE(sum);
  const Dense M2 = dense_conv(g, w2);
  Dense SUM(M.rows, M.cols);
  for (std::size_t k = 0; k < SUM.a.size(); ++k)
    SUM.a[k] = M.a[k] + M2.a[k];
  check_operator<T>(*sum, SUM, false);
  CHECK(!op->plus(CsrMatrix<T>(op->rows(), op->cols())));
  auto g2 = g;
  g2.dilation_w = 1;
  CHECK(!op->plus(Conv2dOperator<T>(g2, w2)));
}

TEMPLATE_TEST_CASE("Identity, diagonal and dense forms", "[structured]", float, double) {
  using T = TestType;
  const IdentityOperator<T> id(3, T(2));
  const auto *f = capability<DiagonalForm<T>>(static_cast<const LinearOperator<T> &>(id));
  REQUIRE(f);
  CHECK(f->identity_scale() == T(2));
  CHECK(f->diagonal_values() == std::vector<T>{2, 2, 2});
  const DiagonalOperator<T> dg({1, 2, 3});
  const auto *fd =
      capability<DiagonalForm<T>>(static_cast<const LinearOperator<T> &>(dg));
  REQUIRE(fd);
  CHECK(!fd->identity_scale());
  CHECK(fd->diagonal_values() == std::vector<T>{1, 2, 3});
  const DenseOperator<T> dn(2, 2, {1, 2, 3, 4});
  const auto *dd = capability<DenseForm<T>>(static_cast<const LinearOperator<T> &>(dn));
  REQUIRE(dd);
  CHECK(std::vector<T>(dd->row_major().begin(), dd->row_major().end()) ==
        std::vector<T>{1, 2, 3, 4});
  CHECK(!capability<DenseForm<T>>(static_cast<const LinearOperator<T> &>(dg)));
}
