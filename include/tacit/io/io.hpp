#pragma once
/// \file io.hpp
/// Files: Matrix Market, model directories, vectors and the native binary
/// model file.
///
/// Every reader reports problems as `FileError` naming the file, the line (or
/// byte offset) and what is wrong; readers never crash, hang or allocate from
/// sizes the file cannot back. Every writer writes a temporary file in the
/// destination directory, flushes it to disk and renames it into place, so a
/// failure leaves the destination untouched and no temporary file behind.
///
/// Model directory: `A.mtx` (n x n), `B.mtx` (n x p), `C.mtx` (q x n)
/// required; optional `D.mtx` (q x p, absent means D = 0), `bx.txt` (n values,
/// one per line), `by.txt` (q values) and `model.json`:
///
///     {"format": "tacit-model", "version": 1, "activation": "relu",
///      "blocks": [{"name": "l1", "size": 100, "activation": "relu"},
///                 {"name": "l2", "size": 50, "activation": "leaky_relu",
///                  "slope": 0.1}]}
///
/// Blocks tile the states in order (sizes sum to n); a block without
/// "activation" uses the top-level one (default relu); without "blocks" there
/// is one block "states" over all states. Defaults: ReLU, zero biases, D = 0.
/// Other files in the directory are ignored.
///
/// Native model file: see save_model_native() and lib/io/native_format.cpp.
///
/// Thread safety: every function is reentrant: files may be read and written
/// from several threads at once, as long as two calls do not write the same path
/// (the last rename wins) or read a path while another call replaces it.

#include <filesystem>
#include <istream>
#include <string>
#include <string_view>

#include <tacit/core/model.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

enum class MatrixMarketFormat { coordinate, array };

/// Reads a Matrix Market file: coordinate or array; real, integer or pattern
/// (pattern entries read as 1); general, symmetric or skew-symmetric (the
/// mirror entries are expanded). Conventions and checks:
/// - `%` comment lines and blank lines may appear anywhere after the banner;
///   banner qualifiers are case-insensitive; CRLF line ends are accepted.
/// - Symmetric and skew-symmetric files store the lower triangle only (row >=
///   column; skew-symmetric diagonal entries, if present, must be zero).
/// - Duplicate entries are rejected (naming both lines) rather than summed.
/// - NaN and infinite values are rejected; values too small for T read as 0
///   or a subnormal; values too large for T are rejected.
/// - Array files are dense: zero values are not stored in the result.
/// - Complex and hermitian matrices are rejected.
/// - A size larger than the file can plausibly describe (more than
///   max(2^26, 16 x file bytes) rows or columns) is rejected before any
///   allocation.
/// Large coordinate files are parsed in parallel chunks; the result and the
/// reported error (the first in file order) do not depend on the chunking.
/// \throws FileError naming the file, the line and the problem.
template <class T> TACIT_EXPORT CsrMatrix<T> read_matrix_market(const std::filesystem::path &path);
/// The same from a stream (read to its end); `name` is used in error messages.
template <class T>
TACIT_EXPORT CsrMatrix<T> read_matrix_market(std::istream &in, const std::string &name);
/// The same from text in memory.
template <class T>
TACIT_EXPORT CsrMatrix<T> parse_matrix_market(std::string_view text, const std::string &name);

/// Writes a general real Matrix Market file, each value printed as the
/// shortest decimal that reads back to the same bits (std::to_chars), so
/// write + read is exact. Coordinate writes every stored entry (explicit zeros
/// included) in row order; array writes all rows x cols values column by
/// column. Written atomically.
/// \throws InvalidArgument on a NaN/Inf entry (naming it); FileError on I/O
/// failure.
template <class T>
TACIT_EXPORT void write_matrix_market(const std::filesystem::path &path, const CsrMatrix<T> &matrix,
                         MatrixMarketFormat format = MatrixMarketFormat::coordinate);

/// Loads a model from a directory (see the file comment) or from a native
/// model file (a regular file starting with the native magic "TACITMDL"); a
/// native file stored in the other precision is converted. Any other file
/// (a bare .mtx, say) is rejected with an error explaining what a model is.
/// \throws FileError naming the file and the problem (for dimension mismatches
/// between files: both files and their sizes).
template <class T> TACIT_EXPORT Model<T> load_model(const std::filesystem::path &path);

/// Loads a model directory (A.mtx, B.mtx, C.mtx, optional D.mtx, bx.txt,
/// by.txt, model.json).
template <class T> TACIT_EXPORT Model<T> load_model_directory(const std::filesystem::path &dir);

