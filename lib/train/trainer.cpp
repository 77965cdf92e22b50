// The training loop (see tacit/train/trainer.hpp).

#include <tacit/train/trainer.hpp>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/io/io.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <utility>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace tacit::inline v1 {

TrainingError::TrainingError(int epoch, std::int64_t step, const std::string &what)
    : Error("epoch " + std::to_string(epoch) +
            (step > 0 ? ", step " + std::to_string(step) : std::string()) + ": " + what),
      epoch_(epoch), step_(step) {}

std::string to_string(Constraint c) {
  switch (c) {
  case Constraint::automatic:
    return "auto";
  case Constraint::none:
    return "none";
  case Constraint::inf_norm:
    return "inf-norm";
  case Constraint::perron:
    return "perron";
  }
  return "?";
}

Constraint parse_constraint(std::string_view s) {
  if (s == "auto" || s == "automatic")
    return Constraint::automatic;
  if (s == "none")
    return Constraint::none;
  if (s == "inf-norm" || s == "inf_norm" || s == "projection")
    return Constraint::inf_norm;
  if (s == "perron" || s == "pf")
    return Constraint::perron;
  throw InvalidArgument("unknown constraint '" + std::string(s) +
                        "' (expected auto, none, inf-norm or perron)");
}

namespace {

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// The order of the samples in epoch e (0-based): a Fisher-Yates shuffle
/// from (seed, e), or the data order.
std::vector<index_t> epoch_order(index_t m, std::optional<std::uint64_t> seed,
                                 int epoch) {
  std::vector<index_t> order(static_cast<std::size_t>(m));
  std::iota(order.begin(), order.end(), index_t(0));
  if (!seed)
    return order;
  std::uint64_t state = mix(*seed ^ mix(static_cast<std::uint64_t>(epoch) + 1));
  for (index_t i = m - 1; i > 0; --i) {
    state = mix(state);
    // Unbiased enough for i < 2^32: the high 32 bits times the range.
    const index_t j =
        static_cast<index_t>(((state >> 32) * static_cast<std::uint64_t>(i + 1)) >> 32);
    std::swap(order[i], order[j]);
  }
  return order;
}

/// Columns `cols` of src into dst (resized to rows x cols.size(), slab width w).
template <class T>
void gather(const Batch<T> &src, std::span<const index_t> cols, index_t w,
            Batch<T> &dst) {
  const index_t k = static_cast<index_t>(cols.size()), rows = src.rows();
  if (dst.rows() != rows || dst.cols() != k ||
      dst.slab_width() != std::min(w, std::max<index_t>(k, 1)))
    dst = Batch<T>(rows, k, w);
  if (src.slab_width() == 1) {
    // Sample-major source: each column one contiguous read.
    for (index_t c = 0; c < k; ++c) {
      const T *col = &src(0, cols[c]);
      for (index_t i = 0; i < rows; ++i)
        dst(i, c) = col[i];
    }
    return;
  }
  for (index_t c = 0; c < k; ++c) {
    const index_t j = cols[c];
    for (index_t i = 0; i < rows; ++i)
      dst(i, c) = src(i, j);
  }
}

/// src with each column contiguous (slab width 1), for the shuffled
/// mini-batch gathers: a column of a wide-slab batch is spread over one
/// cache line per row. `store` holds the copy when one is needed.
template <class T>
const Batch<T> &sample_major(const Batch<T> &src, Batch<T> &store, double mean = 0,
                             double std = 1) {
  const bool scale = mean != 0 || std != 1;
  if (!scale && (src.slab_width() == 1 || src.cols() <= 1))
    return src;
  store = Batch<T>(src.rows(), src.cols(), 1);
  const T m = static_cast<T>(mean), s = static_cast<T>(std);
  tbb::parallel_for(tbb::blocked_range<index_t>(0, src.cols(), 256),
                    [&](const tbb::blocked_range<index_t> &r) {
                      for (index_t j = r.begin(); j < r.end(); ++j) {
                        T *col = &store(0, j);
                        for (index_t i = 0; i < src.rows(); ++i)
                          col[i] = scale ? (src(i, j) - m) / s : src(i, j);
                      }
                    });
  return store;
}

void check_standardization(double mean, double std) {
  if (!std::isfinite(mean) || !std::isfinite(std) || !(std > 0))
    throw InvalidArgument("input standardisation (u - " + fmt(mean) + ") / " + fmt(std) +
                          ": the mean must be finite and the standard deviation "
                          "positive and finite");
}

/// Whether A needs no constraint: strictly block lower triangular structure
/// or a nilpotent CSR pattern (feed-forward, lambda_PF = 0 for any values).
template <class T> bool feed_forward(const LinearOperator<T> &A) {
  if (const auto *b = capability<BlockStructured<T>>(A)) {
    const auto &s = b->block_structure();
    return s.square_partition() && s.strictly_block_lower_triangular();
  }
  if (const auto *csr = stored_csr(A)) {
    // The pattern (stored entries, zeros included) must be acyclic: values
    // change during training.
    CsrMatrix<T> ones = *csr;
    for (auto &v : ones.mutable_values())
      v = T(1);
    return strongly_connected_components(ones).nilpotent();
  }
  return false;
}

template <class T> bool all_finite(std::span<const T> v) {
  T acc = T(0);
  for (const T x : v)
    acc += x * T(0);
  return acc == T(0);
}

/// Well-posedness of A now: lambda_PF(|A|) interval and ||A||_inf.
template <class T> void certify(const LinearOperator<T> &A, EpochReport &r) {
  r.norm_inf = norm_inf(A);
  const auto csr = csr_view(A);
  PerronOptions po;
  po.rel_width = 1e-6;
  const PerronBound pf = perron_frobenius_bound(*csr, po);
  r.lambda_lower = pf.lower;
  r.lambda_upper = pf.upper;
  r.certified = pf.certified();
}

std::string solve_failure(const char *what, SolveStatus status, double residual,
                          int iters, const std::string &message) {
  return std::string(what) + " did not converge (" + to_string(status) + " after " +
         std::to_string(iters) + " iterations, residual " + fmt(residual) +
         "): " + message;
}

constexpr char state_magic[8] = {'T', 'A', 'C', 'I', 'T', 'C', 'K', 'P'};

template <class T>
void write_checkpoint(const std::filesystem::path &dir, int epochs_done,
                      const TrainableModel<T> &tm, const Optimizer<T> &opt, double mean,
                      double std) {
  namespace fs = std::filesystem;
  try {
    fs::create_directories(dir);
    char name[32];
    std::snprintf(name, sizeof name, "epoch-%04d", epochs_done);
    const fs::path final_dir = dir / name;
    const fs::path tmp = dir / (std::string(".tmp-") + name);
    fs::remove_all(tmp);
    fs::create_directory(tmp);
    save_model_native(tm.model(), tmp / "model.tacit");
    std::string state(state_magic, 8);
    const std::int32_t e = epochs_done;
    const std::int64_t size = tm.size();
    state.append(reinterpret_cast<const char *>(&e), 4);
    state.append(reinterpret_cast<const char *>(&size), 8);
    state += opt.save_state();
    write_file_atomically(tmp / "state.bin", state);
    if (mean != 0 || std != 1) {
      char text[64];
      std::snprintf(text, sizeof text, "%.17g %.17g\n", mean, std);
      write_file_atomically(tmp / "standardization", text);
    }
    if (fs::exists(final_dir)) {
      const fs::path old = dir / (std::string(".old-") + name);
      fs::remove_all(old);
      fs::rename(final_dir, old);
      fs::rename(tmp, final_dir);
      fs::remove_all(old);
    } else {
      fs::rename(tmp, final_dir);
    }
  } catch (const fs::filesystem_error &err) {
    throw FileError(dir.string(), 0,
                    std::string("cannot write the checkpoint: ") + err.what());
  }
}

template <class T>
TrainReport run(TrainableModel<T> &tm, const Dataset<T> &data,
                const Dataset<T> *validation, const TrainOptions &o, int start_epoch,
                const std::string *state) {
  const Model<T> &m = tm.model();
  const LossKind loss = o.gradient.loss;
  check_dataset(data, m.inputs(), m.outputs(), loss);
  if (validation)
    check_dataset(*validation, m.inputs(), m.outputs(), loss);
  if (o.batch_size < 1)
    throw InvalidArgument("train: the batch size must be >= 1");
  if (o.epochs < 0)
    throw InvalidArgument("train: the number of epochs must be >= 0");
  if (!(o.kappa > 0) || !(o.kappa < 1))
    throw InvalidArgument("train: kappa " + fmt(o.kappa) + " must be in (0, 1)");
  o.optimizer.validate();
  check_standardization(o.input_mean, o.input_std);
  const bool distill = o.distillation.weight > 0;
  if (!(o.distillation.weight >= 0 && o.distillation.weight <= 1))
    throw InvalidArgument("train: the distillation weight " + fmt(o.distillation.weight) +
                          " must be in [0, 1]");
  if (!(o.distillation.temperature > 0) || !std::isfinite(o.distillation.temperature))
    throw InvalidArgument("train: the distillation temperature " +
                          fmt(o.distillation.temperature) +
                          " must be positive and finite");
  if (distill) {
    const std::string name = data.name.empty() ? std::string("the data") : data.name;
    if (loss != LossKind::cross_entropy)
      throw InvalidArgument(
          "train: distillation needs the cross-entropy loss (the loss is " +
          to_string(loss) + ")");
    if (data.teacher.rows() != m.outputs() || data.teacher.cols() != data.size())
      throw InvalidArgument(
          name + ": the teacher's outputs are " + std::to_string(data.teacher.rows()) +
          " x " + std::to_string(data.teacher.cols()) +
          ", expected q = " + std::to_string(m.outputs()) + " values for each of " +
          std::to_string(data.size()) + " samples");
    for (index_t j = 0; j < data.size(); ++j)
      for (index_t i = 0; i < m.outputs(); ++i)
        if (!std::isfinite(data.teacher(i, j)))
          throw InvalidArgument(name + ": sample " + std::to_string(j + 1) +
                                ", teacher output " + std::to_string(i + 1) +
                                " is not finite");
  }
  // The validation data on the training scale.
  Dataset<T> validation_store;
  if (validation && (o.input_mean != 0 || o.input_std != 1)) {
    validation_store.labels = validation->labels;
    validation_store.targets = validation->targets;
    validation_store.name = validation->name;
    sample_major(validation->inputs, validation_store.inputs, o.input_mean, o.input_std);
    validation = &validation_store;
  }

  TrainReport report;
  report.first_epoch = start_epoch + 1;
  // The constraint that keeps A well-posed.
  const bool ff = feed_forward(m.A());
  Constraint c = o.constraint;
  if (c == Constraint::automatic)
    c = ff ? Constraint::none : Constraint::inf_norm;
  report.constraint = c;
  auto *A_mut = tm.mutable_operator(0);
  CsrMatrix<T> *A_csr = A_mut ? capability<CsrMatrix<T>>(*A_mut) : nullptr;
  if ((c == Constraint::inf_norm || c == Constraint::perron) && !A_csr)
    throw InvalidArgument("train: the " + to_string(c) +
                          " constraint needs A stored as a trainable CSR matrix (A is " +
                          m.A().kind() + ")");
  switch (c) {
  case Constraint::none:
    report.constraint_reason = ff ? "A is feed-forward (strictly block lower "
                                    "triangular): well-posed by structure"
                                  : "none requested: A has cycles and is not constrained";
    break;
  case Constraint::inf_norm:
    report.constraint_reason = "exact projection of A onto ||A||_inf <= " + fmt(o.kappa) +
                               " after every step (row-wise l1-ball projection)";
    break;
  case Constraint::perron:
    report.constraint_reason = "A scaled to lambda_PF(|A|) <= " + fmt(o.kappa) +
                               " (certified upper bound) after every step";
    break;
  default:
    break;
  }
  auto constrain = [&]() -> std::int64_t {
    if (c == Constraint::inf_norm) {
      const index_t changed = project_inf_norm(*A_csr, static_cast<T>(o.kappa));
      tm.commit();
      return changed;
    }
    if (c == Constraint::perron) {
      PerronOptions po;
      po.rel_width = 1e-6;
      const PerronBound pf = perron_frobenius_bound(*A_csr, po);
      if (pf.upper > o.kappa) {
        const T s = static_cast<T>(o.kappa / pf.upper);
        for (auto &v : A_csr->mutable_values())
          v *= s;
        tm.commit();
        return 1;
      }
    }
    return 0;
  };
  if (start_epoch == 0)
    constrain();

  Optimizer<T> opt(o.optimizer, tm.size());
  if (state)
    opt.load_state(*state);
  GradientEngine<T> engine(tm, o.gradient);
  report.forward_method = engine.forward_method();
  report.adjoint_method = engine.adjoint_method();

  const index_t N = data.size();
  std::vector<T> grad(static_cast<std::size_t>(tm.size())),
      backup(static_cast<std::size_t>(tm.size()));
  Batch<T> U, Yt, Tt, inputs_store, targets_store, teacher_store;
  const Batch<T> &inputs =
      sample_major(data.inputs, inputs_store, o.input_mean, o.input_std);
  const Batch<T> &target_values = loss == LossKind::cross_entropy
                                      ? data.targets
                                      : sample_major(data.targets, targets_store);
  const Batch<T> &teacher_values =
      distill ? sample_major(data.teacher, teacher_store) : data.teacher;
  std::vector<int> labels;
  const std::int64_t steps = (N + o.batch_size - 1) / o.batch_size;
  for (int e = start_epoch; e < o.epochs; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    EpochReport er;
    er.epoch = e + 1;
    er.lr = o.schedule.rate(o.optimizer.lr, e, o.epochs);
    const auto order = epoch_order(N, o.shuffle_seed, e);
    double loss_sum = 0;
    index_t correct = 0, seen = 0;
    for (std::int64_t s = 0; s < steps; ++s) {
      const index_t b0 = s * o.batch_size, b1 = std::min<index_t>(N, b0 + o.batch_size);
      const std::span<const index_t> cols(order.data() + b0,
                                          static_cast<std::size_t>(b1 - b0));
      gather(inputs, cols, o.slab_width, U);
      Targets<T> targets;
      if (loss == LossKind::cross_entropy) {
        labels.resize(cols.size());
        for (std::size_t j = 0; j < cols.size(); ++j)
          labels[j] = data.labels[static_cast<std::size_t>(cols[j])];
        targets.labels = labels;
        if (distill) {
          gather(teacher_values, cols, o.slab_width, Tt);
          targets.teacher = &Tt;
          targets.teacher_weight = o.distillation.weight;
          targets.temperature = o.distillation.temperature;
        }
      } else {
        gather(target_values, cols, o.slab_width, Yt);
        targets.values = &Yt;
      }
      if (s > 0 || e > start_epoch)
        engine.refresh();
      const GradientResult r = engine.compute(U, targets, grad);
      const int step1 = static_cast<int>(s + 1);
      if (!r.forward.ok())
        throw TrainingError(e + 1, step1,
                            solve_failure("the forward solve", r.forward.status,
                                          r.forward.residual, r.forward.iterations,
                                          r.forward.message) +
                                " (the model may have lost well-posedness: ||A||_inf = " +
                                fmt(norm_inf(m.A())) + ")");
      if (!r.adjoint.ok())
        throw TrainingError(e + 1, step1,
                            solve_failure("the adjoint solve", r.adjoint.status,
                                          r.adjoint.residual, r.adjoint.iterations,
                                          r.adjoint.message));
      if (!std::isfinite(r.loss) || !all_finite<T>(grad))
        throw TrainingError(
            e + 1, step1, "the loss (" + fmt(r.loss) + ") or its gradient is not finite");
      er.forward_iterations = std::max(er.forward_iterations, r.forward.iterations);
      er.adjoint_iterations = std::max(er.adjoint_iterations, r.adjoint.iterations);
      tm.read(backup);
      opt.step(tm.values(), grad, er.lr);
      tm.commit();
      {
        bool finite = true;
        for (const auto &v : std::as_const(tm).values())
          finite = finite && all_finite<T>(v);
        if (!finite) {
          tm.write(backup);
          throw TrainingError(e + 1, step1,
                              "the step made a parameter non-finite (learning rate " +
                                  fmt(er.lr) + "); the model keeps the previous step");
        }
      }
      if (o.after_step) {
        o.after_step(e + 1, s + 1, er.lr);
        tm.commit();
      }
      er.constrained += constrain();
      loss_sum += r.loss * double(r.samples);
      correct += r.correct;
      seen += r.samples;
      if (o.on_step) {
        StepProgress p;
        p.epoch = e + 1;
        p.epochs = o.epochs;
        p.step = s + 1;
        p.steps = steps;
        p.loss = loss_sum / double(seen);
        p.accuracy = double(correct) / double(seen);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        p.images_per_second = secs > 0 ? double(seen) / secs : 0;
        o.on_step(p);
      }
    }
    er.samples = seen;
    er.train_loss = seen ? loss_sum / double(seen) : 0;
    er.train_accuracy = seen ? double(correct) / double(seen) : 0;
    er.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    er.images_per_second = er.seconds > 0 ? double(seen) / er.seconds : 0;
    if (!ff) {
      certify(m.A(), er);
      if (!er.certified)
        throw TrainingError(e + 1, 0,
                            "lambda_PF(|A|) < 1 is not certified at the end of the epoch "
                            "(lambda_PF(|A|) in [" +
                                fmt(er.lambda_lower) + ", " + fmt(er.lambda_upper) +
                                "], ||A||_inf = " + fmt(er.norm_inf) +
                                "); train with a constraint (--kappa)");
    }
    if (validation && validation->size() > 0) {
      const GradientResult v =
          evaluate(tm, *validation, o.gradient, o.validation_batch, o.slab_width);
      if (!v.forward.ok())
        throw TrainingError(e + 1, 0,
                            solve_failure("the validation forward solve",
                                          v.forward.status, v.forward.residual,
                                          v.forward.iterations, v.forward.message));
      er.validation_loss = v.loss;
      if (loss == LossKind::cross_entropy)
        er.validation_accuracy = double(v.correct) / double(v.samples);
    }
    if (!o.checkpoint_dir.empty())
      write_checkpoint(o.checkpoint_dir, e + 1, tm, opt, o.input_mean, o.input_std);
    if (o.on_epoch)
      o.on_epoch(er);
    report.epochs.push_back(er);
  }
  return report;
}

} // namespace

