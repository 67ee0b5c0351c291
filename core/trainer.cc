// Mini-batch SGD with L2 weight decay and momentum (Nielsen, NNDL ch. 1-3),
// exactly API.md's update rule; see trainer.h for the contract.
#include "core/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <random>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include <armadillo>

#include "core/dataset.h"
#include "core/network.h"

namespace backprop {
namespace {

using Clock = std::chrono::steady_clock;

// Columns per pass when evaluating a whole dataset.
constexpr arma::uword kEvalChunk = 1024;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The dataset's inputs in element type T: the dataset's own memory for
// double, its shared float copy for float (converted on first use only).
template <typename T>
class InputsAs {
 public:
  explicit InputsAs(const Dataset& d) {
    if constexpr (std::is_same_v<T, double>) {
      data_ = d.inputs.memptr();
    } else {
      data_ = d.float_inputs.Get(d.inputs).memptr();
    }
  }
  const T* col(uint64_t j, arma::uword rows) const { return data_ + j * rows; }

 private:
  const T* data_ = nullptr;
};

// Writes example i's target (one-hot label or target vector) into y (n_L).
template <typename T>
void TargetColumn(const Dataset& d, uint64_t i, arma::uword n_out, T* y) {
  if (d.has_labels()) {
    std::fill(y, y + n_out, T{0});
    y[d.labels[i]] = T{1};
  } else {
    const double* t = d.targets.colptr(i);
    for (arma::uword k = 0; k < n_out; ++k) y[k] = static_cast<T>(t[k]);
  }
}

// Index of the largest of n values (first one on ties).
template <typename T>
arma::uword Argmax(const T* v, arma::uword n) {
  arma::uword best = 0;
  for (arma::uword i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

template <typename T>
absl::Status CheckDataFits(const Network<T>& net, const Dataset& d,
                           absl::string_view what) {
  if (absl::Status s = d.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " data: ", s.message()));
  }
  if (d.feature_count() != net.input_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " data has ", d.feature_count(),
                     " features but the network takes ", net.input_size()));
  }
  if (d.has_labels() ? d.class_count > net.output_size()
                     : d.targets.n_rows != net.output_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " data has targets of width ", d.output_size(),
                     " but the network has ", net.output_size(), " outputs"));
  }
  if (d.size() > internal::kMaxDimension * uint64_t{1024}) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " data has too many examples"));
  }
  return absl::OkStatus();
}

// sum over l of ||w^l||_F^2, in double.
template <typename T>
double SumSquaredWeights(const Network<T>& net) {
  double total = 0;
  for (size_t l = 1; l < net.num_layers(); ++l) {
    const T* w = net.w(l).memptr();
    for (arma::uword i = 0; i < net.w(l).n_elem; ++i) {
      total += static_cast<double>(w[i]) * static_cast<double>(w[i]);
    }
  }
  return total;
}

// Cost and accuracy of net on d (already checked to fit), with inputs x.
template <typename T>
Evaluation EvaluateChecked(const Network<T>& net, const Dataset& d,
                           const InputsAs<T>& x, double lambda, uint64_t l2_n) {
  const size_t L = net.num_layers() - 1;
  const arma::uword n_in = net.input_size();
  const arma::uword n_out = net.output_size();
  const uint64_t n = d.size();
  const arma::uword chunk = std::min<uint64_t>(kEvalChunk, n);
  internal::BatchWorkspace<T> ws(net.spec(), chunk);
  arma::Mat<T> y(n_out, chunk);
  double cost = 0;
  uint64_t correct = 0;
  for (uint64_t first = 0; first < n; first += chunk) {
    const arma::uword m = std::min<uint64_t>(chunk, n - first);
    for (arma::uword j = 0; j < m; ++j) {
      TargetColumn<T>(d, first + j, n_out, y.colptr(j));
    }
    ws.Forward(net, x.col(first, n_in), m);
    cost += ws.CostSum(y.memptr(), m);
    const T* a = ws.a(L);
    for (arma::uword j = 0; j < m; ++j) {
      const arma::uword guess = Argmax(a + j * n_out, n_out);
      const arma::uword truth =
          d.has_labels() ? d.labels[first + j]
                         : Argmax(d.targets.colptr(first + j), n_out);
      correct += guess == truth;
    }
  }
  Evaluation e;
  e.cost = cost / static_cast<double>(n);
  if (lambda > 0) {
    // network2.py's total_cost: + lambda/(2n) sum ||w||^2.
    e.cost += 0.5 * lambda / static_cast<double>(l2_n) * SumSquaredWeights(net);
  }
  e.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  return e;
}