/// Writes a model directory: A.mtx, B.mtx, C.mtx, D.mtx (when D is not null),
/// bx.txt, by.txt and model.json. Operators are materialised as CSR. The files
/// are written into a temporary directory next to `dir` which then replaces
/// `dir`. An existing `dir` is replaced only if it holds nothing but model
/// files (so a mistaken path cannot delete unrelated data).
/// \throws FileError (nothing is changed on failure).
template <class T>
TACIT_EXPORT void save_model_directory(const Model<T> &model, const std::filesystem::path &dir);

/// Writes the native binary model file, little-endian: version 1 when every
/// operator is CSR (or an operator kind without a tree node), version 2 when
/// some operator is structured (then stored as an operator tree, kind 4):
///
///     header  (56 bytes) "TACITMDL", u32 version (1 or 2), u32 byte-order mark
///             0x01020304, u32 value type (1 = float32, 2 = float64), u32 flags
///             (bit 0: D present), u64 n, p, q, u32 section count,
///             u32 CRC-32 of the 44 bytes before it
///     section (repeated) u32 role (1 blocks, 2 A, 3 B, 4 C, 5 D, 6 bx, 7 by),
///             u32 kind (1 block table, 2 CSR matrix, 3 dense vector; other
///             kinds are reserved for structured operators), u64 payload
///             length, payload, u32 CRC-32 of the 16-byte section header and
///             the payload.
///
/// Payloads: block table = u64 count, then per block u64 offset, u64 size,
/// u32 activation (0 relu, 1 leaky_relu, 2 tanh, 3 sigmoid, 4 identity),
/// u32 name length, f64 slope, name bytes (UTF-8). CSR = u64 rows, u64 cols,
/// u64 nnz, u32 column index width (4 or 8), u32 zero, (rows+1) u64 row
/// pointers, nnz column indices, nnz values. Dense vector = u64 length,
/// values. Values are float32 or float64 as the header says.
///
/// Operator tree (version 2, kind 4, roles A..D): one node, recursively:
/// u32 code, u32 zero, u64 rows, u64 cols, then by code:
/// 1 CSR (u64 nnz, u32 index width, u32 zero, row pointers, indices, values),
/// 2 conv2d (15 x u64: input channels, height, width, out channels, kernel
/// h, w, stride h, w, pads top, left, bottom, right, dilation h, w, groups;
/// u64 count, weights), 3 identity (one value: the scale), 4 diagonal (u64
/// count, values), 5 channel pad (6 x u64: input channels, height, width,
/// out channels, stride, pad front), 6 dense (u64 count, row-major values),
/// 7 composed (left node, right node), 8 block (u64 row blocks, u64 column
/// blocks, their sizes, u64 entry count, per entry u64 block row, u64 block
/// column, node), 9 average pooling (12 x u64: input channels, height,
/// width, kernel h, w, stride h, w, pads top, left, bottom, right,
/// count_include_pad). Version 2 also stores a bias vector as runs of equal
/// values (kind 5: u64 length, u64 run count, then per run u64 length and
/// the value) when that is at most half its size. Other operators are
/// stored as CSR nodes; an
/// operator of no known kind as a CSR section. A ResNet20 file is about the
/// size of its weights. Written atomically.
/// \throws FileError on I/O failure or on a big-endian host.
template <class T>
TACIT_EXPORT void save_model_native(const Model<T> &model, const std::filesystem::path &file);

/// Reads a native model file (version 1 or 2); a file stored in the other
/// precision is converted (structured operators stay structured).
/// \throws FileError for a wrong magic, unsupported version,
/// truncation (naming the byte offset and what was expected), a CRC mismatch
/// (naming the section) or inconsistent content.
template <class T> TACIT_EXPORT Model<T> load_model_native(const std::filesystem::path &file);
/// The same from the bytes of a native file in memory.
template <class T>
TACIT_EXPORT Model<T> parse_model_native(std::string_view bytes, const std::string &name);

/// True when `path` is a regular file starting with the native magic.
TACIT_EXPORT bool is_native_model_file(const std::filesystem::path &path);

/// Reads vectors, one per line: `expected` numbers separated by blanks or
/// commas. Blank lines and lines starting with '#' are ignored. Line k (of
/// the kept lines) becomes column k of the batch (expected rows).
/// \throws FileError naming the line and column of a bad or non-finite number
/// or a line with the wrong count; InvalidArgument if expected < 0.
template <class T>
TACIT_EXPORT Batch<T> read_vectors(const std::filesystem::path &path, index_t expected);
/// Writes one column of `Y` per line, values separated by a space, each
/// printed as the shortest decimal that reads back to the same bits.
/// Written atomically.
template <class T>
TACIT_EXPORT void write_vectors(const std::filesystem::path &path, const Batch<T> &Y);

/// Writes `content` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over `path`. On failure the temporary file is
/// removed and `path` is untouched. \throws FileError.
TACIT_EXPORT void write_file_atomically(const std::filesystem::path &path, const std::string &content);

} // namespace tacit::inline v1
