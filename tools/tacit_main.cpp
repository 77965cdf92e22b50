// Entry point of the `tacit` command: global options, dispatch to the
// registered subcommands, help texts and the mapping of errors to exit codes.

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <malloc.h>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include <tbb/global_control.h>
#include <tbb/info.h>

#include <tacit/core/error.hpp>
#include <tacit/core/version.hpp>

#include "cli_common.hpp"

namespace tacit::cli {
namespace {

const char *exit_code_text =
    "Exit codes:\n"
    "  0  success (also for an analysis whose answer is negative, e.g. not certified)\n"
    "  1  usage error: unknown command or option, missing argument, bad value\n"
    "     (also a value the model does not allow, e.g. a top-k budget above its inputs)\n"
    "  2  input error: missing, unreadable or malformed file (named with its line),\n"
    "     or a model the operation does not apply to\n"
    "  3  numerical failure: the solve did not converge (outputs are still written),\n"
    "     or a property the operation needs could not be certified (lambda_PF < 1)\n"
    "  4  internal error (a bug in tacit)\n";

std::string option_label(const OptionSpec &o) {
  std::string label = o.short_name ? std::string("-") + o.short_name + ", " : "    ";
  label += "--" + o.name;
  if (!o.metavar.empty())
    label += " " + o.metavar;
  return label;
}

void print_option_table(std::ostream &out, const std::vector<OptionSpec> &options) {
  std::size_t width = 0;
  for (const auto &o : options)
    width = std::max(width, option_label(o).size());
  for (const auto &o : options) {
    const std::string label = option_label(o);
    out << "  " << label << std::string(width - label.size() + 2, ' ') << o.help << "\n";
  }
}

std::string usage_line(const Command &c) {
  if (!c.usage.empty())
    return "tacit " + c.name + " " + c.usage;
  std::string line = "tacit " + c.name;
  for (const auto &p : c.positionals)
    line += p.required ? " " + p.name : " [" + p.name + "]";
  if (!c.options.empty())
    line += " [OPTIONS]";
  return line;
}

void print_main_help(std::ostream &out) {
  out << "tacit " << version
      << ": implicit deep-learning models  y = C x + D u + c,  x = phi(A x + B u + b)\n\n"
         "Usage: tacit COMMAND [OPTIONS] [ARGUMENTS]\n"
         "       tacit COMMAND --help      (help on one command)\n"
         "       tacit --version   (and the kernels' instruction-set level)\n\n"
         "Commands:\n";
  std::size_t width = 4;
  for (const auto &c : commands())
    width = std::max(width, c.name.size());
  for (const auto &c : commands())
    out << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.summary
        << "\n";
  out << "  help" << std::string(width - 4 + 2, ' ')
      << "help on a command: tacit help COMMAND\n";
  out << "\nOptions accepted by every command:\n";
  print_option_table(out, global_options());
  out << "\nA MODEL is a model directory (A.mtx, B.mtx, C.mtx, [D.mtx], bx.txt, by.txt,\n"
         "model.json) or a native model file (.tacit).\n\n"
      << exit_code_text
      << "\nStart with 'tacit demo': it builds a ResNet20-like network and a truly "
         "implicit\n"
         "model, certifies their well-posedness and solves a batch of inputs.\n";
}

void print_command_help(std::ostream &out, const Command &c) {
  out << "Usage: " << usage_line(c) << "\n\n" << c.description << "\n";
  if (!c.positionals.empty()) {
    out << "\nArguments:\n";
    std::size_t width = 0;
    for (const auto &p : c.positionals)
      width = std::max(width, p.name.size());
    for (const auto &p : c.positionals)
      out << "  " << p.name << std::string(width - p.name.size() + 2, ' ') << p.help
          << "\n";
  }
  if (!c.options.empty()) {
    out << "\nOptions:\n";
    print_option_table(out, c.options);
  }
  out << "\nGlobal options:\n";
  print_option_table(out, global_options());
  if (!c.epilog.empty())
    out << "\n" << c.epilog;
  out << "\n" << exit_code_text;
}

/// Reports an error on stderr (and as JSON on stdout with --json); returns
/// the exit code.
int report_error(const std::string &prefix, const std::string &message, int code,
                 bool json, const std::string &hint = {}) {
  std::cerr << prefix << message << "\n";
  if (!hint.empty())
    std::cerr << hint << "\n";
  if (json) {
    nlohmann::json doc = {{"error", message}, {"exit_code", code}};
    std::cout << doc.dump(2) << std::endl;
  }
  return code;
}

int run(int argc, char **argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool json =
      std::find(args.begin(), args.end(), std::string("--json")) != args.end();

  // Global options may also come before the command name.
  std::vector<std::string> leading;
  std::size_t i = 0;
  for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
    const std::string &a = args[i];
    if (a == "--version") {
      std::cout << "tacit " << version << "\n"
                << "kernels: " << kernel_level() << "\n";
      return exit_ok;
    }
    if (a == "--help" || a == "-h") {
      print_main_help(std::cout);
      return exit_ok;
    }
    if (a == "--json" || a == "--quiet" || a == "-q" || a.rfind("--threads=", 0) == 0) {
      leading.push_back(a);
    } else if (a == "--threads") {
      if (i + 1 >= args.size())
        return report_error("tacit: ", "option --threads requires a value (N)",
                            exit_usage, json, "Try 'tacit --help'.");
      leading.push_back(a);
      leading.push_back(args[++i]);
    } else {
      return report_error("tacit: ", "unknown option '" + a + "'", exit_usage, json,
                          "Try 'tacit --help'.");
    }
  }
  if (i >= args.size()) {
    return report_error("tacit: ", "missing command", exit_usage, json,
                        "Usage: tacit COMMAND [OPTIONS] [ARGUMENTS]\n"
                        "Try 'tacit --help' for the list of commands.");
  }
  std::string name = args[i++];
  if (name == "help") {
    if (i >= args.size()) {
      print_main_help(std::cout);
      return exit_ok;
    }
    const Command *c = find_command(args[i]);
    if (!c)
      return report_error("tacit: ", "unknown command '" + args[i] + "'", exit_usage,
                          json, "Try 'tacit --help'.");
    print_command_help(std::cout, *c);
    return exit_ok;
  }
  const Command *command = find_command(name);
  if (!command)
    return report_error("tacit: ", "unknown command '" + name + "'", exit_usage, json,
                        "Try 'tacit --help'.");

