#pragma once
// The committed Fashion-MNIST models (tests/data/fashion) and the dataset
// they were trained on, for the tests that analyse them.

#include <catch2/catch.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/io/idx.hpp>
#include <tacit/nn/onnx.hpp>

#include <filesystem>
#include <string>

namespace tacit::testutil {

/// The Fashion-MNIST directory (Debian package dataset-fashion-mnist, or
/// TACIT_FASHION_MNIST_DIR). Its absence fails the calling test with a
/// message naming it: the soundness tests on real data must not be skipped.
inline std::filesystem::path fashion_test_data() {
  const auto dir = fashion_mnist_directory();
  if (!dir)
    FAIL("Fashion-MNIST is missing: install the Debian package dataset-fashion-mnist "
         "(/usr/share/datasets/fashion-mnist) or set TACIT_FASHION_MNIST_DIR to a "
         "directory with its four .gz files");
  return *dir;
}

/// The first `count` test images and labels.
inline LabelledImages<double> fashion_test_images(const std::filesystem::path &dir,
                                                  index_t count) {
  return read_idx_dataset<double>(dir / "t10k-images-idx3-ubyte.gz",
                                  dir / "t10k-labels-idx1-ubyte.gz", count);
}

/// A committed model by name ("fashion_mlp", "fashion_cnn").
template <class T = double> Model<T> fashion_model(const std::string &name) {
  return import_onnx<T>(std::filesystem::path(TACIT_TEST_DATA_DIR) / "fashion" /
                        (name + ".onnx"));
}

/// Certification options for images: boxes clipped to pixels in [0, 1].
inline CertifyOptions pixel_certify_options(BoundMethod method = BoundMethod::best) {
  CertifyOptions options;
  options.method = method;
  options.domain_lo = 0;
  options.domain_hi = 1;
  return options;
}

} // namespace tacit::testutil
