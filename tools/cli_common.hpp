#pragma once
// Shared machinery of the `tacit` command: exit codes, the subcommand
// registry, argument parsing, number formatting, timing and the progress line.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <tacit/config.hpp>

namespace tacit::inline v1 {
struct CertifiedAccuracy;
}

namespace tacit::cli {

/// Process exit codes (documented in `tacit --help`).
enum ExitCode : int {
  exit_ok = 0,        ///< success (an analysis that does not certify is a success)
  exit_usage = 1,     ///< bad command line: unknown subcommand/option, bad value
  exit_input = 2,     ///< input/file error: missing, unreadable or malformed file
  exit_numerical = 3, ///< numerical failure: no convergence, not certifiable
  exit_internal = 4   ///< internal error (a bug): please report it
};

/// A command-line mistake; reported with a pointer to --help, exit code 1.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A failure that has already been explained and maps to a given exit code.
class CommandFailure : public std::runtime_error {
public:
  CommandFailure(int code, const std::string &message)
      : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

private:
  int code_;
};

/// One option of a subcommand. An empty `metavar` makes it a flag.
struct OptionSpec {
  std::string name;    ///< long name without dashes, e.g. "input"
  char short_name = 0; ///< e.g. 'o' for -o, 0 for none
  std::string metavar; ///< e.g. "FILE"; empty for flags
  std::string help;
};

/// Positional argument of a subcommand.
struct PositionalSpec {
  std::string name; ///< e.g. "MODEL"
  std::string help;
  bool required = true;
};

struct Invocation;

/// A subcommand: its documentation, its arguments and its entry point.
struct Command {
  std::string name;
  std::string summary;     ///< one line, for `tacit --help`
  std::string description; ///< paragraph(s) for `tacit NAME --help`
  std::vector<PositionalSpec> positionals;
  std::vector<OptionSpec> options;
  std::string epilog; ///< examples, notes
  int order = 100;    ///< position in the command list
  int (*run)(Invocation &) = nullptr;
  std::string usage; ///< usage line after "tacit NAME "; generated when empty
};

/// Registers a subcommand (called from static initialisers in cmd_*.cpp).
bool register_command(Command command);
/// Registered subcommands, in display order.
const std::vector<Command> &commands();
const Command *find_command(std::string_view name);

/// Options accepted by every subcommand.
const std::vector<OptionSpec> &global_options();

/// Parsed command line of one subcommand.
class Arguments {
public:
  const std::vector<std::string> &positionals() const noexcept { return positionals_; }
  bool has(const std::string &name) const { return values_.count(name) != 0; }
  /// Flag set?
  bool flag(const std::string &name) const { return has(name); }
  std::optional<std::string> text(const std::string &name) const;
  /// Integer value in [min, max]; UsageError names the option otherwise.
  std::optional<std::int64_t> integer(const std::string &name, std::int64_t min,
                                      std::int64_t max) const;
  /// Finite real value in [min, max]; UsageError names the option otherwise.
  std::optional<double> real(const std::string &name, double min, double max) const;
  /// Value from a fixed list of choices.
  std::optional<std::string> choice(const std::string &name,
                                    const std::vector<std::string> &choices) const;

  /// Parses `args` against the command's options plus the global ones.
  /// \throws UsageError for unknown options, missing values, missing or extra
  /// positionals, repeated options.
  static Arguments parse(const Command &command, const std::vector<std::string> &args);

private:
  std::vector<std::string> positionals_;
  std::map<std::string, std::string> values_; // flags map to ""
};

/// Parses a whole number / a finite real number. `what` names the option in
/// the message of the UsageError thrown on failure.
std::int64_t parse_integer(const std::string &text, const std::string &what,
                           std::int64_t min, std::int64_t max);
double parse_real(const std::string &text, const std::string &what, double min,
                  double max);

/// A single updating status line on stderr; silent unless stderr is a
/// terminal and neither --json nor --quiet was given. Redraws at most ~10
/// times per second.
class Progress {
public:
  explicit Progress(bool enabled);
  ~Progress();
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;