  const std::string prefix = "tacit " + command->name + ": ";
  const std::string hint = "Try 'tacit " + command->name + " --help'.";
  std::vector<std::string> rest(leading);
  rest.insert(rest.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());

  try {
    Invocation invocation{*command, Arguments::parse(*command, rest)};
    if (invocation.args.flag("help")) {
      print_command_help(std::cout, *command);
      return exit_ok;
    }
    invocation.json = invocation.args.flag("json");
    invocation.quiet = invocation.args.flag("quiet");
    std::unique_ptr<tbb::global_control> limit;
    if (const auto threads = invocation.args.integer("threads", 1, 4096)) {
      limit = std::make_unique<tbb::global_control>(
          tbb::global_control::max_allowed_parallelism,
          static_cast<std::size_t>(*threads));
    }
    invocation.threads = static_cast<int>(std::min<std::size_t>(
        tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism),
        static_cast<std::size_t>(tbb::info::default_concurrency())));
    return command->run(invocation);
  } catch (const UsageError &e) {
    return report_error(prefix, e.what(), exit_usage, json, hint);
  } catch (const CommandFailure &e) {
    return report_error(prefix + "error: ", e.what(), e.code(), json);
  } catch (const FileError &e) {
    return report_error(prefix + "error: ", e.what(), exit_input, json);
  } catch (const NumericalError &e) {
    return report_error(prefix + "error: ", e.what(), exit_numerical, json);
  } catch (const InvalidArgument &e) { // a value the library refuses for this model
    return report_error(prefix + "error: ", e.what(), exit_usage, json);
  } catch (const Error &e) { // Unsupported: the model does not allow the operation
    return report_error(prefix + "error: ", e.what(), exit_input, json);
  } catch (const std::filesystem::filesystem_error &e) {
    return report_error(prefix + "error: ", e.what(), exit_input, json);
  } catch (const std::bad_alloc &) {
    return report_error(prefix + "error: ", "out of memory", exit_input, json);
  } catch (const std::exception &e) {
    return report_error(prefix + "internal error: ", e.what(), exit_internal, json);
  } catch (...) {
    return report_error(prefix + "internal error: ", "unknown exception", exit_internal,
                        json);
  }
}

} // namespace
} // namespace tacit::cli

int main(int argc, char **argv) {
  // The analyses allocate and free workspaces of a few MB per input; glibc
  // would map and unmap each afresh (a page fault per 4 kB touched). Keep
  // such blocks in the heap and keep freed memory for reuse instead.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  try {
    return tacit::cli::run(argc, argv);
  } catch (...) {
    // Only reachable if printing an error failed.
    return tacit::cli::exit_internal;
  }
}
