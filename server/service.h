// The backprop.v1.Backprop service (../shared/API.md) on gRPC's callback API.
//
// Unary RPCs run on gRPC's callback threads and are short: they validate,
// take an immutable model snapshot (ModelEntry::state) and call core.
// Train validates everything up front, reserves the model and a training
// slot (at most max_concurrent_trainings; beyond that RESOURCE_EXHAUSTED at
// once), then runs on a worker thread owned by its reactor, so no gRPC thread
// is ever held by a training.
//
// Stream discipline for Train: at most one write in flight. BatchProgress is
// coalesced (only the latest pending one is kept, and a pending one is
// dropped when its epoch ends). EpochMetrics are never dropped: an epoch's
// event is queued (a queue of one) and the training thread, at the end of
// the NEXT epoch, waits until that previous event has been written before it
// queues the new one. So a slow reader costs at most one pending event and
// pauses training rather than growing a buffer.
#ifndef BACKPROP_SERVER_SERVICE_H_
#define BACKPROP_SERVER_SERVICE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

#include "backprop/v1/backprop.grpc.pb.h"
#include "server/limits.h"
#include "server/registry.h"

namespace backprop::server {

struct ServiceOptions {
  std::string model_dir;  // empty: models are not persisted
  std::string data_dir;   // empty: datasets are not persisted
  // Defaults: RELIABILITY.md §3, see limits.h.
  int max_concurrent_trainings = limits::DefaultMaxConcurrentTrainings();
  uint64_t max_parameters = limits::kMaxParameters;
  uint32_t max_layers = limits::kMaxLayers;
  uint32_t max_layer_width = limits::kMaxLayerWidth;
  uint64_t max_dataset_bytes = limits::kMaxDatasetBytes;
  uint64_t max_upload_chunk_bytes = limits::kMaxUploadChunkBytes;
  uint64_t max_upload_chunks = limits::kMaxUploadChunks;
  int max_concurrent_uploads = limits::kMaxConcurrentUploads;
  uint64_t max_models = limits::kMaxModels;
  uint64_t max_datasets = limits::kMaxDatasets;
  // Predict / GetGradients / inline Train examples.
  uint64_t max_rows_per_call = limits::kMaxRowsPerCall;
  uint32_t max_page_size = 1000;
  // Predict gives up (DEADLINE_EXCEEDED) at min(client deadline, start +
  // predict_budget); Train at start + max_train_time.
  absl::Duration predict_budget = limits::kPredictBudget;
  // GetGradients gives up the same way at start + gradients_budget.
  absl::Duration gradients_budget = limits::kGradientsBudget;
  absl::Duration max_train_time = limits::kMaxTrainTime;

  // Test hook, called on the training thread after each epoch has been
  // published and queued for writing. `wait_for_cancel(timeout)` blocks until
  // the call is cancelled (true) or the timeout passes (false).
  std::function<void(uint32_t epoch, const std::function<bool(absl::Duration)>&
                                         wait_for_cancel)>
      after_epoch_for_test;
};

class TrainReactor;

class BackpropService final : public v1::Backprop::CallbackService {
 public:
  explicit BackpropService(ServiceOptions options);
  ~BackpropService() override;

  // Loads the models and datasets found in the directories. Files that fail
  // to load are reported through `report` and left in place.
  void LoadAll(const std::function<void(const std::string&)>& report);

  // Registers Fashion-MNIST from dir as read-only datasets
  // "fashion-mnist-train" and "fashion-mnist-test" (in memory only).
  absl::Status PreloadFashionMnist(const std::string& dir);

  // Cancels every running training and refuses new ones (UNAVAILABLE).
  void BeginShutdown();
  // True once no training runs (they have released model and slot).
  bool WaitForTrainingsToEnd(absl::Duration timeout);

