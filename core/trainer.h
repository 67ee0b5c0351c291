// Mini-batch stochastic gradient descent (Nielsen, NNDL ch. 1-3) with L2
// weight decay and momentum, exactly API.md's update rule:
//   g_w = 1/m sum_x delta^{x,l} (a^{x,l-1})^T + (lambda/n) w^l,
//   g_b = 1/m sum_x delta^{x,l};  v <- mu v - eta g;
//   w <- w + v_w,  b <- b + v_b
// with m the size of this mini-batch (the last one may be smaller) and n the
// training set size; velocities start at zero in every Train call.
#ifndef BACKPROP_CORE_TRAINER_H_
#define BACKPROP_CORE_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"

#include "core/dataset.h"
#include "core/network.h"

namespace backprop {

struct TrainOptions {
  uint32_t epochs = 1;
  uint32_t mini_batch_size = 10;  // larger than the data set: one batch
  double eta = 3.0;
  double lambda = 0.0;
  double mu = 0.0;
  uint64_t shuffle_seed = 0;
  bool monitor_training = false;  // also evaluate cost/accuracy on train set
  double progress_interval_seconds = 0;  // > 0: on_progress at most this often
};

// kInvalidArgument unless epochs >= 1, mini_batch_size >= 1, eta finite > 0,
// lambda finite >= 0, mu in [0, 1).
absl::Status ValidateTrainOptions(const TrainOptions& o);

// The order in which epoch `epoch` (1-based, within one Train call) visits
// the n training examples: a Fisher-Yates shuffle of 0..n-1 driven by a
// std::mt19937_64 seeded through std::seed_seq from (shuffle_seed, epoch).
// Train uses exactly this order (exposed so tests can replay an epoch).
std::vector<uint64_t> ShuffleOrder(uint64_t n, uint64_t shuffle_seed,
                                   uint32_t epoch);

struct LayerStats {
  double weight_norm = 0;         // ||w^l||_F after the epoch
  double gradient_norm = 0;       // mean over the epoch's batches of ||g_w||_F
  double saturated_fraction = 0;  // sigmoid/tanh: share of |sigma'(z)| < 0.01
};

struct EpochMetrics {
  uint32_t epoch = 0;  // 1..epochs within this call
  bool has_training = false;
  double training_cost = 0;  // includes lambda/(2n) sum w^2 when lambda > 0
  double training_accuracy = 0;
  bool has_validation = false;
  double validation_cost = 0;
  double validation_accuracy = 0;
  double seconds = 0;  // wall time of the epoch's SGD (not the evaluation)
  double examples_per_second = 0;
  std::vector<LayerStats> layers;  // one per weight layer, l = 1..L
};

struct BatchProgress {
  uint32_t epoch = 0;
  uint64_t examples_done = 0;
  uint64_t examples_total = 0;
  double running_cost = 0;  // mean data cost of this epoch's batches so far
};

template <typename T>
struct TrainCallbacks {
  // After every completed epoch, with the network at that epoch. A non-OK
  // return stops training with that status (the network keeps this epoch).
  std::function<absl::Status(const EpochMetrics&, const Network<T>&)> on_epoch;
  // Inside an epoch, at most every progress_interval_seconds.
  std::function<void(const BatchProgress&)> on_progress;
};

// Trains net in place. On return net holds the weights of the last completed
// epoch (the initial weights if none completed). Returns:
//   OK                  all epochs ran;
//   kCancelled          *cancel became true (checked every mini-batch);
//   kAborted            a cost or weight became NaN/Inf; the message names
//                       the epoch ("diverged in epoch 3 ...");
//   kInvalidArgument    bad options or data shapes (nothing was changed);
//   other               whatever on_epoch returned.
// Metrics of epochs that completed were already delivered to on_epoch.
// No allocation inside the mini-batch loop after the first batch; the only
// randomness is a std::mt19937_64 seeded from shuffle_seed and the epoch.
template <typename T>
absl::Status Train(Network<T>& net, const Dataset& train,
                   const Dataset* validation, const TrainOptions& options,
                   const TrainCallbacks<T>& callbacks,
                   const std::atomic<bool>* cancel);

// Cost (including the L2 term when lambda > 0, with n = l2_n) and accuracy of
// net on d, evaluated in batches. kInvalidArgument on a shape mismatch.
struct Evaluation {
  double cost = 0;
  double accuracy = 0;
};
template <typename T>
absl::StatusOr<Evaluation> Evaluate(const Network<T>& net, const Dataset& d,
                                    double lambda, uint64_t l2_n);

}  // namespace backprop

#endif  // BACKPROP_CORE_TRAINER_H_
