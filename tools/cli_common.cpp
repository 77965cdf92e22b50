#include "cli_common.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <system_error>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/core/format.hpp>
#include <tacit/core/isa.hpp>

#include <unistd.h>

namespace tacit::cli {

namespace {
std::vector<Command> &registry() {
  static std::vector<Command> list;
  return list;
}

std::string dashed(const OptionSpec &o) {
  return "--" + o.name;
}
} // namespace

bool register_command(Command command) {
  auto &list = registry();
  list.push_back(std::move(command));
  std::stable_sort(list.begin(), list.end(), [](const Command &a, const Command &b) {
    return a.order != b.order ? a.order < b.order : a.name < b.name;
  });
  return true;
}

const std::vector<Command> &commands() {
  return registry();
}

const Command *find_command(std::string_view name) {
  for (const auto &c : registry())
    if (c.name == name)
      return &c;
  return nullptr;
}

const std::vector<OptionSpec> &global_options() {
  static const std::vector<OptionSpec> options = {
      {"threads", 0, "N", "use at most N threads (default: all cores)"},
      {"json", 0, "", "print a machine-readable JSON report on stdout"},
      {"quiet", 'q', "", "print no report and no progress (warnings and errors only)"},
      {"help", 'h', "", "show this help and exit"},
  };
  return options;
}

// ---------------------------------------------------------------- numbers

std::int64_t parse_integer(const std::string &text, const std::string &what,
                           std::int64_t min, std::int64_t max) {
  std::int64_t value = 0;
  const char *first = text.data(), *last = text.data() + text.size();
  if (first != last && *first == '+')
    ++first;
  const auto [end, ec] = std::from_chars(first, last, value);
  if (text.empty() || ec == std::errc::invalid_argument || end != last)
    throw UsageError("invalid value '" + text + "' for " + what +
                     ": expected a whole number");
  if (ec == std::errc::result_out_of_range || value < min || value > max)
    throw UsageError("value " + text + " for " + what + " is out of range [" +
                     std::to_string(min) + ", " + std::to_string(max) + "]");
  return value;
}

double parse_real(const std::string &text, const std::string &what, double min,
                  double max) {
  // strtod accepts leading blanks, hex floats, "inf" and "nan": reject the
  // blanks here and the non-finite values below.
  if (text.empty() || std::isspace(static_cast<unsigned char>(text.front())))
    throw UsageError("invalid value '" + text + "' for " + what + ": expected a number");
  char *end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size())
    throw UsageError("invalid value '" + text + "' for " + what + ": expected a number");
  if (!std::isfinite(value) || errno == ERANGE)
    throw UsageError("invalid value '" + text + "' for " + what +
                     ": expected a finite number");
  if (value < min || value > max)
    throw UsageError("value " + text + " for " + what + " is out of range [" +
                     fmt_g(min) + ", " + fmt_g(max) + "]");
  return value;
}

// ---------------------------------------------------------------- arguments

std::optional<std::string> Arguments::text(const std::string &name) const {
  const auto it = values_.find(name);
  if (it == values_.end())
    return std::nullopt;
  return it->second;
}

std::optional<std::int64_t> Arguments::integer(const std::string &name, std::int64_t min,
                                               std::int64_t max) const {
  const auto t = text(name);
  if (!t)
    return std::nullopt;
  return parse_integer(*t, "--" + name, min, max);
}

std::optional<double> Arguments::real(const std::string &name, double min,
                                      double max) const {
  const auto t = text(name);
  if (!t)
    return std::nullopt;
  return parse_real(*t, "--" + name, min, max);
}

std::optional<std::string>
Arguments::choice(const std::string &name,
                  const std::vector<std::string> &choices) const {
  const auto t = text(name);
  if (!t)
    return std::nullopt;
  if (std::find(choices.begin(), choices.end(), *t) != choices.end())
    return t;
  std::string list;
  for (std::size_t i = 0; i < choices.size(); ++i)
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  throw UsageError("invalid value '" + *t + "' for --" + name + ": expected " + list);
}