template <class T>
void check_dataset(const Dataset<T> &d, index_t p, index_t q, LossKind loss) {
  const std::string name = d.name.empty() ? std::string("the data") : d.name;
  const index_t m = d.inputs.cols();
  if (d.inputs.rows() != p)
    throw InvalidArgument(name + ": the inputs have " + std::to_string(d.inputs.rows()) +
                          " values each, the model has p = " + std::to_string(p) +
                          " inputs");
  for (index_t j = 0; j < m; ++j)
    for (index_t i = 0; i < p; ++i)
      if (!std::isfinite(d.inputs(i, j)))
        throw InvalidArgument(name + ": sample " + std::to_string(j + 1) + ", input " +
                              std::to_string(i + 1) + " is not finite (" +
                              fmt(double(d.inputs(i, j))) + ")");
  if (loss == LossKind::cross_entropy) {
    if (static_cast<index_t>(d.labels.size()) != m)
      throw InvalidArgument(name + ": " + std::to_string(d.labels.size()) +
                            " labels for " + std::to_string(m) + " samples");
    for (index_t j = 0; j < m; ++j)
      if (d.labels[j] < 0 || d.labels[j] >= q)
        throw InvalidArgument(name + ": sample " + std::to_string(j + 1) + " has label " +
                              std::to_string(d.labels[j]) + ", outside [0, " +
                              std::to_string(q) +
                              ") (the model has q = " + std::to_string(q) + " outputs)");
  } else if (loss == LossKind::squared) {
    if (d.targets.rows() != q || d.targets.cols() != m)
      throw InvalidArgument(
          name + ": the targets are " + std::to_string(d.targets.rows()) + " x " +
          std::to_string(d.targets.cols()) + ", expected q = " + std::to_string(q) +
          " values for each of " + std::to_string(m) + " samples");
    for (index_t j = 0; j < m; ++j)
      for (index_t i = 0; i < q; ++i)
        if (!std::isfinite(d.targets(i, j)))
          throw InvalidArgument(name + ": sample " + std::to_string(j + 1) + ", target " +
                                std::to_string(i + 1) + " is not finite");
  }
}

