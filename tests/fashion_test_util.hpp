#pragma once
// The committed Fashion-MNIST models (tests/data/fashion) and the dataset
// they were trained on, for the tests that analyse them.

#include <catch2/catch.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/io/idx.hpp>
#include <tacit/nn/onnx.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace tacit::testutil {

/// The Fashion-MNIST directory when both it and ONNX import are available;
/// otherwise a warning saying which is missing (the test is then skipped).
inline std::optional<std::filesystem::path> fashion_test_data() {
  if (!onnx_import_available()) {
    WARN("built without ONNX support; skipped");
    return std::nullopt;
  }
  auto dir = fashion_mnist_directory();
  if (!dir)
    WARN("Fashion-MNIST not installed (Debian package dataset-fashion-mnist); skipped");
  return dir;
}

/// The first `count` test images and labels.
inline LabelledImages<double> fashion_test_images(const std::filesystem::path &dir,
                                                  index_t count) {
  return read_idx_dataset<double>(dir / "t10k-images-idx3-ubyte.gz",
                                  dir / "t10k-labels-idx1-ubyte.gz", count);
}

/// A committed model by name ("fashion_mlp", "fashion_cnn").
inline Model<double> fashion_model(const std::string &name) {
  return import_onnx<double>(std::filesystem::path(TACIT_TEST_DATA_DIR) / "fashion" /
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