// Fills order (already of size n) with ShuffleOrder's permutation, without
// allocating. Both halves of shuffle_seed and the epoch go through
// std::seed_seq, whose mixing the standard fixes.
void FillShuffleOrder(uint64_t shuffle_seed, uint32_t epoch,
                      std::vector<uint64_t>& order) {
  std::iota(order.begin(), order.end(), uint64_t{0});
  std::seed_seq seq{static_cast<uint32_t>(shuffle_seed),
                    static_cast<uint32_t>(shuffle_seed >> 32), epoch};
  std::mt19937_64 rng(seq);
  for (uint64_t i = order.size(); i > 1; --i) {
    std::uniform_int_distribution<uint64_t> pick(0, i - 1);
    std::swap(order[i - 1], order[pick(rng)]);
  }
}

// The weights and biases of one epoch, kept so a failed epoch can be undone.
template <typename T>
struct Snapshot {
  std::vector<arma::Mat<T>> w;
  std::vector<arma::Col<T>> b;

  void Save(const Network<T>& net) {
    w.resize(net.num_layers());
    b.resize(net.num_layers());
    for (size_t l = 1; l < net.num_layers(); ++l) {
      w[l] = net.w(l);  // same size after the first save: no reallocation
      b[l] = net.b(l);
    }
  }
  void Restore(Network<T>& net) const {
    for (size_t l = 1; l < net.num_layers(); ++l) {
      net.mutable_w(l) = w[l];
      net.mutable_b(l) = b[l];
    }
  }
};

}  // namespace

std::vector<uint64_t> ShuffleOrder(uint64_t n, uint64_t shuffle_seed,
                                   uint32_t epoch) {
  std::vector<uint64_t> order(n);
  FillShuffleOrder(shuffle_seed, epoch, order);
  return order;
}

