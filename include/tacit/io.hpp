#pragma once
/// \file io.hpp
/// Files: Matrix Market, model directories and the native binary model file.
/// Every reader reports problems as `FileError` naming the file, the line (or
/// byte offset) and what is wrong. Every writer writes a temporary file in the
/// destination directory and renames it into place, so a failure leaves
/// nothing half-written.

#include <filesystem>
#include <istream>
#include <string>

#include <tacit/model.hpp>

namespace tacit {

enum class MatrixMarketFormat { coordinate, array };

/// Reads a Matrix Market file (coordinate or array; real, integer or pattern;
/// general, symmetric or skew-symmetric). Pattern entries read as 1.
template <class T>
CsrMatrix<T> read_matrix_market(const std::filesystem::path &path);
/// The same from a stream; `name` is used in error messages.
template <class T>
CsrMatrix<T> read_matrix_market(std::istream &in, const std::string &name);

/// Writes a general real Matrix Market file, values printed to round-trip
/// exactly (17 significant digits for double, 9 for float).
template <class T>
void write_matrix_market(const std::filesystem::path &path,
                         const CsrMatrix<T> &matrix,
                         MatrixMarketFormat format = MatrixMarketFormat::coordinate);

/// Loads a model from a directory (A.mtx, B.mtx, C.mtx, optional D.mtx,
/// bx.txt, by.txt, model.json) or from a native file (detected by its magic).
template <class T> Model<T> load_model(const std::filesystem::path &path);

/// Writes a model directory (A.mtx, B.mtx, C.mtx, D.mtx if D != 0, bx.txt,
/// by.txt, model.json). Operators are materialised as CSR.
template <class T>
void save_model_directory(const Model<T> &model,
                          const std::filesystem::path &dir);

/// Writes the native binary model file.
/// Format (little-endian): magic "TACITMDL", u32 version, u32 flags, header,
/// sections each followed by a CRC-32 of its bytes; see lib/native_format.cpp.
template <class T>
void save_model_native(const Model<T> &model,
                       const std::filesystem::path &file);

/// True when `path` is a regular file starting with the native magic.
bool is_native_model_file(const std::filesystem::path &path);

/// Reads inputs: one vector per line, whitespace/comma separated, `expected`
/// numbers per line. \throws FileError naming line and column.
template <class T>
Batch<T> read_vectors(const std::filesystem::path &path, index_t expected);
/// Writes one column of `Y` per line, printed to round-trip exactly.
template <class T>
void write_vectors(const std::filesystem::path &path, const Batch<T> &Y);

/// Writes `content` to `path` atomically (temporary file + rename).
void write_file_atomically(const std::filesystem::path &path,
                           const std::string &content);

} // namespace tacit
