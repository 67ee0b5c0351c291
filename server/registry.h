// In-memory models and datasets, with their files in --model_dir/--data_dir.
//
// Readers (Predict, GetGradients, GetModel) take a model's current
// ModelState: an immutable snapshot behind a shared_ptr that a training swaps
// at each epoch end. The lock is held only to copy that pointer, never while
// computing or training, so readers never wait for a training.
//
// Locks are std::mutex rather than absl::Mutex: Debian's Abseil is not built
// with ThreadSanitizer annotations, so TSan cannot see absl::Mutex and would
// report every guarded access as a race. "Guarded by mu_" comments stand in
// for ABSL_GUARDED_BY, which needs absl::Mutex.
#ifndef BACKPROP_SERVER_REGISTRY_H_
#define BACKPROP_SERVER_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "backprop/v1/backprop.pb.h"
#include "core/dataset.h"
#include "core/network.h"

namespace backprop::server {

// One version of a model's weights: what one completed epoch left behind.
struct ModelState {
  explicit ModelState(AnyNetwork n) : network(std::move(n)) {}
  AnyNetwork network;
  uint64_t epochs_trained = 0;
  bool has_last_metrics = false;
  v1::EpochMetrics last_metrics;
  absl::Time update_time;
};

const ModelSpec& SpecOf(const AnyNetwork& net);

class ModelEntry {
 public:
  ModelEntry(std::string id, absl::Time create_time,
             std::shared_ptr<const ModelState> state);

  const std::string& id() const { return id_; }
  const ModelSpec& spec() const { return spec_; }
  absl::Time create_time() const { return create_time_; }

  // The last published state (never null).
  std::shared_ptr<const ModelState> state() const;
  void Publish(std::shared_ptr<const ModelState> state);

  bool training() const;
  // kFailedPrecondition when it already trains (or was just deleted).
  absl::Status TryStartTraining();
  void EndTraining();

 private:
  friend class ModelRegistry;
  const std::string id_;
  const absl::Time create_time_;
  const ModelSpec spec_;
  mutable std::mutex mu_;
  // Guarded by mu_:
  std::shared_ptr<const ModelState> state_;
  bool training_ = false;
  bool deleted_ = false;
};

class ModelRegistry {
 public:
  // dir empty: nothing is persisted (tests that need no disk).
  ModelRegistry(std::string dir, uint64_t max_models, uint64_t max_parameters);

  // Loads every <id>.model in dir. Each file that fails to load is reported
  // through `report` and left in place; returns the number loaded.
  size_t LoadAll(const std::function<void(const std::string&)>& report);

  // kNotFound for a (valid) id that is not here.
  absl::StatusOr<std::shared_ptr<ModelEntry>> Get(absl::string_view id) const;

  // Persists, then registers. kAlreadyExists, kResourceExhausted (model
  // count), or the storage error (nothing registered, no file left).
  absl::StatusOr<std::shared_ptr<ModelEntry>> Create(
      const std::string& id, std::shared_ptr<const ModelState> state);

  // kNotFound, kFailedPrecondition while it trains; removes the file.
  absl::Status Delete(absl::string_view id);

  // Up to `limit` entries with id > after, sorted by id.
  std::vector<std::shared_ptr<ModelEntry>> List(absl::string_view after,
                                                size_t limit) const;

  // Writes the file for this entry at `state` (atomic replace). Called by the
  // training job before it publishes an epoch.
  absl::Status Persist(const ModelEntry& entry, const ModelState& state) const;

  bool Contains(absl::string_view id) const;

 private:
  std::string PathFor(absl::string_view id) const;

  const std::string dir_;
  const uint64_t max_models_;
  const uint64_t max_parameters_;
  // Serialises Create/Delete with their file I/O; readers take only mu_.
  // Lock order: io_mu_, then mu_, then a ModelEntry's mu_.
  std::mutex io_mu_;
  mutable std::mutex mu_;
  // Guarded by mu_:
  std::map<std::string, std::shared_ptr<ModelEntry>, std::less<>> models_;
};

// A data set as the server keeps it: immutable once registered.
struct StoredDataset {
  std::string id;
  Dataset data;
  std::string description;
  absl::Time create_time;
  bool read_only = false;  // preloaded: not deletable, not on disk
};

class DatasetStore {
 public:
  DatasetStore(std::string dir, uint64_t max_datasets, uint64_t max_bytes);

  size_t LoadAll(const std::function<void(const std::string&)>& report);

  absl::StatusOr<std::shared_ptr<const StoredDataset>> Get(
      absl::string_view id) const;
  bool Contains(absl::string_view id) const;

  // Persists (unless read_only), then registers. kAlreadyExists,
  // kResourceExhausted, or the storage error (nothing left behind).
  absl::Status Add(std::shared_ptr<const StoredDataset> d);

  // kNotFound; kFailedPrecondition for a preloaded (read-only) data set.
  absl::Status Delete(absl::string_view id);

  std::vector<std::shared_ptr<const StoredDataset>> List(
      absl::string_view after, size_t limit) const;

 private:
  std::string PathFor(absl::string_view id) const;

  const std::string dir_;
  const uint64_t max_datasets_;
  const uint64_t max_bytes_;
  std::mutex io_mu_;  // lock order: io_mu_, then mu_
  mutable std::mutex mu_;
  // Guarded by mu_:
  std::map<std::string, std::shared_ptr<const StoredDataset>, std::less<>>
      datasets_;
};

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_REGISTRY_H_