absl::Status ValidateTrainOptions(const TrainOptions& o) {
  if (o.epochs < 1) return absl::InvalidArgumentError("epochs must be >= 1");
  if (o.mini_batch_size < 1) {
    return absl::InvalidArgumentError("mini_batch_size must be >= 1");
  }
  if (!std::isfinite(o.eta) || o.eta <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning rate must be finite and > 0, got ", o.eta));
  }
  if (!std::isfinite(o.lambda) || o.lambda < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("l2_lambda must be finite and >= 0, got ", o.lambda));
  }
  if (!(o.mu >= 0 && o.mu < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("momentum must be in [0, 1), got ", o.mu));
  }
  if (!std::isfinite(o.progress_interval_seconds) ||
      o.progress_interval_seconds < 0) {
    return absl::InvalidArgumentError(
        "progress interval must be finite and >= 0");
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::Status TrainUnguarded(Network<T>& net, const Dataset& train,
                            const Dataset* validation,
                            const TrainOptions& options,
                            const TrainCallbacks<T>& callbacks,
                            const std::atomic<bool>* cancel) {
  if (absl::Status s = ValidateTrainOptions(options); !s.ok()) return s;
  if (absl::Status s = CheckDataFits(net, train, "training"); !s.ok()) {
    return s;
  }
  if (validation != nullptr) {
    if (absl::Status s = CheckDataFits(net, *validation, "validation");
        !s.ok()) {
      return s;
    }
  }
  const size_t L = net.num_layers() - 1;
  const uint64_t n = train.size();
  const arma::uword n_in = net.input_size();
  const arma::uword n_out = net.output_size();
  const arma::uword max_m = std::min<uint64_t>(
      std::min<uint64_t>(options.mini_batch_size, n), internal::kMaxDimension);
  const bool want_progress =
      callbacks.on_progress && options.progress_interval_seconds > 0;

  // Everything the mini-batch loop touches is allocated here, once.
  const InputsAs<T> x_all(train);
  std::unique_ptr<InputsAs<T>> x_validation;
  if (validation != nullptr) {
    x_validation = std::make_unique<InputsAs<T>>(*validation);
  }
  internal::SgdEngine<T> engine(net, max_m, options.eta,
                                options.lambda / static_cast<double>(n),
                                options.mu);
  std::vector<uint64_t> order(n);
  Snapshot<T> good;
  good.Save(net);

  for (uint32_t epoch = 1; epoch <= options.epochs; ++epoch) {
    FillShuffleOrder(options.shuffle_seed, epoch, order);
    engine.ResetStats();
    uint64_t batches = 0;
    double running_cost = 0;
    bool cost_finite = true;
    const Clock::time_point epoch_start = Clock::now();
    Clock::time_point last_progress = epoch_start;

    for (uint64_t start = 0; start < n; start += max_m) {
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        good.Restore(net);
        return absl::CancelledError(
            absl::StrCat("training cancelled in epoch ", epoch,
                         "; the model keeps epoch ", epoch - 1));
      }
      const arma::uword m = std::min<uint64_t>(max_m, n - start);
      for (arma::uword j = 0; j < m; ++j) {
        engine.SetInput(j, x_all.col(order[start + j], n_in));
        TargetColumn<T>(train, order[start + j], n_out, engine.y_column(j));
      }
      // The next batch's inputs are scattered over the data set (DRAM);
      // asking for them now lets the loads overlap this batch's arithmetic.
      // Every other line suffices (the hardware fetches line pairs), and
      // halves the time the prefetches themselves stall.
      const uint64_t next = start + m;
      for (uint64_t j = next; j < std::min<uint64_t>(next + max_m, n); ++j) {
        const char* col =
            reinterpret_cast<const char*>(x_all.col(order[j], n_in));
        for (size_t off = 0; off < n_in * sizeof(T); off += 128) {
          __builtin_prefetch(col + off, 0, 2);
        }
      }
      // Feedforward, BP1-BP4 and the SGD update of API.md.
      const double c = engine.Step(m, want_progress);
      ++batches;
      if (want_progress) {
        const double mean = c / static_cast<double>(m);
        cost_finite = cost_finite && std::isfinite(mean);
        running_cost += mean;
        if (SecondsSince(last_progress) >= options.progress_interval_seconds) {
          last_progress = Clock::now();
          BatchProgress p;
          p.epoch = epoch;
          p.examples_done = start + m;
          p.examples_total = n;
          p.running_cost = running_cost / static_cast<double>(batches);
          callbacks.on_progress(p);
        }
      }
    }
    const double seconds = SecondsSince(epoch_start);

    EpochMetrics metrics;
    metrics.epoch = epoch;
    metrics.seconds = seconds;
    metrics.examples_per_second =
        seconds > 0 ? static_cast<double>(n) / seconds : 0;
    engine.CopyTo(net);
    bool finite = cost_finite && net.AllFinite();
    if (finite && options.monitor_training) {
      const Evaluation e =
          EvaluateChecked(net, train, x_all, options.lambda, n);
      metrics.has_training = true;
      metrics.training_cost = e.cost;
      metrics.training_accuracy = e.accuracy;
      finite = std::isfinite(e.cost);
    }
    if (finite && validation != nullptr) {
      // The L2 term uses the training set's n, as in the update rule.
      const Evaluation e =
          EvaluateChecked(net, *validation, *x_validation, options.lambda, n);
      metrics.has_validation = true;
      metrics.validation_cost = e.cost;
      metrics.validation_accuracy = e.accuracy;
      finite = std::isfinite(e.cost);
    }
    if (!finite) {
      good.Restore(net);
      return absl::AbortedError(absl::StrCat(
          "training diverged in epoch ", epoch,
          " (a cost or weight became NaN or infinite); the model keeps epoch ",
          epoch - 1, ". Try a smaller learning rate."));
    }
    metrics.layers.resize(L);
    for (size_t l = 1; l <= L; ++l) {
      LayerStats& s = metrics.layers[l - 1];
      s.weight_norm = arma::norm(net.w(l), "fro");
      s.gradient_norm =
          engine.gradient_norm_sum()[l] / static_cast<double>(batches);
      s.saturated_fraction =
          static_cast<double>(engine.saturated()[l]) /
          (static_cast<double>(net.w(l).n_rows) * static_cast<double>(n));
    }
    good.Save(net);
    if (callbacks.on_epoch) {
      if (absl::Status s = callbacks.on_epoch(metrics, net); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

template <typename T>
absl::Status Train(Network<T>& net, const Dataset& train,
                   const Dataset* validation, const TrainOptions& options,
                   const TrainCallbacks<T>& callbacks,
                   const std::atomic<bool>* cancel) {
  // Shapes are checked before Armadillo is called; what remains is running
  // out of memory for the per-call buffers (or a float copy of the inputs).
  try {
    return TrainUnguarded<T>(net, train, validation, options, callbacks,
                             cancel);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "not enough memory for the training buffers");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training failed: ", e.what()));
  }
}

template <typename T>
absl::StatusOr<Evaluation> Evaluate(const Network<T>& net, const Dataset& d,
                                    double lambda, uint64_t l2_n) {
  if (absl::Status s = CheckDataFits(net, d, "evaluation"); !s.ok()) return s;
  if (!std::isfinite(lambda) || lambda < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("l2_lambda must be finite and >= 0, got ", lambda));
  }
  if (lambda > 0 && l2_n == 0) {
    return absl::InvalidArgumentError("the L2 term needs l2_n >= 1");
  }
  const InputsAs<T> x(d);
  return EvaluateChecked(net, d, x, lambda, l2_n);
}

template absl::Status Train<double>(Network<double>&, const Dataset&,
                                    const Dataset*, const TrainOptions&,
                                    const TrainCallbacks<double>&,
                                    const std::atomic<bool>*);
template absl::Status Train<float>(Network<float>&, const Dataset&,
                                   const Dataset*, const TrainOptions&,
                                   const TrainCallbacks<float>&,
                                   const std::atomic<bool>*);
template absl::StatusOr<Evaluation> Evaluate<double>(const Network<double>&,
                                                     const Dataset&, double,
                                                     uint64_t);
template absl::StatusOr<Evaluation> Evaluate<float>(const Network<float>&,
                                                    const Dataset&, double,
                                                    uint64_t);

}  // namespace backprop