  bool enabled() const noexcept { return enabled_; }
  /// Shows `text` (throttled unless `force`).
  void update(const std::string &text, bool force = false);
  /// Erases the line.
  void clear();

private:
  bool enabled_;
  bool shown_ = false;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point last_{};
};

/// Everything a subcommand needs.
struct Invocation {
  const Command &command;
  Arguments args;
  bool json = false;
  bool quiet = false;
  int threads = 0; ///< effective maximum parallelism

  /// Human-readable report lines go here (nothing with --quiet or --json).
  bool human() const noexcept { return !json && !quiet; }
  /// A progress line for this invocation.
  bool progress_enabled() const;
  /// Writes a JSON document to stdout.
  void emit(const nlohmann::json &document) const;
  /// Prints a warning on stderr (even with --quiet: warnings matter).
  void warn(const std::string &message) const;
};

/// Wall-clock stopwatch.
class Stopwatch {
public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
        .count();
  }
  void restart() { start_ = std::chrono::steady_clock::now(); }

private:
  std::chrono::steady_clock::time_point start_;
};

/// printf("%.<digits>g").
std::string fmt_g(double value, int digits = 6);

/// The kernels' instruction-set level and why, e.g. "avx2 (best for this CPU:
/// AVX2 FMA, no AVX-512F)".
std::string kernel_level();
/// Integer with thousands separators: 188,416.
std::string fmt_count(std::int64_t value);
/// Bytes as "481.5 MB" (decimal units).
std::string fmt_bytes(double bytes);
/// Seconds as "12.3 ms" / "1.23 s".
std::string fmt_seconds(double seconds);

/// Whether `path` names a Matrix Market file (extension .mtx, any case).
bool is_matrix_market_path(const std::filesystem::path &path);
/// Whether `path` names a native model file by extension (.tacit).
bool has_native_extension(const std::filesystem::path &path);

/// Writes an output file through `write` (a tacit writer, which writes a
/// temporary file and renames it over the destination). When the destination
/// is a symbolic link, a device, FIFO or socket (/dev/stdout, /dev/null),
/// renaming would replace the link or node itself, so the content is written
/// to a temporary file elsewhere and then streamed through the destination
/// (not atomically).
/// \throws tacit::FileError naming the destination when streaming fails.
void write_output(const std::filesystem::path &destination,
                  const std::function<void(const std::filesystem::path &)> &write);

/// The report of a certification (tacit certify, tacit-mpi certify): the
/// figures every variant prints, from certify_dataset's result.
struct CertificationReport {
  explicit CertificationReport(const CertifiedAccuracy &result);
  const CertifiedAccuracy &result;
  double mean_radius = 0, median_radius = 0; ///< of the per-input radii
  std::int64_t regions = 0;                  ///< inputs with a linear region
  double region_mean_radius = 0;             ///< their mean region radius
  /// v / count (0 for no input).
  double fraction(std::int64_t v) const;
  /// Writes the per-input radii as one row (write_output: atomic).
  void write_radii(const std::filesystem::path &path) const;
  /// Adds correct, accuracy, certified (a row per eps), certify_seconds,
  /// seconds_per_input, linear_regions (and their mean radius) and, with a
  /// radius file, radius_output, mean_radius and median_radius.
  void add_json(nlohmann::json &doc, const std::optional<std::string> &radius_path) const;
  /// The accuracy, certified-per-eps, linear-region and radius lines.
  void print(std::ostream &out, const std::optional<std::string> &radius_path) const;
};

/// Total size of a file, or of the regular files in a directory.
std::uintmax_t disk_size(const std::filesystem::path &path);

/// FNV-1a 64-bit hash of a byte range, hex-printed; used for output
/// checksums that are stable across runs and thread counts.
class Fnv1a {
public:
  void add(const void *data, std::size_t bytes);
  std::uint64_t value() const noexcept { return hash_; }
  std::string hex() const;

private:
  std::uint64_t hash_ = 14695981039346656037ull;
};

} // namespace tacit::cli
