#pragma once
// Labelled inputs for `tacit certify` and `tacit attack`: an IDX directory
// (Fashion-MNIST layout) or a text file of inputs with a text file of labels.

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <tacit/core/dense.hpp>
#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/config.hpp>
#if TACIT_HAVE_IDX
#include <tacit/io/idx.hpp>
#endif

#include "cli_common.hpp"

namespace tacit::cli {

/// Inputs (one per column) and their labels.
struct LabelledData {
  Batch<double> inputs;
  std::vector<int> labels;
  std::string source;
  bool images = false; ///< from an IDX directory (values in [0, 1])
};

/// Reads one integer label per line ('#' lines and blank lines ignored).
inline std::vector<int> read_labels(const std::filesystem::path &path) {
  std::ifstream in(path);
  if (!in)
    throw FileError(path.string(), 0, "cannot open the label file");
  std::vector<int> labels;
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::size_t a = line.find_first_not_of(" \t\r");
    if (a == std::string::npos || line[a] == '#')
      continue;
    std::size_t b = line.find_last_not_of(" \t\r");
    int v = 0;
    const char *first = line.data() + a, *last = line.data() + b + 1;
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (ec != std::errc() || ptr != last || v < 0)
      throw FileError(path.string(), number,
                      "expected one non-negative integer label, got '" +
                          line.substr(a, b - a + 1) + "'");
    labels.push_back(v);
  }
  return labels;
}

inline std::vector<double> parse_list(const std::string &text, const std::string &what,
                                      double min, double max) {
  std::vector<double> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(
        start, comma == std::string::npos ? std::string::npos : comma - start);
    out.push_back(parse_real(item, what, min, max));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

#if TACIT_HAVE_IDX
/// The IDX file `name` of directory `dir`, gzipped or plain.
/// \throws FileError when neither exists.
inline std::filesystem::path find_idx_file(const std::filesystem::path &dir,
                                           const std::string &name) {
  for (const auto &candidate : {dir / (name + ".gz"), dir / name})
    if (std::filesystem::exists(candidate))
      return candidate;
  throw FileError((dir / (name + ".gz")).string(), 0,
                  "not found (expected the Fashion-MNIST/MNIST IDX files)");
}
#endif

/// --data DIR [--split] or --input/--labels, at most `limit` inputs.
inline LabelledData load_labelled(const Arguments &args, index_t p, index_t limit) {
  LabelledData d;
  const auto data = args.text("data");
  const auto input = args.text("input");
  const auto labels = args.text("labels");
  if (data && (input || labels))
    throw UsageError("give either --data or --input with --labels, not both");
  if (data) {
#if TACIT_HAVE_IDX
    const std::string split = args.choice("split", {"test", "train"}).value_or("test");
    const std::string stem = split == "test" ? "t10k" : "train";
    const std::filesystem::path dir = *data;
    auto set =
        read_idx_dataset<double>(find_idx_file(dir, stem + "-images-idx3-ubyte"),
                                 find_idx_file(dir, stem + "-labels-idx1-ubyte"), limit);
    d.inputs = std::move(set.images);
    d.labels = std::move(set.labels);
    d.source = dir.string() + " (" + split + ")";
    d.images = true;
#else
    throw Unsupported("--data needs the IDX reader (component idx, zlib), which this "
                      "build lacks; use --input and --labels");
#endif
  } else {
    if (!input || !labels)
      throw UsageError("missing inputs: give --data DIR, or --input U.txt with --labels "
                       "L.txt");
    d.inputs = read_vectors<double>(*input, p);
    d.labels = read_labels(*labels);
    if (static_cast<index_t>(d.labels.size()) != d.inputs.cols())
      throw FileError(*labels, 0,
                      std::to_string(d.labels.size()) + " labels for " +
                          std::to_string(d.inputs.cols()) + " inputs in " + *input);
    if (limit >= 0 && limit < d.inputs.cols()) {
      Batch<double> cut(p, limit);
      std::vector<double> col(p);
      for (index_t j = 0; j < limit; ++j) {
        d.inputs.get_column(j, col);
        cut.set_column(j, col);
      }
      d.inputs = std::move(cut);
      d.labels.resize(limit);
    }
    d.source = *input;
  }
  if (d.inputs.rows() != p)
    throw CommandFailure(exit_input,
                         d.source + ": inputs have " + std::to_string(d.inputs.rows()) +
                             " values, the model has p = " + std::to_string(p));
  return d;
}

inline const std::vector<OptionSpec> &data_options() {
  static const std::vector<OptionSpec> o = {
      {"data", 0, "DIR", "IDX directory (t10k-/train-images-idx3-ubyte[.gz] and labels)"},
      {"split", 0, "S", "test or train: which IDX files of --data (default test)"},
      {"input", 'i', "U.txt", "inputs, one per line (with --labels)"},
      {"labels", 0, "L.txt", "one integer label per line (with --input)"},
      {"limit", 0, "N", "use the first N inputs only"}};
  return o;
}

} // namespace tacit::cli