Arguments Arguments::parse(const Command &command, const std::vector<std::string> &args) {
  std::vector<const OptionSpec *> specs;
  for (const auto &o : command.options)
    specs.push_back(&o);
  for (const auto &o : global_options())
    specs.push_back(&o);
  const auto find_long = [&](std::string_view name) -> const OptionSpec * {
    for (const auto *o : specs)
      if (o->name == name)
        return o;
    return nullptr;
  };
  const auto find_short = [&](char c) -> const OptionSpec * {
    for (const auto *o : specs)
      if (o->short_name == c)
        return o;
    return nullptr;
  };

  Arguments result;
  bool options_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string &arg = args[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      result.positionals_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    const OptionSpec *spec = nullptr;
    std::optional<std::string> inline_value;
    std::string shown = arg;
    if (arg.rfind("--", 0) == 0) {
      const auto eq = arg.find('=');
      const std::string name = arg.substr(2, eq == std::string::npos ? eq : eq - 2);
      if (eq != std::string::npos)
        inline_value = arg.substr(eq + 1);
      shown = "--" + name;
      spec = find_long(name);
    } else if (arg.size() == 2) {
      spec = find_short(arg[1]);
    }
    if (!spec)
      throw UsageError("unknown option '" + shown + "'");
    const std::string display = dashed(*spec);
    if (result.values_.count(spec->name))
      throw UsageError("option " + display + " given more than once");
    if (spec->metavar.empty()) {
      if (inline_value)
        throw UsageError("option " + display + " takes no value");
      result.values_[spec->name] = "";
      continue;
    }
    if (inline_value) {
      result.values_[spec->name] = *inline_value;
    } else {
      if (i + 1 >= args.size())
        throw UsageError("option " + display + " requires a value (" + spec->metavar +
                         ")");
      result.values_[spec->name] = args[++i];
    }
  }
  if (result.flag("help"))
    return result; // positionals are not checked for --help

  std::size_t required = 0;
  for (const auto &p : command.positionals)
    required += p.required ? 1 : 0;
  if (result.positionals_.size() < required)
    throw UsageError("missing argument " +
                     command.positionals[result.positionals_.size()].name);
  if (result.positionals_.size() > command.positionals.size())
    throw UsageError("unexpected argument '" +
                     result.positionals_[command.positionals.size()] + "'");
  return result;
}

// ---------------------------------------------------------------- progress

Progress::Progress(bool enabled) : enabled_(enabled) {}
Progress::~Progress() {
  clear();
}

void Progress::update(const std::string &text, bool force) {
  if (!enabled_)
    return;
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock())
    return; // another thread is drawing: skip this update
  const auto now = std::chrono::steady_clock::now();
  if (!force && shown_ && now - last_ < std::chrono::milliseconds(100))
    return;
  last_ = now;
  shown_ = true;
  // \r to the start of the line, ESC[K to erase what the previous text left.
  std::fprintf(stderr, "\r%s\033[K", text.c_str());
  std::fflush(stderr);
}

void Progress::clear() {
  if (!enabled_)
    return;
  std::lock_guard lock(mutex_);
  if (!shown_)
    return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

// ---------------------------------------------------------------- invocation

bool Invocation::progress_enabled() const {
  return !json && !quiet && ::isatty(STDERR_FILENO) == 1;
}

void Invocation::emit(const nlohmann::json &document) const {
  std::cout << document.dump(2) << std::endl;
}

void Invocation::warn(const std::string &message) const {
  std::cerr << "tacit " << command.name << ": warning: " << message << std::endl;
}

// ---------------------------------------------------------------- formatting

std::string kernel_level() {
  const std::string note = isa_note();
  return to_string(active_isa()) + " (" + (note.empty() ? "best for this CPU" : note) +
         "; CPU: " + cpu_features() + ")";
}

std::string fmt_g(double value, int digits) { return format_number(value, digits); }

std::string fmt_count(std::int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string fmt_bytes(double bytes) {
  static const char *units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buffer;
}

std::string fmt_seconds(double seconds) {
  char buffer[64];
  if (seconds < 1e-3)
    std::snprintf(buffer, sizeof buffer, "%.1f us", seconds * 1e6);
  else if (seconds < 1)
    std::snprintf(buffer, sizeof buffer, "%.1f ms", seconds * 1e3);
  else
    std::snprintf(buffer, sizeof buffer, "%.2f s", seconds);
  return buffer;
}

// ---------------------------------------------------------------- paths

namespace {
std::string lower_extension(const std::filesystem::path &path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}
} // namespace

bool is_matrix_market_path(const std::filesystem::path &path) {
  return lower_extension(path) == ".mtx";
}

bool has_native_extension(const std::filesystem::path &path) {
  return lower_extension(path) == ".tacit";
}

void write_output(const std::filesystem::path &destination,
                  const std::function<void(const std::filesystem::path &)> &write) {
  namespace fs = std::filesystem;
  // A symbolic link (e.g. /dev/stdout -> /proc/self/fd/1) would be replaced by
  // the rename, and so would a device node: write through those instead.
  std::error_code ec;
  const bool link = fs::is_symlink(fs::symlink_status(destination, ec));
  const fs::file_status status = fs::status(destination, ec);
  const bool special = link || (fs::exists(status) && !fs::is_regular_file(status) &&
                                !fs::is_directory(status));
  if (!special) {
    write(destination);
    return;
  }
  static std::atomic<unsigned> counter{0};
  const fs::path staging =
      fs::temp_directory_path() / ("tacit-output-" + std::to_string(::getpid()) + "-" +
                                   std::to_string(counter++) + ".tmp");
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
  } cleanup{staging};
  write(staging);
  std::ifstream in(staging, std::ios::binary);
  std::ofstream out(destination, std::ios::binary);
  if (!out)
    throw FileError(destination.string(), 0, "cannot open for writing");
  if (in.peek() != std::ifstream::traits_type::eof())
    out << in.rdbuf();
  out.flush();
  if (!in || !out)
    throw FileError(destination.string(), 0, "write failed");
}

std::uintmax_t disk_size(const std::filesystem::path &path) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec))
    return std::filesystem::file_size(path, ec);
  std::uintmax_t total = 0;
  if (std::filesystem::is_directory(path, ec))
    for (const auto &entry : std::filesystem::directory_iterator(path, ec))
      if (entry.is_regular_file(ec))
        total += entry.file_size(ec);
  return total;
}

