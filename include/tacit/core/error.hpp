#pragma once
/// \file error.hpp
/// Exceptions thrown by tacit. One policy throughout:
/// - misuse (bad dimensions, bad arguments, a NaN parameter) throws
///   InvalidArgument;
/// - a file that cannot be read or written, or is malformed, throws FileError
///   (naming the file, the line or byte offset, and the problem);
/// - an operation not defined for the model at hand (rescaling a tanh
///   block, a back-end that does not apply to its structure) throws
///   Unsupported;
/// - numerical outcomes are results: a solve that does not converge is a
///   status in its report, a well-posedness analysis that cannot certify says
///   so in its report. Only where the caller asked for something that needs
///   the numerical property (S needs lambda_PF(|A|) < 1 certified, a gradient
///   needs the equilibrium) is its failure thrown, as NumericalError
///   carrying the numbers.
/// Every exception derives from Error (a std::runtime_error).
///
/// Thread safety: exceptions are values; an Error may be copied and read
/// from any thread.

#include <cstdint>
#include <limits>
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

/// A numerical property the call needs does not hold or could not be
/// established: a certificate that could not be obtained (lambda_PF(|A|) < 1
/// for a sensitivity operator or a rescaling), an iteration that did not
/// converge where its result is needed, a factorisation that failed. The
/// message says what; the numbers are kept (NaN or -1 when not applicable).
class TACIT_EXPORT NumericalError : public Error {
public:
  /// \param value the quantity that failed (a residual, an upper bound of
  /// lambda_PF(|A|), an error bound, a solver status code); \param limit what
  /// it had to meet; \param iterations the iterations spent.
  explicit NumericalError(const std::string &what,
                          double value = std::numeric_limits<double>::quiet_NaN(),
                          double limit = std::numeric_limits<double>::quiet_NaN(),
                          std::int64_t iterations = -1)
      : Error(what), value_(value), limit_(limit), iterations_(iterations) {}

  double value() const noexcept { return value_; }
  double limit() const noexcept { return limit_; }
  std::int64_t iterations() const noexcept { return iterations_; }

private:
  double value_, limit_;
  std::int64_t iterations_;
};

/// An operation is not defined for this model (e.g. rescaling a model with a
/// tanh block, which is not positively homogeneous).
class TACIT_EXPORT Unsupported : public Error {
public:
  using Error::Error;
};

} // namespace tacit::inline v1
