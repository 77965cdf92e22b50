#include <tacit/core/dense.hpp>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <string>

namespace tacit::inline v1 {

template <class T>
Batch<T>::Batch(index_t rows, index_t cols, index_t slab_width)
    : rows_(rows), cols_(cols), width_(slab_width) {
  if (rows < 0 || cols < 0)
    throw InvalidArgument("Batch: negative size " + std::to_string(rows) + " x " +
                          std::to_string(cols));
  if (slab_width < 1)
    throw InvalidArgument("Batch: slab width must be >= 1, got " +
                          std::to_string(slab_width));
  // A batch narrower than one slab is stored densely: no padding columns
  // (a single vector is contiguous), which makes this layout the solvers'
  // own and lets them work in place.
  width_ = std::max<index_t>(1, std::min(width_, cols));
  slabs_ = (cols + width_ - 1) / width_;
  const auto n = static_cast<std::size_t>(slabs_ * rows_ * width_);
  data_.resize(n); // uninitialised: zeroed below
  T *d = data_.data();
  constexpr std::size_t chunk = std::size_t(1) << 16;
  if (n <= 4 * chunk) {
    std::fill(d, d + n, T(0));
    return;
  }
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, (n + chunk - 1) / chunk),
                    [&](const tbb::blocked_range<std::size_t> &r) {
                      for (std::size_t c = r.begin(); c < r.end(); ++c)
                        std::fill(d + c * chunk, d + std::min(n, (c + 1) * chunk), T(0));
                    });
}

template <class T> void Batch<T>::get_column(index_t j, std::span<T> out) const {
  if (j < 0 || j >= cols_ || static_cast<index_t>(out.size()) != rows_)
    throw InvalidArgument("Batch::get_column: column " + std::to_string(j) + " of " +
                          std::to_string(cols_) + ", output size " +
                          std::to_string(out.size()) + " (need " + std::to_string(rows_) +
                          ")");
  const T *base = data_.data() + (j / width_) * rows_ * width_ + j % width_;
  for (index_t i = 0; i < rows_; ++i)
    out[i] = base[i * width_];
}

template <class T> void Batch<T>::set_column(index_t j, std::span<const T> in) {
  if (j < 0 || j >= cols_ || static_cast<index_t>(in.size()) != rows_)
    throw InvalidArgument("Batch::set_column: column " + std::to_string(j) + " of " +
                          std::to_string(cols_) + ", input size " +
                          std::to_string(in.size()) + " (need " + std::to_string(rows_) +
                          ")");
  T *base = data_.data() + (j / width_) * rows_ * width_ + j % width_;
  for (index_t i = 0; i < rows_; ++i)
    base[i * width_] = in[i];
}

template <class T> void Batch<T>::set_zero() {
  std::fill(data_.begin(), data_.end(), T(0));
}

template class Batch<float>;
template class Batch<double>;

} // namespace tacit::inline v1