template <class T>
GradientResult evaluate(TrainableModel<T> &tm, const Dataset<T> &d,
                        const GradientOptions &options, index_t batch,
                        index_t slab_width) {
  GradientEngine<T> engine(tm, options);
  GradientResult total;
  total.forward.status = SolveStatus::converged;
  double loss_sum = 0;
  Batch<T> U, Yt;
  std::vector<index_t> cols;
  std::vector<int> labels;
  const index_t N = d.size();
  batch = std::max<index_t>(1, batch);
  for (index_t b0 = 0; b0 < N; b0 += batch) {
    const index_t b1 = std::min(N, b0 + batch);
    cols.resize(static_cast<std::size_t>(b1 - b0));
    std::iota(cols.begin(), cols.end(), b0);
    gather(d.inputs, cols, slab_width, U);
    Targets<T> t;
    if (options.loss == LossKind::cross_entropy) {
      labels.assign(d.labels.begin() + b0, d.labels.begin() + b1);
      t.labels = labels;
    } else {
      gather(d.targets, cols, slab_width, Yt);
      t.values = &Yt;
    }
    const GradientResult r = engine.evaluate(U, t);
    if (!r.forward.ok() && total.forward.ok())
      total.forward = r.forward;
    loss_sum += r.loss * double(r.samples);
    total.correct += r.correct;
    total.samples += r.samples;
    total.forward.iterations = std::max(total.forward.iterations, r.forward.iterations);
  }
  total.loss = total.samples ? loss_sum / double(total.samples) : 0;
  return total;
}

