#include <catch2/catch.hpp>

#include <tacit/core/error.hpp>
#include <tacit/io/idx.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <zlib.h>

#include "io_test_util.hpp"

using namespace tacit;
using namespace tacit_test;

namespace {

/// IDX bytes: magic 00 00 type rank, big-endian u32 dims, then `data`.
std::string idx_bytes(std::uint8_t type, const std::vector<std::uint32_t> &dims,
                      const std::vector<std::uint8_t> &data) {
  std::string s;
  s += '\0';
  s += '\0';
  s += static_cast<char>(type);
  s += static_cast<char>(dims.size());
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8)
      s += static_cast<char>((d >> shift) & 0xFF);
  s.append(data.begin(), data.end());
  return s;
}

/// gzip-compressed copy of `plain`, written through zlib.
void write_gzip(const fs::path &path, const std::string &plain) {
  gzFile f = gzopen(path.c_str(), "wb9");
  REQUIRE(f != nullptr);
  if (!plain.empty())
    REQUIRE(gzwrite(f, plain.data(), static_cast<unsigned>(plain.size())) ==
            static_cast<int>(plain.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

/// Two 2 x 3 images with bytes 0..11 scaled, and labels {7, 3}.
const std::vector<std::uint8_t> pixels = {0,  255, 51, 102, 1,  254,
                                          10, 20,  30, 40,  50, 60};

template <class E> std::string message_of(const std::function<void()> &f) {
  try {
    f();
  } catch (const E &e) {
    return e.what();
  }
  FAIL("no exception");
  return {};
}

} // namespace

TEST_CASE("IDX images and labels, plain and gzip", "[idx]") {
  ScratchDir dir;
  const std::string images = idx_bytes(0x08, {2, 2, 3}, pixels);
  const std::string labels = idx_bytes(0x08, {2}, {7, 3});
  write_text(dir / "img", images);
  write_text(dir / "lab", labels);
  write_gzip(dir / "img.gz", images);
  write_gzip(dir / "lab.gz", labels);

  for (const char *suffix : {"", ".gz"}) {
    const auto im = read_idx_images<double>(dir / (std::string("img") + suffix));
    CHECK(im.height == 2);
    CHECK(im.width == 3);
    REQUIRE(im.images.rows() == 6);
    REQUIRE(im.images.cols() == 2);
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 6; ++i)
        CHECK(im.images(i, j) == double(pixels[6 * j + i]) * (1.0 / 255.0));
    CHECK(im.images(1, 0) == 1.0);
    CHECK(im.images(0, 0) == 0.0);
    const auto lb = read_idx_labels(dir / (std::string("lab") + suffix));
    CHECK(lb == std::vector<int>{7, 3});

    const auto ds = read_idx_dataset<float>(dir / (std::string("img") + suffix),
                                            dir / (std::string("lab") + suffix), 1);
    REQUIRE(ds.images.cols() == 1);
    CHECK(ds.labels == std::vector<int>{7});
    CHECK(ds.images(5, 0) == 254.0f * (1.0f / 255.0f));
  }

  // Generic reader: int32 values and the item limit.
  write_text(dir / "i32",
             idx_bytes(0x0C, {3, 1}, {0, 0, 0, 1, 0, 0, 1, 0, 0xFF, 0, 0, 0}));
  const auto a = read_idx(dir / "i32");
  CHECK(a.type == IdxType::i32);
  CHECK(a.dims == std::vector<index_t>{3, 1});
  CHECK(a.size() == 3);
  CHECK(a.bytes.size() == 12);
  const auto b = read_idx(dir / "i32", 2);
  CHECK(b.dims == std::vector<index_t>{2, 1});
  CHECK(b.bytes.size() == 8);
  // A limit beyond the count reads everything.
  CHECK(read_idx(dir / "i32", 10).dims == std::vector<index_t>{3, 1});
}

TEST_CASE("IDX errors name the file and the problem", "[idx]") {
  ScratchDir dir;
  const auto check = [&](const std::string &file, const std::string &content,
                         const std::string &expected, bool gzip = false) {
    const fs::path p = dir / file;
    if (gzip)
      write_gzip(p, content);
    else
      write_text(p, content);
    const std::string msg = message_of<FileError>([&] { (void)read_idx(p); });
    INFO(msg);
    CHECK(msg.find(p.string()) != std::string::npos);
    CHECK(msg.find(expected) != std::string::npos);
  };
  const std::string good = idx_bytes(0x08, {2, 2, 3}, pixels);

  check("empty", "", "truncated");
  check("short_magic", std::string("\0\0", 2), "4-byte magic");
  check("text", "hello world\n", "bad magic number");
  check("type", idx_bytes(0x07, {1}, {1}), "unknown element type 0x07");
  check("rank0", idx_bytes(0x08, {}, {}), "zero dimensions");
  check("header", good.substr(0, 10), "truncated header");
  check("data", good.substr(0, good.size() - 1), "truncated data");
  check("data.gz", good.substr(0, good.size() - 5), "needs 12 bytes after the header, 7",
        true);
  check("trailing", good + "x", "trailing bytes");
  check("huge", idx_bytes(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}),
        "too many elements");
  // A large declared size in a small file: truncation, not an allocation.
  check("big", idx_bytes(0x08, {60000, 28, 28}, {1, 2, 3}), "47040000 bytes");

  // Damaged gzip streams: cut short, and a flipped byte in the deflate data.
  write_gzip(dir / "whole.gz", good);
  const std::string gz = read_text(dir / "whole.gz");
  write_text(dir / "cut.gz", gz.substr(0, gz.size() - 12));
  {
    const std::string msg =
        message_of<FileError>([&] { (void)read_idx(dir / "cut.gz"); });
    INFO(msg);
    CHECK(msg.find("cut.gz") != std::string::npos);
    CHECK((msg.find("truncated") != std::string::npos));
  }
  std::string flipped = gz;
  flipped[gz.size() - 6] =
      static_cast<char>(flipped[gz.size() - 6] ^ 0x5A); // in the CRC/size trailer
  write_text(dir / "flip.gz", flipped);
  {
    const std::string msg =
        message_of<FileError>([&] { (void)read_idx(dir / "flip.gz"); });
    INFO(msg);
    CHECK(msg.find("flip.gz") != std::string::npos);
    CHECK(msg.find("read error") != std::string::npos);
  }

  // Missing file, directory.
  CHECK(message_of<FileError>([&] {
          (void)read_idx(dir / "nope");
        }).find("cannot open") != std::string::npos);
  CHECK(message_of<FileError>([&] {
          (void)read_idx(dir.path());
        }).find("is a directory") != std::string::npos);

  // Typed readers reject the wrong kind of array.
  write_text(dir / "img", good);
  write_text(dir / "lab", idx_bytes(0x08, {3}, {1, 2, 3}));
  CHECK(message_of<FileError>([&] {
          (void)read_idx_labels(dir / "img");
        }).find("expected labels") != std::string::npos);
  CHECK(message_of<FileError>([&] {
          (void)read_idx_images<double>(dir / "lab");
        }).find("expected images") != std::string::npos);
  const std::string mismatch = message_of<FileError>(
      [&] { (void)read_idx_dataset<double>(dir / "img", dir / "lab"); });
  CHECK(mismatch.find("3 labels for 2 images") != std::string::npos);
}

TEST_CASE("Fashion-MNIST test set from the Debian package", "[idx]") {
  const auto dir = fashion_mnist_directory();
  if (!dir)
    FAIL("Fashion-MNIST is missing: install the Debian package dataset-fashion-mnist "
         "(/usr/share/datasets/fashion-mnist) or set TACIT_FASHION_MNIST_DIR");
  const auto test = read_idx_dataset<float>(*dir / "t10k-images-idx3-ubyte.gz",
                                            *dir / "t10k-labels-idx1-ubyte.gz");
  CHECK(test.height == 28);
  CHECK(test.width == 28);
  REQUIRE(test.images.cols() == 10000);
  REQUIRE(test.labels.size() == 10000);
  // The first test images are an ankle boot, a pullover and trousers.
  CHECK(test.labels[0] == 9);
  CHECK(test.labels[1] == 2);
  CHECK(test.labels[2] == 1);
  std::vector<int> per_class(10, 0);
  for (int l : test.labels) {
    REQUIRE(l >= 0);
    REQUIRE(l < 10);
    ++per_class[l];
  }
  for (int c : per_class)
    CHECK(c == 1000);
  float lo = 1, hi = 0;
  for (float v : test.images.storage()) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);
}
