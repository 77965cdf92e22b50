#pragma once
/// \file error.hpp
/// Exceptions thrown by tacit. Misuse (bad dimensions, bad arguments) and bad
/// input files are exceptions; numerical outcomes (non-convergence,
/// ill-posedness) are returned as a status, never thrown.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Base class of every exception tacit throws.
class TACIT_EXPORT Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A call was made with arguments that violate its contract (dimensions,
/// ranges, NaN/Inf parameters). The message names the argument and the value.
class TACIT_EXPORT InvalidArgument : public Error {
public:
  using Error::Error;
};

/// A file could not be read or written, or its content is malformed. The
/// message names the file, the line (or byte offset) and what is wrong.
class TACIT_EXPORT FileError : public Error {
public:
  /// \param path file name; \param line 1-based line (0 if not applicable);
  /// \param what description of the problem.
  FileError(std::string path, std::int64_t line, const std::string &what)
      : Error(format(path, line, what)), path_(std::move(path)), line_(line) {}

  const std::string &path() const noexcept { return path_; }
  /// 1-based line number, or 0 when the error is not tied to a line.
  std::int64_t line() const noexcept { return line_; }

private:
  static std::string format(const std::string &path, std::int64_t line,
                            const std::string &what) {
    return line > 0 ? path + ":" + std::to_string(line) + ": " + what
                    : path + ": " + what;
  }
  std::string path_;
  std::int64_t line_;
};

/// An operation is not defined for this model (e.g. rescaling a model with a
/// tanh block, which is not positively homogeneous).
class TACIT_EXPORT Unsupported : public Error {
public:
  using Error::Error;
};

} // namespace tacit::inline v1
