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
#include "server/registry.h"

namespace backprop::server {

struct ServiceOptions {
  std::string model_dir;  // empty: models are not persisted
  std::string data_dir;   // empty: datasets are not persisted
  int max_concurrent_trainings = 2;
  uint64_t max_parameters = 10'000'000;
  uint64_t max_dataset_bytes = uint64_t{1024} << 20;
  uint64_t max_models = 1000;
  uint64_t max_datasets = 1000;
  uint64_t max_rows_per_call = 100'000;  // Predict / GetGradients / inline
  uint32_t max_page_size = 1000;

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
  absl::Status DoPredict(const v1::PredictRequest& req,
                         v1::PredictResponse* resp);
  absl::Status DoGetGradients(const v1::GetGradientsRequest& req,
                              v1::GetGradientsResponse* resp);

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

  std::mutex train_mu_;  // std::mutex so that TSan sees it (registry.h)
  std::condition_variable train_cv_;  // reserved_slots_ decreased
  // Guarded by train_mu_:
  std::set<TrainReactor*> trainings_;
  int reserved_slots_ = 0;
  bool shutting_down_ = false;
};

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_SERVICE_H_