// ---------------------------------------------------------------- checksum

void Fnv1a::add(const void *data, std::size_t bytes) {
  const auto *p = static_cast<const unsigned char *>(data);
  for (std::size_t i = 0; i < bytes; ++i) {
    hash_ ^= p[i];
    hash_ *= 1099511628211ull;
  }
}

std::string Fnv1a::hex() const {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(hash_));
  return buffer;
}


CertificationReport::CertificationReport(const CertifiedAccuracy &r) : result(r) {
  const index_t count = static_cast<index_t>(r.per_input.size());
  std::vector<double> radii;
  radii.reserve(r.per_input.size());
  for (const auto &c : r.per_input) {
    radii.push_back(c.radius);
    if (c.region_radius >= 0) {
      ++regions;
      region_mean_radius += c.region_radius;
    }
  }
  std::sort(radii.begin(), radii.end());
  for (double v : radii)
    mean_radius += v;
  mean_radius = count ? mean_radius / double(count) : 0.0;
  median_radius = count ? radii[static_cast<std::size_t>(count / 2)] : 0.0;
  region_mean_radius = regions ? region_mean_radius / double(regions) : 0.0;
}

double CertificationReport::fraction(std::int64_t v) const {
  const auto count = result.per_input.size();
  return count ? double(v) / double(count) : 0.0;
}

void CertificationReport::write_radii(const std::filesystem::path &path) const {
  const index_t count = static_cast<index_t>(result.per_input.size());
  Batch<double> R(1, count);
  for (index_t j = 0; j < count; ++j)
    R(0, j) = result.per_input[static_cast<std::size_t>(j)].radius;
  write_output(path, [&](const std::filesystem::path &p) { write_vectors(p, R); });
}

void CertificationReport::add_json(nlohmann::json &doc,
                                   const std::optional<std::string> &radius_path) const {
  const auto count = result.per_input.size();
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t e = 0; e < result.eps.size(); ++e)
    rows.push_back({{"eps", result.eps[e]},
                    {"certified", result.certified[e]},
                    {"certified_accuracy", fraction(result.certified[e])}});
  doc["correct"] = result.correct;
  doc["accuracy"] = fraction(result.correct);
  doc["certified"] = rows;
  doc["certify_seconds"] = result.seconds;
  doc["seconds_per_input"] = count ? result.seconds / double(count) : 0.0;
  doc["linear_regions"] = regions;
  if (regions)
    doc["region_mean_radius"] = region_mean_radius;
  if (radius_path) {
    doc["radius_output"] = *radius_path;
    doc["mean_radius"] = mean_radius;
    doc["median_radius"] = median_radius;
  }
}

void CertificationReport::print(std::ostream &out,
                                const std::optional<std::string> &radius_path) const {
  const auto count = static_cast<index_t>(result.per_input.size());
  out << "  accuracy: " << fmt_count(result.correct) << " / " << fmt_count(count) << " ("
      << fmt_g(100 * fraction(result.correct), 4) << "%)\n";
  for (std::size_t e = 0; e < result.eps.size(); ++e)
    out << "  eps " << fmt_g(result.eps[e], 4) << ": certified "
        << fmt_count(result.certified[e]) << " ("
        << fmt_g(100 * fraction(result.certified[e]), 4) << "%)\n";
  if (regions)
    out << "  linear regions: " << fmt_count(regions) << ", mean radius "
        << fmt_g(region_mean_radius, 4) << "\n";
  if (radius_path)
    out << "  radius: mean " << fmt_g(mean_radius, 4) << ", median "
        << fmt_g(median_radius, 4) << " -> " << *radius_path << "\n";
}

} // namespace tacit::cli