  ModelRegistry& models() { return models_; }
  DatasetStore& datasets() { return datasets_; }
  const ServiceOptions& options() const { return options_; }
  // UploadDataset calls in progress.
  int active_uploads() const { return active_uploads_.load(); }

  grpc::ServerUnaryReactor* CreateModel(grpc::CallbackServerContext* ctx,
                                        const v1::CreateModelRequest* req,
                                        v1::Model* resp) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const v1::GetModelRequest* req,
                                     v1::Model* resp) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* req,
                                       v1::ListModelsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteModel(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteModelRequest* req,
                                        v1::DeleteModelResponse* resp) override;
  grpc::ServerReadReactor<v1::UploadDatasetRequest>* UploadDataset(
      grpc::CallbackServerContext* ctx, v1::Dataset* resp) override;
  grpc::ServerUnaryReactor* GetDataset(grpc::CallbackServerContext* ctx,
                                       const v1::GetDatasetRequest* req,
                                       v1::Dataset* resp) override;
  grpc::ServerUnaryReactor* ListDatasets(
      grpc::CallbackServerContext* ctx, const v1::ListDatasetsRequest* req,
      v1::ListDatasetsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteDataset(
      grpc::CallbackServerContext* ctx, const v1::DeleteDatasetRequest* req,
      v1::DeleteDatasetResponse* resp) override;
  grpc::ServerWriteReactor<v1::TrainEvent>* Train(
      grpc::CallbackServerContext* ctx, const v1::TrainRequest* req) override;
  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* ctx,
                                    const v1::PredictRequest* req,
                                    v1::PredictResponse* resp) override;
  grpc::ServerUnaryReactor* GetGradients(
      grpc::CallbackServerContext* ctx, const v1::GetGradientsRequest* req,
      v1::GetGradientsResponse* resp) override;

 private:
  friend class TrainReactor;
  friend class UploadReactor;

  absl::Status DoCreateModel(const v1::CreateModelRequest& req,
                             v1::Model* resp);
  absl::Status DoGetModel(const v1::GetModelRequest& req, v1::Model* resp);
  absl::Status DoListModels(const v1::ListModelsRequest& req,
                            v1::ListModelsResponse* resp);
  absl::Status DoGetDataset(const v1::GetDatasetRequest& req,
                            v1::Dataset* resp);
  absl::Status DoListDatasets(const v1::ListDatasetsRequest& req,
                              v1::ListDatasetsResponse* resp);
  // ctx (may be null) gives the deadline and cancellation.
  absl::Status DoPredict(const v1::PredictRequest& req,
                         v1::PredictResponse* resp,
                         grpc::CallbackServerContext* ctx);
  // ctx may be null (no deadline, never cancelled).
  absl::Status DoGetGradients(const v1::GetGradientsRequest& req,
                              v1::GetGradientsResponse* resp,
                              grpc::CallbackServerContext* ctx = nullptr);

  // Reserves an upload slot: kResourceExhausted when max_concurrent_uploads
  // are taken.
  absl::Status ReserveUploadSlot();
  void ReleaseUploadSlot();

  // Reserves a training slot: kResourceExhausted when all are taken,
  // kUnavailable during shutdown.
  absl::Status ReserveTrainingSlot();
  // The reactor that uses a reserved slot (cancelled at once if shutdown
  // began meanwhile).
  void AttachTraining(TrainReactor* r);
  // Gives the slot back and forgets r (r may be null: never attached).
  void ReleaseTrainingSlot(TrainReactor* r);

  const ServiceOptions options_;
  ModelRegistry models_;
  DatasetStore datasets_;
  std::atomic<int> active_uploads_{0};

  std::mutex train_mu_;  // std::mutex so that TSan sees it (registry.h)
  std::condition_variable train_cv_;  // reserved_slots_ decreased
  // Guarded by train_mu_:
  std::set<TrainReactor*> trainings_;
  int reserved_slots_ = 0;
  bool shutting_down_ = false;
};

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_SERVICE_H_
