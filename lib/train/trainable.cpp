// TrainableModel: a deep copy of a model with named parameter tensors.

#include <tacit/train/trainable.hpp>

#include <tacit/core/error.hpp>

#include <algorithm>
#include <optional>

namespace tacit::inline v1 {

template <class T> struct TrainableModel<T>::Impl {
  // The owned copies (non-const) of A, B, C, D; null when absent.
  std::shared_ptr<LinearOperator<T>> ops[4];
  std::unique_ptr<Model<T>> model;
  std::vector<TensorInfo> tensors;
  Range ranges[4];
  std::vector<BiasBlock> bias;
  std::size_t by = 0;
  index_t total = 0;
  // Per-channel parameters of tied bias blocks (indexed like bias).
  std::vector<std::vector<T>> tied;

  void add(std::string name, std::vector<index_t> shape) {
    TensorInfo t;
    t.name = std::move(name);
    t.size = 1;
    for (index_t d : shape)
      t.size *= d;
    t.shape = std::move(shape);
    t.offset = total;
    total += t.size;
    tensors.push_back(std::move(t));
  }
};

namespace {

/// The common feature map of the convolutions in block row `row` of op (a
/// block-structured A or B), if they agree and there is one.
template <class T>
std::optional<std::vector<index_t>>
block_row_map(const LinearOperator<T> *op, index_t row, index_t offset, index_t size) {
  if (!op)
    return std::nullopt;
  const auto *bs = capability<BlockStructured<T>>(*op);
  if (!bs)
    return std::nullopt;
  const auto &s = bs->block_structure();
  // The block row holding exactly these states.
  index_t r = -1;
  for (index_t i = 0; i < s.row_blocks(); ++i)
    if (s.row_offset(i) == offset && s.row_block_size(i) == size)
      r = i;
  (void)row;
  if (r < 0)
    return std::nullopt;
  std::optional<std::vector<index_t>> found;
  for (const index_t e : s.entries_in_row(r)) {
    const auto *t = capability<Trainable<T>>(*s.entries()[e].op);
    const auto map = t ? t->row_feature_map() : std::nullopt;
    if (!map)
      continue;
    if (found && *found != *map)
      return std::nullopt;
    found = map;
  }
  return found;
}

} // namespace

template <class T>
TrainableModel<T>::TrainableModel(const Model<T> &model, BiasTying tying)
    : impl_(std::make_unique<Impl>()) {
  auto &im = *impl_;
  const OperatorPtr<T> src[4] = {model.A_ptr(), model.B_ptr(), model.C_ptr(),
                                 model.D_ptr()};
  OperatorPtr<T> use[4];
  const char *names[4] = {"A.", "B.", "C.", "D."};
  for (int w = 0; w < 4; ++w) {
    if (!src[w])
      continue;
    if (const auto *t = capability<Trainable<T>>(*src[w])) {
      im.ops[w] = t->clone();
      use[w] = im.ops[w];
      im.ranges[w].first = im.tensors.size();
      for (const auto &s : t->parameter_shapes())
        im.add(names[w] + s.name, s.shape);
      im.ranges[w].count = im.tensors.size() - im.ranges[w].first;
    } else {
      use[w] = src[w];
      im.ranges[w].first = im.tensors.size();
    }
  }
  im.model = std::make_unique<Model<T>>(
      use[0], use[1], use[2], use[3],
      std::vector<T>(model.bias_x().begin(), model.bias_x().end()),
      std::vector<T>(model.bias_y().begin(), model.bias_y().end()), model.blocks());
  // Biases, per state block.
  const auto bx = im.model->bias_x();
  for (std::size_t b = 0; b < model.blocks().size(); ++b) {
    const auto &blk = model.blocks()[b];
    BiasBlock bb;
    bb.offset = blk.offset;
    bb.size = blk.size;
    std::vector<T> tied;
    if (tying == BiasTying::automatic && blk.size > 0) {
      auto map =
          block_row_map<T>(&im.model->A(), static_cast<index_t>(b), blk.offset, blk.size);
      if (!map)
        map = block_row_map<T>(&im.model->B(), static_cast<index_t>(b), blk.offset,
                               blk.size);
      if (map && map->size() == 3 && (*map)[0] * (*map)[1] * (*map)[2] == blk.size &&
          (*map)[1] * (*map)[2] > 1) {
        const index_t channels = (*map)[0], plane = blk.size / channels;
        bool constant = true;
        for (index_t c = 0; c < channels && constant; ++c)
          for (index_t q = 1; q < plane; ++q)
            if (!(bx[blk.offset + c * plane + q] == bx[blk.offset + c * plane])) {
              constant = false;
              break;
            }
        if (constant) {
          bb.plane = plane;
          for (index_t c = 0; c < channels; ++c)
            tied.push_back(bx[blk.offset + c * plane]);
        }
      }
    }
    bb.tensor = im.tensors.size();
    im.add("bx." + blk.name, {bb.plane > 1 ? blk.size / bb.plane : blk.size});
    im.bias.push_back(bb);
    im.tied.push_back(std::move(tied));
  }
  im.by = im.tensors.size();
  im.add("by", {model.outputs()});
}

template <class T> TrainableModel<T>::~TrainableModel() = default;
template <class T>
TrainableModel<T>::TrainableModel(TrainableModel &&) noexcept = default;
template <class T>
TrainableModel<T> &TrainableModel<T>::operator=(TrainableModel &&) noexcept = default;

template <class T> const Model<T> &TrainableModel<T>::model() const noexcept {
  return *impl_->model;
}
template <class T>
const std::vector<TensorInfo> &TrainableModel<T>::tensors() const noexcept {
  return impl_->tensors;
}
template <class T> index_t TrainableModel<T>::size() const noexcept {
  return impl_->total;
}
template <class T> std::size_t TrainableModel<T>::find(const std::string &name) const {
  for (std::size_t t = 0; t < impl_->tensors.size(); ++t)
    if (impl_->tensors[t].name == name)
      return t;
  throw InvalidArgument("the model has no parameter tensor '" + name + "'");
}
template <class T>
typename TrainableModel<T>::Range
TrainableModel<T>::operator_tensors(int which) const noexcept {
  return impl_->ranges[which];
}
template <class T>
LinearOperator<T> *TrainableModel<T>::mutable_operator(int which) noexcept {
  return impl_->ops[which].get();
}
template <class T>
const std::vector<typename TrainableModel<T>::BiasBlock> &
TrainableModel<T>::bias_blocks() const noexcept {
  return impl_->bias;
}
template <class T> std::size_t TrainableModel<T>::output_bias_tensor() const noexcept {
  return impl_->by;
}

template <class T> std::vector<std::span<T>> TrainableModel<T>::values() {
  auto &im = *impl_;
  std::vector<std::span<T>> out;
  out.reserve(im.tensors.size());
  for (int w = 0; w < 4; ++w)
    if (im.ranges[w].count > 0)
      for (auto s : capability<Trainable<T>>(*im.ops[w])->parameter_values())
        out.push_back(s);
  auto bx = im.model->mutable_bias_x();
  for (std::size_t b = 0; b < im.bias.size(); ++b) {
    const auto &bb = im.bias[b];
    if (bb.plane > 1)
      out.push_back(std::span<T>(im.tied[b]));
    else
      out.push_back(bx.subspan(static_cast<std::size_t>(bb.offset),
                               static_cast<std::size_t>(bb.size)));
  }
  out.push_back(im.model->mutable_bias_y());
  return out;
}

template <class T> std::vector<std::span<const T>> TrainableModel<T>::values() const {
  auto spans = const_cast<TrainableModel *>(this)->values();
  return {spans.begin(), spans.end()};
}

template <class T> void TrainableModel<T>::read(std::span<T> flat) const {
  if (static_cast<index_t>(flat.size()) != size())
    throw InvalidArgument("TrainableModel::read: " + std::to_string(flat.size()) +
                          " values, the model has " + std::to_string(size()));
  const auto v = values();
  for (std::size_t t = 0; t < v.size(); ++t)
    std::copy(v[t].begin(), v[t].end(), flat.begin() + impl_->tensors[t].offset);
}

template <class T> void TrainableModel<T>::write(std::span<const T> flat) {
  if (static_cast<index_t>(flat.size()) != size())
    throw InvalidArgument("TrainableModel::write: " + std::to_string(flat.size()) +
                          " values, the model has " + std::to_string(size()));
  auto v = values();
  for (std::size_t t = 0; t < v.size(); ++t) {
    const auto first = flat.begin() + impl_->tensors[t].offset;
    std::copy(first, first + impl_->tensors[t].size, v[t].begin());
  }
  commit();
}

template <class T> void TrainableModel<T>::commit() {
  auto &im = *impl_;
  for (int w = 0; w < 4; ++w)
    if (im.ranges[w].count > 0)
      capability<Trainable<T>>(*im.ops[w])->parameters_changed();
  auto bx = im.model->mutable_bias_x();
  for (std::size_t b = 0; b < im.bias.size(); ++b) {
    const auto &bb = im.bias[b];
    if (bb.plane > 1)
      for (index_t i = 0; i < bb.size; ++i)
        bx[bb.offset + i] = im.tied[b][i / bb.plane];
  }
}

template <class T>
std::vector<std::span<T>> TrainableModel<T>::split(std::span<T> flat) const {
  if (static_cast<index_t>(flat.size()) != size())
    throw InvalidArgument("TrainableModel::split: " + std::to_string(flat.size()) +
                          " values, the model has " + std::to_string(size()));
  std::vector<std::span<T>> out;
  for (const auto &t : impl_->tensors)
    out.push_back(flat.subspan(static_cast<std::size_t>(t.offset),
                               static_cast<std::size_t>(t.size)));
  return out;
}

template <class T>
std::vector<std::span<const T>> TrainableModel<T>::split(std::span<const T> flat) const {
  auto s = split(std::span<T>(const_cast<T *>(flat.data()), flat.size()));
  return {s.begin(), s.end()};
}

template class TrainableModel<float>;
template class TrainableModel<double>;

} // namespace tacit::inline v1