template <class T>
TrainReport train(TrainableModel<T> &model, const Dataset<T> &data,
                  const std::type_identity_t<Dataset<T>> *validation,
                  const TrainOptions &options) {
  return run(model, data, validation, options, 0, nullptr);
}

template <class T>
std::optional<Checkpoint<T>> load_checkpoint(const std::filesystem::path &dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    return std::nullopt;
  int best = -1;
  fs::path best_dir;
  for (const auto &entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    int e = 0;
    if (name.size() == 10 && name.rfind("epoch-", 0) == 0 &&
        std::sscanf(name.c_str() + 6, "%4d", &e) == 1 && e > best &&
        fs::exists(entry.path() / "model.tacit") &&
        fs::exists(entry.path() / "state.bin")) {
      best = e;
      best_dir = entry.path();
    }
  }
  if (best < 0)
    return std::nullopt;
  const fs::path state_file = best_dir / "state.bin";
  std::ifstream in(state_file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  if (bytes.size() < 20 || std::memcmp(bytes.data(), state_magic, 8) != 0)
    throw FileError(state_file.string(), 0, "not a tacit training state");
  std::int32_t e = 0;
  std::memcpy(&e, bytes.data() + 8, 4);
  if (e != best)
    throw FileError(state_file.string(), 0,
                    "the state says epoch " + std::to_string(e) + ", the directory " +
                        std::to_string(best));
  Checkpoint<T> cp{load_model_native<T>(best_dir / "model.tacit"), bytes.substr(20), e};
  const fs::path standard = best_dir / "standardization";
  if (fs::exists(standard)) {
    std::ifstream sin(standard);
    if (!(sin >> cp.input_mean >> cp.input_std) || !std::isfinite(cp.input_mean) ||
        !std::isfinite(cp.input_std) || !(cp.input_std > 0))
      throw FileError(standard.string(), 1,
                      "expected the standardisation's mean and a positive standard "
                      "deviation");
  }
  return cp;
}

template <class T>
TrainReport
resume(TrainableModel<T> &model, const Checkpoint<T> &cp, const Dataset<T> &data,
       const std::type_identity_t<Dataset<T>> *validation, const TrainOptions &options) {
  TrainableModel<T> saved(cp.model);
  const auto &a = saved.tensors(), &b = model.tensors();
  bool same = a.size() == b.size();
  for (std::size_t t = 0; same && t < a.size(); ++t)
    same = a[t].name == b[t].name && a[t].shape == b[t].shape;
  if (!same)
    throw InvalidArgument(
        "resume: the checkpoint's model has other parameter tensors than "
        "the model being trained");
  if (cp.input_mean != options.input_mean || cp.input_std != options.input_std)
    throw InvalidArgument(
        "resume: the checkpoint was trained on inputs standardised as (u - " +
        fmt(cp.input_mean) + ") / " + fmt(cp.input_std) + ", the options say (u - " +
        fmt(options.input_mean) + ") / " + fmt(options.input_std));
  std::vector<T> flat(static_cast<std::size_t>(saved.size()));
  saved.read(flat);
  model.write(flat);
  return run(model, data, validation, options, cp.epochs_done, &cp.optimizer_state);
}

template <class T> Dataset<T> sample_major(const Dataset<T> &data) {
  Dataset<T> out;
  Batch<T> store;
  const Batch<T> &inputs = sample_major(data.inputs, store);
  out.inputs = &inputs == &store ? std::move(store) : data.inputs;
  const Batch<T> &targets = sample_major(data.targets, store);
  out.targets = &targets == &store ? std::move(store) : data.targets;
  const Batch<T> &teacher = sample_major(data.teacher, store);
  out.teacher = &teacher == &store ? std::move(store) : data.teacher;
  out.labels = data.labels;
  out.name = data.name;
  return out;
}

template <class T>
Model<T> fold_input_standardization(const Model<T> &model, double mean, double std) {
  check_standardization(mean, std);
  TrainableModel<T> t(model, BiasTying::none);
  const index_t p = model.inputs(), n = model.states(), q = model.outputs();
  Batch<T> ones(p, 1, 1), b1(n, 1, 1), d1(q, 1, 1);
  for (index_t i = 0; i < p; ++i)
    ones(i, 0) = T(1);
  model.B().apply(Mode::normal, T(1), ones, T(0), b1);
  if (model.D())
    model.D()->apply(Mode::normal, T(1), ones, T(0), d1);
  auto values = t.values();
  const auto scale = [&](int which, const char *name) {
    const auto r = t.operator_tensors(which);
    if (r.count == 0)
      throw InvalidArgument(std::string("fold_input_standardization: ") + name +
                            " has no trainable parameters to scale by 1/std");
    for (std::size_t k = r.first; k < r.first + r.count; ++k)
      for (T &v : values[k])
        v = static_cast<T>(double(v) / std);
  };
  scale(1, "B");
  if (model.D())
    scale(3, "D");
  const double shift = mean / std;
  for (const auto &blk : model.blocks()) {
    auto bias = values[t.find("bx." + blk.name)];
    for (index_t i = 0; i < blk.size; ++i)
      bias[i] = static_cast<T>(double(bias[i]) - shift * double(b1(blk.offset + i, 0)));
  }
  if (model.D()) {
    auto by = values[t.find("by")];
    for (index_t i = 0; i < q; ++i)
      by[i] = static_cast<T>(double(by[i]) - shift * double(d1(i, 0)));
  }
  t.commit();
  return t.model();
}

#define TACIT_INSTANTIATE(T)                                                             \
  template Dataset<T> sample_major(const Dataset<T> &);                                  \
  template Model<T> fold_input_standardization(const Model<T> &, double, double);        \
  template TrainReport train(TrainableModel<T> &, const Dataset<T> &,                    \
                             const Dataset<T> *, const TrainOptions &);                  \
  template std::optional<Checkpoint<T>> load_checkpoint<T>(                              \
      const std::filesystem::path &);                                                    \
  template TrainReport resume(TrainableModel<T> &, const Checkpoint<T> &,                \
                              const Dataset<T> &, const Dataset<T> *,                    \
                              const TrainOptions &);                                     \
  template void check_dataset(const Dataset<T> &, index_t, index_t, LossKind);           \
  template GradientResult evaluate(TrainableModel<T> &, const Dataset<T> &,              \
                                   const GradientOptions &, index_t, index_t);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
