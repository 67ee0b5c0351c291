#include "server/service.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"

#include "core/readers.h"
#include "core/spec.h"
#include "core/trainer.h"
#include "server/convert.h"
#include "server/ids.h"
#include "server/status_util.h"
#include <sys/resource.h>
#include <sys/syscall.h>

namespace backprop::server {
namespace {

constexpr uint32_t kDefaultPageSize = 100;
// Each checked parameter costs two feedforward passes over the batch.
constexpr uint32_t kMaxCheckSamples = 10'000;

// Runs f and maps the exceptions Armadillo or the allocator may throw (which
// would otherwise take the whole server down) to a status.
template <typename F>
absl::Status Guarded(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "the server ran out of memory for this request");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("internal error: ", e.what()));
  }
}

template <typename F>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, F&& f) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(Guarded(std::forward<F>(f))));
  return reactor;
}

std::string ModelWhat(absl::string_view id) {
  return absl::StrCat("model '", id, "'");
}

void ModelToProto(const ModelEntry& e, const ModelState& s,
                  bool include_parameters, v1::Model* m) {
  m->set_model_id(e.id());
  SpecToProto(e.spec(), m->mutable_spec());
  m->set_epochs_trained(s.epochs_trained);
  m->set_parameter_count(ParameterCount(e.spec()).value_or(0));
  m->set_training(e.training());
  if (s.has_last_metrics) *m->mutable_last_metrics() = s.last_metrics;
  TimeToProto(e.create_time(), m->mutable_create_time());
  TimeToProto(s.update_time, m->mutable_update_time());
  if (include_parameters) NetworkToProto(s.network, m->mutable_parameters());
}

void DatasetToProto(const StoredDataset& d, v1::Dataset* p) {
  p->set_dataset_id(d.id);
  p->set_example_count(d.data.size());
  p->set_feature_count(d.data.feature_count());
  if (d.data.has_labels()) {
    p->set_class_count(d.data.class_count);
  } else {
    p->set_target_size(d.data.targets.n_rows);
  }
  p->set_description(d.description);
  TimeToProto(d.create_time, p->mutable_create_time());
}

uint32_t PageSize(uint32_t requested, uint32_t max) {
  if (requested == 0) return kDefaultPageSize;
  return std::min(requested, max);
}

const std::string& IdOf(const ModelEntry& e) { return e.id(); }
const std::string& IdOf(const StoredDataset& d) { return d.id; }

// One page of a List call on `store` (models_ or datasets_): the items after
// the one req.page_token names, req.page_size of them (0: the default, at
// most max_page_size), each added to resp by add(item, resp); and the token
// of the next page when more follow. token_kind keeps one store's tokens
// from being used on the other.
template <typename Store, typename Request, typename Response, typename Add>
absl::Status ListPage(const Store& store, absl::string_view token_kind,
                      const Request& req, uint32_t max_page_size,
                      Response* resp, Add add) {
  std::string after;
  if (!req.page_token().empty()) {
    absl::StatusOr<std::string> last =
        DecodePageToken(token_kind, req.page_token());
    if (!last.ok()) return last.status();
    after = *std::move(last);
  }
  const uint32_t size = PageSize(req.page_size(), max_page_size);
  auto page = store.List(after, size + 1);
  const bool more = page.size() > size;
  if (more) page.pop_back();
  for (const auto& item : page) add(*item, resp);
  if (more) {
    resp->set_next_page_token(EncodePageToken(token_kind, IdOf(*page.back())));
  }
  return absl::OkStatus();
}

// Get and Delete by id: the id is checked first (kInvalidArgument naming
// `field`), then looked up.
template <typename Store>
auto GetById(const Store& store, absl::string_view field,
             const std::string& id) -> decltype(store.Get(id)) {
  if (absl::Status s = ValidateId(field, id); !s.ok()) return s;
  return store.Get(id);
}

template <typename Store>
absl::Status DeleteById(Store& store, absl::string_view field,
                        const std::string& id) {
  if (absl::Status s = ValidateId(field, id); !s.ok()) return s;
  return store.Delete(id);
}

// A Train that failed validation: ends at once with the status.
class FailedTrainReactor : public grpc::ServerWriteReactor<v1::TrainEvent> {
 public:
  explicit FailedTrainReactor(const absl::Status& s) {
    Finish(ToGrpcStatus(s));
  }
  void OnDone() override { delete this; }
};

}  // namespace

// What a validated Train call will run.
struct TrainJob {
  std::shared_ptr<ModelEntry> entry;
  std::shared_ptr<const Dataset> train;
  std::shared_ptr<const Dataset> validation;  // may be null
  TrainOptions options;
  uint32_t progress_interval_ms = 0;
};

// Training threads run at a lower scheduling priority (niceness +10 on
// Linux, per thread) than gRPC's: a training only gets slower by the share
// of CPU the readers take, while Predict and GetGradients keep their latency
// when every core is busy training. Best effort: a refusal changes nothing
// else.
void LowerTrainingPriority() {
  constexpr int kTrainingNiceness = 10;
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  const int current = getpriority(PRIO_PROCESS, tid);
  setpriority(PRIO_PROCESS, tid, std::max(current, kTrainingNiceness));
}

class TrainReactor : public grpc::ServerWriteReactor<v1::TrainEvent> {
 public:
  TrainReactor(BackpropService* service, TrainJob job)
      : service_(service), job_(std::move(job)) {
    service_->AttachTraining(this);
    worker_ = std::thread([this] { Run(); });
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_in_flight_ = false;
      epoch_in_flight_ = false;
      if (!ok) {
        // The client is gone (cancel, deadline, disconnect): stop training.
        broken_ = true;
        cancel_.store(true);
        pending_epochs_.clear();
        pending_progress_.reset();
      }
      cv_.notify_all();
    }
    Pump();
  }

  void OnCancel() override { Cancel(); }

  void OnDone() override {
    if (worker_.joinable()) {
      if (worker_.get_id() == std::this_thread::get_id()) {
        worker_.detach();
      } else {
        worker_.join();
      }
    }
    delete this;
  }

  // Also called by the service at shutdown (under its train_mu_).
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    cancel_.store(true);
    cv_.notify_all();
  }

 private:
  void Run() {
    LowerTrainingPriority();
    // The server-side cap on a Train call's wall time (--max_train_time):
    // cancels the training like a client cancel would.
    std::thread watchdog([this] {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(
              lock,
              absl::ToChronoMilliseconds(service_->options_.max_train_time),
              [this] { return cancelled_ || ran_; })) {
        timed_out_ = true;
        cancelled_ = true;
        cancel_.store(true);
        cv_.notify_all();
      }
    });
    // Epochs are written to disk on their own thread while the next epoch
    // trains (see OnEpoch).
    std::thread persister([this] { PersistLoop(); });
    absl::Status status = Guarded([this] { return Execute(); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      ran_ = true;
      cv_.notify_all();
    }
    persister.join();  // every completed epoch is on disk (or failed) now
    watchdog.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A failed save stopped the training (through cancel_): report the
      // save, not the cancel it caused.
      if (!persist_error_.ok()) status = persist_error_;
    }
    if (timed_out_ && status.code() == absl::StatusCode::kCancelled) {
      status = absl::DeadlineExceededError(absl::StrCat(
          "training of model '", job_.entry->id(), "' reached this server's "
          "time limit of ", absl::FormatDuration(
              service_->options_.max_train_time),
          " per Train call (--max_train_time); it keeps its last completed "
          "epoch. Train again to continue"));
    }
    // Give the model and the slot back before the client sees the end of
    // the stream, so that it may start the next Train right away.
    job_.entry->EndTraining();
    service_->ReleaseTrainingSlot(this);
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Every EpochMetrics is delivered unless the stream broke.
      cv_.wait(lock, [this] {
        return !write_in_flight_ && (pending_epochs_.empty() || broken_);
      });
      finish_called_ = true;
      pending_progress_.reset();
    }
    Finish(ToGrpcStatus(status));
  }

  absl::Status Execute() {
    std::shared_ptr<const ModelState> start = job_.entry->state();
    base_epochs_ = start->epochs_trained;
    AnyNetwork net = start->network;  // this job's own copy
    start.reset();
    return std::visit([this](auto& n) { return RunTyped(n); }, net);
  }

  template <typename NetT>
  absl::Status RunTyped(NetT& net) {
    using T = typename NetT::Mat::elem_type;
    TrainCallbacks<T> callbacks;
    callbacks.on_epoch = [this](const EpochMetrics& m,
                                const Network<T>& n) -> absl::Status {
      if (!n.AllFinite()) {
        return absl::AbortedError(absl::StrCat(
            "training diverged in epoch ", m.epoch,
            " (a weight became NaN or infinite); the model keeps epoch ",
            base_epochs_ + m.epoch - 1, ". Try a smaller learning_rate"));
      }
      return OnEpoch(m, AnyNetwork(n));
    };
    if (job_.progress_interval_ms > 0) {
      callbacks.on_progress = [this](const BatchProgress& p) {
        v1::TrainEvent ev;
        ProgressToProto(p, ev.mutable_progress());
        OfferProgress(std::move(ev));
      };
    }
    absl::Status s = backprop::Train<T>(net, *job_.train, job_.validation.get(),
                                        job_.options, callbacks, &cancel_);
    if (s.code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(absl::StrCat(
          s.message(), "; model '", job_.entry->id(),
          "' keeps its last completed epoch. Try a smaller learning_rate"));
    }
    if (s.code() == absl::StatusCode::kCancelled) {
      return absl::CancelledError(
          absl::StrCat("training of model '", job_.entry->id(),
                       "' was cancelled; it keeps its last completed epoch"));
    }
    return s;
  }

  // Hands the completed epoch to PersistLoop and returns, so the next epoch
  // trains while this one is written and fsync'ed (milliseconds per epoch
  // that would otherwise add to every epoch's time). At most one epoch waits
  // for the writer: a slow disk or client holds training back by one epoch.
  absl::Status OnEpoch(const EpochMetrics& m, AnyNetwork net) {
    auto state = std::make_shared<ModelState>(std::move(net));
    state->epochs_trained = base_epochs_ + m.epoch;
    state->has_last_metrics = true;
    MetricsToProto(m, state->epochs_trained, &state->last_metrics);
    state->update_time = absl::Now();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] {
        return to_persist_ == nullptr || !persist_error_.ok();
      });
      if (!persist_error_.ok()) return persist_error_;
      to_persist_ = std::move(state);
      cv_.notify_all();
    }
    if (service_->options_.after_epoch_for_test) {
      // Tests hold the training after an epoch that is already published.
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] {
          return (to_persist_ == nullptr && !persisting_) ||
                 !persist_error_.ok();
        });
        if (!persist_error_.ok()) return persist_error_;
      }
      service_->options_.after_epoch_for_test(
          m.epoch, [this](absl::Duration timeout) {
            std::unique_lock<std::mutex> lock(mu_);
            return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                                [this] { return cancelled_; });
          });
    }
    return absl::OkStatus();
  }

  // The writer: saves each completed epoch, then (only then) lets readers
  // see it and queues its EpochMetrics, so a client never hears of an epoch
  // that a crash could lose. A failed save stops the training; the model
  // keeps the last epoch that was saved.
  void PersistLoop() {
    for (;;) {
      std::shared_ptr<ModelState> state;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock,
                 [this] { return to_persist_ != nullptr || ran_; });
        if (to_persist_ == nullptr) return;  // training over, all saved
        state = std::move(to_persist_);
        persisting_ = true;
        cv_.notify_all();
      }
      absl::Status s = service_->models_.Persist(*job_.entry, *state);
      if (s.ok()) {
        v1::TrainEvent ev;
        *ev.mutable_epoch() = state->last_metrics;
        job_.entry->Publish(std::move(state));
        QueueEpoch(std::move(ev));
      }
      std::lock_guard<std::mutex> lock(mu_);
      persisting_ = false;
      cv_.notify_all();
      if (!s.ok()) {
        persist_error_ = std::move(s);
        to_persist_.reset();
        cancel_.store(true);
        return;
      }
    }
  }

  void QueueEpoch(v1::TrainEvent ev) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Wait for the previous epoch's event: never more than one pending.
      cv_.wait(lock, [this] {
        return (pending_epochs_.empty() && !epoch_in_flight_) || broken_ ||
               cancelled_;
      });
      if (broken_) return;
      pending_progress_.reset();  // progress of the epoch that just ended
      pending_epochs_.push_back(std::move(ev));
    }
    Pump();
  }

  void OfferProgress(v1::TrainEvent ev) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (broken_ || finish_called_) return;
      pending_progress_ = std::move(ev);  // keep only the latest
    }
    Pump();
  }

  // Starts the next write if none is in flight.
  void Pump() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (write_in_flight_ || broken_ || finish_called_) return;
      if (!pending_epochs_.empty()) {
        in_flight_ = std::move(pending_epochs_.front());
        pending_epochs_.pop_front();
        epoch_in_flight_ = true;
      } else if (pending_progress_.has_value()) {
        in_flight_ = std::move(*pending_progress_);
        pending_progress_.reset();
      } else {
        return;
      }
      write_in_flight_ = true;
    }
    // in_flight_ is not touched again until OnWriteDone.
    StartWrite(&in_flight_);
  }

  BackpropService* const service_;
  const TrainJob job_;
  uint64_t base_epochs_ = 0;  // worker thread only
  std::atomic<bool> cancel_{false};

  std::mutex mu_;  // std::mutex so that TSan sees it (see registry.h)
  std::condition_variable cv_;  // any change of the fields below
  // Guarded by mu_:
  bool cancelled_ = false;
  bool broken_ = false;
  bool write_in_flight_ = false;
  bool epoch_in_flight_ = false;
  bool finish_called_ = false;
  bool ran_ = false;        // Execute returned (stops the watchdog)
  bool timed_out_ = false;  // the watchdog cancelled: max_train_time
  std::deque<v1::TrainEvent> pending_epochs_;
  std::optional<v1::TrainEvent> pending_progress_;
  v1::TrainEvent in_flight_;  // owned by the write in flight
  std::shared_ptr<ModelState> to_persist_;  // completed, not yet on disk
  bool persisting_ = false;                 // PersistLoop is saving one
  absl::Status persist_error_;              // the first failed save

  std::thread worker_;  // last: everything it touches exists before it runs
};

class UploadReactor : public grpc::ServerReadReactor<v1::UploadDatasetRequest> {
 public:
  UploadReactor(BackpropService* service, grpc::CallbackServerContext* ctx,
                v1::Dataset* response)
      : service_(service), ctx_(ctx), response_(response) {
    if (absl::Status s = service_->ReserveUploadSlot(); !s.ok()) {
      Finish(ToGrpcStatus(s));  // before reading a single message
      return;
    }
    holds_slot_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      absl::Status s = Guarded([this] { return HandleMessage(); });
      if (s.ok()) {
        StartRead(&request_);
      } else {
        builder_.reset();  // discard the partial data now
        End(s);
      }
      return;
    }
    // The client half-closed (or the call died): commit or give up.
    absl::Status s = Guarded([this] { return Commit(); });
    builder_.reset();
    End(s);
  }

  void OnDone() override {
    ReleaseSlot();  // only if the call ended without End
    delete this;
  }

 private:
  // Gives the slot back BEFORE the client can see the status, so that it
  // may start its next upload at once.
  void End(const absl::Status& s) {
    ReleaseSlot();
    Finish(ToGrpcStatus(s));
  }

  void ReleaseSlot() {
    if (holds_slot_) service_->ReleaseUploadSlot();
    holds_slot_ = false;
  }

  absl::Status HandleMessage() {
    switch (request_.part_case()) {
      case v1::UploadDatasetRequest::kHeader: {
        if (builder_.has_value()) {
          return absl::InvalidArgumentError(
              "a second header arrived; send exactly one header, first");
        }
        const v1::DatasetHeader& h = request_.header();
        if (h.dataset_id().empty()) {
          do {
            id_ = NewId("dataset");
          } while (service_->datasets_.Contains(id_));
        } else {
          if (absl::Status s = ValidateId("header.dataset_id", h.dataset_id());
              !s.ok()) {
            return s;
          }
          id_ = h.dataset_id();
          if (service_->datasets_.Contains(id_)) {
            return absl::AlreadyExistsError(
                absl::StrCat("dataset '", id_,
                             "' already exists; pick another id or delete it"));
          }
        }
        UploadLimits limits;
        limits.max_bytes = service_->options_.max_dataset_bytes;
        limits.max_chunk_bytes = service_->options_.max_upload_chunk_bytes;
        limits.max_chunks = service_->options_.max_upload_chunks;
        absl::StatusOr<DatasetBuilder> b = DatasetBuilder::Create(h, limits);
        if (!b.ok()) return b.status();
        builder_.emplace(*std::move(b));
        description_ = h.description();
        return absl::OkStatus();
      }
      case v1::UploadDatasetRequest::kChunk:
        if (!builder_.has_value()) {
          return absl::InvalidArgumentError(
              "the first message of an upload must be the header");
        }
        return builder_->Append(request_.chunk());
      default:
        return absl::InvalidArgumentError(
            "an upload message must set header or chunk");
    }
  }

  absl::Status Commit() {
    if (ctx_->IsCancelled()) {
      return absl::CancelledError("the upload was cancelled; nothing kept");
    }
    if (!builder_.has_value()) {
      return absl::InvalidArgumentError(
          "the upload ended before its header; send the header first");
    }
    absl::StatusOr<Dataset> d = builder_->Build();
    if (!d.ok()) return d.status();
    if (absl::Status s = d->Validate(); !s.ok()) return s;
    auto stored = std::make_shared<StoredDataset>();
    stored->id = id_;
    stored->data = *std::move(d);
    stored->description = description_;
    stored->create_time = absl::Now();
    // A cancel that raced with the end of the stream: keep nothing.
    if (ctx_->IsCancelled()) {
      return absl::CancelledError("the upload was cancelled; nothing kept");
    }
    if (absl::Status s = service_->datasets_.Add(stored); !s.ok()) return s;
    DatasetToProto(*stored, response_);
    return absl::OkStatus();
  }

  BackpropService* const service_;
  grpc::CallbackServerContext* const ctx_;
  v1::Dataset* const response_;
  v1::UploadDatasetRequest request_;
  std::optional<DatasetBuilder> builder_;
  std::string id_;
  std::string description_;
  bool holds_slot_ = false;  // one of max_concurrent_uploads
};

BackpropService::BackpropService(ServiceOptions options)
    : options_(std::move(options)),
      models_(options_.model_dir, options_.max_models, options_.max_parameters),
      datasets_(options_.data_dir, options_.max_datasets,
                options_.max_dataset_bytes) {}

BackpropService::~BackpropService() = default;

void BackpropService::LoadAll(
    const std::function<void(const std::string&)>& report) {
  models_.LoadAll(report);
  datasets_.LoadAll(report);
}

absl::Status BackpropService::PreloadFashionMnist(const std::string& dir) {
  for (bool train : {true, false}) {
    absl::StatusOr<Dataset> d = ReadFashionMnist(dir, train);
    if (!d.ok()) return d.status();
    auto stored = std::make_shared<StoredDataset>();
    stored->id = train ? "fashion-mnist-train" : "fashion-mnist-test";
    stored->data = *std::move(d);
    stored->description =
        absl::StrCat("Fashion-MNIST ", train ? "training" : "test",
                     " set from ", dir, " (preloaded, read-only)");
    stored->create_time = absl::Now();
    stored->read_only = true;
    if (absl::Status s = datasets_.Add(std::move(stored)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void BackpropService::BeginShutdown() {
  std::lock_guard<std::mutex> lock(train_mu_);
  shutting_down_ = true;
  for (TrainReactor* r : trainings_) r->Cancel();
}

bool BackpropService::WaitForTrainingsToEnd(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(train_mu_);
  return train_cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                            [this] { return reserved_slots_ == 0; });
}

absl::Status BackpropService::ReserveTrainingSlot() {
  std::lock_guard<std::mutex> lock(train_mu_);
  if (shutting_down_) {
    return absl::UnavailableError("the server is shutting down");
  }
  if (reserved_slots_ >= options_.max_concurrent_trainings) {
    return absl::ResourceExhaustedError(
        absl::StrCat(reserved_slots_,
                     " trainings are running, this server's limit "
                     "(--max_concurrent_trainings); retry when one ends"));
  }
  ++reserved_slots_;
  return absl::OkStatus();
}

absl::Status BackpropService::ReserveUploadSlot() {
  int n = active_uploads_.load();
  do {
    if (n >= options_.max_concurrent_uploads) {
      return absl::ResourceExhaustedError(absl::StrCat(
          n, " uploads are in progress, this server's limit "
          "(--max_concurrent_uploads); retry when one ends"));
    }
  } while (!active_uploads_.compare_exchange_weak(n, n + 1));
  return absl::OkStatus();
}

void BackpropService::ReleaseUploadSlot() { active_uploads_.fetch_sub(1); }

void BackpropService::AttachTraining(TrainReactor* r) {
  std::lock_guard<std::mutex> lock(train_mu_);
  trainings_.insert(r);
  if (shutting_down_) r->Cancel();
}

void BackpropService::ReleaseTrainingSlot(TrainReactor* r) {
  std::lock_guard<std::mutex> lock(train_mu_);
  if (r != nullptr) trainings_.erase(r);
  --reserved_slots_;
  train_cv_.notify_all();
}

grpc::ServerUnaryReactor* BackpropService::CreateModel(
    grpc::CallbackServerContext* ctx, const v1::CreateModelRequest* req,
    v1::Model* resp) {
  return Unary(ctx, [&] { return DoCreateModel(*req, resp); });
}

absl::Status BackpropService::DoCreateModel(const v1::CreateModelRequest& req,
                                            v1::Model* resp) {
  std::string id = req.model_id();
  if (id.empty()) {
    do {
      id = NewId("model");
    } while (models_.Contains(id));
  } else if (absl::Status s = ValidateId("model_id", id); !s.ok()) {
    return s;
  }
  if (!req.has_spec()) {
    return absl::InvalidArgumentError(
        "spec is missing; give at least layer_sizes, e.g. [784, 30, 10]");
  }
  if (absl::Status s = CheckSpecSize(req.spec(), options_.max_layers,
                                     options_.max_layer_width);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<ModelSpec> spec = SpecFromProto(req.spec());
  if (!spec.ok()) return spec.status();
  if (absl::Status s = ValidateSpec(*spec, options_.max_parameters); !s.ok()) {
    if (s.code() == absl::StatusCode::kResourceExhausted) {
      return absl::ResourceExhaustedError(
          absl::StrCat(s.message(), " (--max_parameters); use fewer or "
                                    "narrower layers"));
    }
    return s;
  }
  absl::StatusOr<AnyNetwork> net =
      req.parameters().empty() ? CreateAnyNetwork(*spec)
                               : NetworkFromProto(*spec, req.parameters());
  if (!net.ok()) return net.status();
  auto state = std::make_shared<ModelState>(*std::move(net));
  state->update_time = absl::Now();
  absl::StatusOr<std::shared_ptr<ModelEntry>> entry = models_.Create(id, state);
  if (!entry.ok()) return entry.status();
  ModelToProto(**entry, *state, /*include_parameters=*/false, resp);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* BackpropService::GetModel(
    grpc::CallbackServerContext* ctx, const v1::GetModelRequest* req,
    v1::Model* resp) {
  return Unary(ctx, [&] { return DoGetModel(*req, resp); });
}

absl::Status BackpropService::DoGetModel(const v1::GetModelRequest& req,
                                         v1::Model* resp) {
  absl::StatusOr<std::shared_ptr<ModelEntry>> entry =
      GetById(models_, "model_id", req.model_id());
  if (!entry.ok()) return entry.status();
  ModelToProto(**entry, *(*entry)->state(), req.include_parameters(), resp);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* BackpropService::ListModels(
    grpc::CallbackServerContext* ctx, const v1::ListModelsRequest* req,
    v1::ListModelsResponse* resp) {
  return Unary(ctx, [&] { return DoListModels(*req, resp); });
}

absl::Status BackpropService::DoListModels(const v1::ListModelsRequest& req,
                                           v1::ListModelsResponse* resp) {
  return ListPage(models_, "m", req, options_.max_page_size, resp,
                  [](const ModelEntry& e, v1::ListModelsResponse* r) {
                    ModelToProto(e, *e.state(), /*include_parameters=*/false,
                                 r->add_models());
                  });
}

grpc::ServerUnaryReactor* BackpropService::DeleteModel(
    grpc::CallbackServerContext* ctx, const v1::DeleteModelRequest* req,
    v1::DeleteModelResponse*) {
  return Unary(ctx,
               [&] { return DeleteById(models_, "model_id", req->model_id()); });
}

grpc::ServerReadReactor<v1::UploadDatasetRequest>*
BackpropService::UploadDataset(grpc::CallbackServerContext* ctx,
                               v1::Dataset* resp) {
  return new UploadReactor(this, ctx, resp);
}

grpc::ServerUnaryReactor* BackpropService::GetDataset(
    grpc::CallbackServerContext* ctx, const v1::GetDatasetRequest* req,
    v1::Dataset* resp) {
  return Unary(ctx, [&] { return DoGetDataset(*req, resp); });
}

absl::Status BackpropService::DoGetDataset(const v1::GetDatasetRequest& req,
                                           v1::Dataset* resp) {
  absl::StatusOr<std::shared_ptr<const StoredDataset>> d =
      GetById(datasets_, "dataset_id", req.dataset_id());
  if (!d.ok()) return d.status();
  DatasetToProto(**d, resp);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* BackpropService::ListDatasets(
    grpc::CallbackServerContext* ctx, const v1::ListDatasetsRequest* req,
    v1::ListDatasetsResponse* resp) {
  return Unary(ctx, [&] { return DoListDatasets(*req, resp); });
}

absl::Status BackpropService::DoListDatasets(const v1::ListDatasetsRequest& req,
                                             v1::ListDatasetsResponse* resp) {
  return ListPage(datasets_, "d", req, options_.max_page_size, resp,
                  [](const StoredDataset& d, v1::ListDatasetsResponse* r) {
                    DatasetToProto(d, r->add_datasets());
                  });
}

grpc::ServerUnaryReactor* BackpropService::DeleteDataset(
    grpc::CallbackServerContext* ctx, const v1::DeleteDatasetRequest* req,
    v1::DeleteDatasetResponse*) {
  return Unary(ctx, [&] {
    return DeleteById(datasets_, "dataset_id", req->dataset_id());
  });
}

namespace {

// The training or validation data of a Train call, checked against the
// model's widths. `which` is "" for training data, "validation_" else.
absl::StatusOr<std::shared_ptr<const Dataset>> ResolveData(
    const DatasetStore& store, const ModelEntry& model, absl::string_view which,
    bool has_id, const std::string& id, bool has_examples,
    const v1::Examples& examples, uint64_t max_rows) {
  const ModelSpec& spec = model.spec();
  const uint32_t n_in = spec.layer_sizes.front();
  const uint32_t n_out = spec.layer_sizes.back();
  if (has_id) {
    const std::string field = absl::StrCat(which, "dataset_id");
    if (absl::Status s = ValidateId(field, id); !s.ok()) return s;
    absl::StatusOr<std::shared_ptr<const StoredDataset>> d = store.Get(id);
    if (!d.ok()) return d.status();
    const Dataset& data = (*d)->data;
    if (data.feature_count() != n_in) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset '", id, "' has ", data.feature_count(), " features but ",
          ModelWhat(model.id()), " expects ", n_in, " (layer_sizes[0])"));
    }
    if (data.output_size() != n_out) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset '", id, "' has ",
          data.has_labels() ? absl::StrCat(data.class_count, " classes")
                            : absl::StrCat(data.output_size(), "-wide targets"),
          " but ", ModelWhat(model.id()), " has ", n_out,
          " outputs (the last layer size)"));
    }
    // Aliasing: the dataset lives as long as the stored entry.
    return std::shared_ptr<const Dataset>(*d, &(*d)->data);
  }
  if (has_examples) {
    absl::StatusOr<Dataset> d =
        DatasetFromExamples(absl::StrCat(which, "examples"), examples, n_in,
                            n_out, ModelWhat(model.id()), max_rows);
    if (!d.ok()) return d.status();
    return std::shared_ptr<const Dataset>(
        std::make_shared<Dataset>(*std::move(d)));
  }
  return std::shared_ptr<const Dataset>();
}

absl::StatusOr<TrainJob> PrepareTrain(const v1::TrainRequest& req,
                                      const ModelRegistry& models,
                                      const DatasetStore& datasets,
                                      uint64_t max_rows) {
  if (absl::Status s = ValidateId("model_id", req.model_id()); !s.ok()) {
    return s;
  }
  TrainJob job;
  absl::StatusOr<std::shared_ptr<ModelEntry>> entry =
      models.Get(req.model_id());
  if (!entry.ok()) return entry.status();
  job.entry = *std::move(entry);
  job.options = TrainOptionsFromProto(req);
  job.progress_interval_ms = req.progress_interval_ms();
  if (absl::Status s = ValidateTrainOptions(job.options); !s.ok()) return s;
  if (req.data_case() == v1::TrainRequest::DATA_NOT_SET) {
    return absl::InvalidArgumentError(
        "no training data: set dataset_id or examples");
  }
  absl::StatusOr<std::shared_ptr<const Dataset>> train = ResolveData(
      datasets, *job.entry, "", req.has_dataset_id(), req.dataset_id(),
      req.has_examples(), req.examples(), max_rows);
  if (!train.ok()) return train.status();
  job.train = *std::move(train);
  absl::StatusOr<std::shared_ptr<const Dataset>> validation = ResolveData(
      datasets, *job.entry, "validation_", req.has_validation_dataset_id(),
      req.validation_dataset_id(), req.has_validation_examples(),
      req.validation_examples(), max_rows);
  if (!validation.ok()) return validation.status();
  job.validation = *std::move(validation);
  return job;
}

}  // namespace

grpc::ServerWriteReactor<v1::TrainEvent>* BackpropService::Train(
    grpc::CallbackServerContext*, const v1::TrainRequest* req) {
  std::optional<TrainJob> job;
  absl::Status status = Guarded([&]() -> absl::Status {
    absl::StatusOr<TrainJob> j =
        PrepareTrain(*req, models_, datasets_, options_.max_rows_per_call);
    if (!j.ok()) return j.status();
    job.emplace(*std::move(j));
    return absl::OkStatus();
  });
  if (!status.ok()) return new FailedTrainReactor(status);
  // Busy model first (FAILED_PRECONDITION), then the server-wide limit.
  if (absl::Status s = job->entry->TryStartTraining(); !s.ok()) {
    return new FailedTrainReactor(s);
  }
  if (absl::Status s = ReserveTrainingSlot(); !s.ok()) {
    job->entry->EndTraining();
    return new FailedTrainReactor(s);
  }
  return new TrainReactor(this, *std::move(job));
}

grpc::ServerUnaryReactor* BackpropService::Predict(
    grpc::CallbackServerContext* ctx, const v1::PredictRequest* req,
    v1::PredictResponse* resp) {
  return Unary(ctx, [&] { return DoPredict(*req, resp, ctx); });
}

namespace {

// When a call that started at `start` must give up: after the server's
// budget for it, or at the client's deadline if that comes first.
absl::Time BudgetEnd(absl::Time start, absl::Duration budget,
                     const grpc::CallbackServerContext* ctx) {
  const absl::Time end = start + budget;
  if (ctx == nullptr) return end;
  return std::min(end, absl::FromChrono(ctx->deadline()));
}

// A batch of up to this many rows is one Feedforward call; a bigger one is
// split into near-equal parts of at most this many rows, and the time budget
// is checked between parts.
constexpr arma::uword kPredictPartRows = 1024;

// Feedforward of x (features x examples) in parts, giving up between parts
// once `budget_end` has passed (kDeadlineExceeded) or `cancelled()`.
template <typename NetT, typename MatT>
absl::StatusOr<MatT> FeedforwardWithin(const NetT& net, const MatT& x,
                                       absl::Time start, absl::Time budget_end,
                                       absl::Duration budget,
                                       const std::function<bool()>& cancelled) {
  const arma::uword n = x.n_cols;
  if (n <= kPredictPartRows) return net.Feedforward(x);
  const arma::uword parts = (n + kPredictPartRows - 1) / kPredictPartRows;
  MatT out;
  arma::uword done = 0;
  for (arma::uword p = 0; p < parts; ++p) {
    const absl::Time now = absl::Now();
    if (now > budget_end) {
      return absl::DeadlineExceededError(absl::StrCat(
          "Predict stopped after ", done, " of ", n, " rows and ",
          absl::FormatDuration(now - start), ": this server gives a Predict "
          "at most ", absl::FormatDuration(budget),
          " (--predict_budget) or the call's deadline if sooner; send fewer "
          "rows per call"));
    }
    if (cancelled()) {
      return absl::CancelledError("the Predict call was cancelled");
    }
    const arma::uword end = n * (p + 1) / parts;
    absl::StatusOr<MatT> a = net.Feedforward(MatT(x.cols(done, end - 1)));
    if (!a.ok()) return a.status();
    if (out.n_elem == 0) out.set_size(a->n_rows, n);
    out.cols(done, end - 1) = *a;
    done = end;
  }
  return out;
}

}  // namespace

absl::Status BackpropService::DoPredict(const v1::PredictRequest& req,
                                        v1::PredictResponse* resp,
                                        grpc::CallbackServerContext* ctx) {
  const absl::Time start = absl::Now();
  const absl::Time budget_end = BudgetEnd(start, options_.predict_budget, ctx);
  const std::function<bool()> cancelled = [ctx] {
    return ctx != nullptr && ctx->IsCancelled();
  };
  if (absl::Status s = ValidateId("model_id", req.model_id()); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<ModelEntry>> entry =
      models_.Get(req.model_id());
  if (!entry.ok()) return entry.status();
  const std::shared_ptr<const ModelState> state = (*entry)->state();
  return std::visit(
      [&](const auto& net) -> absl::Status {
        using T = typename std::decay_t<decltype(net)>::Mat::elem_type;
        // Aliases the request's values when their type is the model's (no
        // copy of up to --max_rows_per_call rows); req outlives x.
        absl::StatusOr<arma::Mat<T>> x = ExamplesViewFromProto<T>(
            "inputs", req.inputs(), net.input_size(),
            [&] {
              return absl::StrCat(ModelWhat(req.model_id()), " expects ",
                                  net.input_size(), " (layer_sizes[0])");
            },
            options_.max_rows_per_call);
        if (!x.ok()) return x.status();
        absl::StatusOr<arma::Mat<T>> a = FeedforwardWithin(
            net, *x, start, budget_end, options_.predict_budget, cancelled);
        if (!a.ok()) return a.status();
        ExamplesToProto<T>(*a, resp->mutable_outputs());
        const std::vector<uint32_t> labels = ArgmaxColumns<T>(*a);
        resp->mutable_labels()->Add(labels.begin(), labels.end());
        resp->set_epochs_trained(state->epochs_trained);
        return absl::OkStatus();
      },
      state->network);
}

grpc::ServerUnaryReactor* BackpropService::GetGradients(
    grpc::CallbackServerContext* ctx, const v1::GetGradientsRequest* req,
    v1::GetGradientsResponse* resp) {
  return Unary(ctx, [&] { return DoGetGradients(*req, resp, ctx); });
}

absl::Status BackpropService::DoGetGradients(const v1::GetGradientsRequest& req,
                                             v1::GetGradientsResponse* resp,
                                             grpc::CallbackServerContext* ctx) {
  const absl::Time start = absl::Now();
  const absl::Time budget_end =
      BudgetEnd(start, options_.gradients_budget, ctx);
  if (absl::Status s = ValidateId("model_id", req.model_id()); !s.ok()) {
    return s;
  }
  if (!std::isfinite(req.check_epsilon()) || req.check_epsilon() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("check_epsilon = ", req.check_epsilon(),
                     " must be finite and >= 0 (0 = no check)"));
  }
  if (req.check_samples() > kMaxCheckSamples) {
    return absl::ResourceExhaustedError(
        absl::StrCat("check_samples = ", req.check_samples(),
                     "; this server checks at most ", kMaxCheckSamples));
  }
  absl::StatusOr<std::shared_ptr<ModelEntry>> entry =
      models_.Get(req.model_id());
  if (!entry.ok()) return entry.status();
  const std::shared_ptr<const ModelState> state = (*entry)->state();
  return std::visit(
      [&](const auto& net) -> absl::Status {
        using T = typename std::decay_t<decltype(net)>::Mat::elem_type;
        const std::string what = ModelWhat(req.model_id());
        absl::StatusOr<arma::Mat<T>> x = ExamplesFromProto<T>(
            "examples.inputs", req.examples().inputs(), net.input_size(),
            absl::StrCat(what, " expects ", net.input_size(),
                         " (layer_sizes[0])"),
            options_.max_rows_per_call);
        if (!x.ok()) return x.status();
        absl::StatusOr<arma::Mat<T>> y = TargetsFromProto<T>(
            "examples", req.examples(), x->n_cols, net.output_size(),
            absl::StrCat(what, " has ", net.output_size(), " outputs"));
        if (!y.ok()) return y.status();
        absl::StatusOr<Gradients<T>> g = net.Backprop(*x, *y);
        if (!g.ok()) return g.status();
        resp->set_cost(g->cost);
        GradientsToProto<T>(*g, resp->mutable_gradients());
        if (req.check_epsilon() > 0) {
          // Asked before each checked parameter.
          const auto within_budget = [&]() -> absl::Status {
            if (ctx != nullptr && ctx->IsCancelled()) {
              return absl::CancelledError("the GetGradients call was cancelled");
            }
            const absl::Time now = absl::Now();
            if (now <= budget_end) return absl::OkStatus();
            return absl::DeadlineExceededError(absl::StrCat(
                "the gradient check stopped after ",
                absl::FormatDuration(now - start), ": this server gives "
                "GetGradients at most ",
                absl::FormatDuration(options_.gradients_budget),
                " (--gradients_budget) or the call's deadline if sooner; ask "
                "for fewer check_samples or send fewer examples"));
          };
          absl::StatusOr<GradientCheckResult> c =
              net.CheckGradients(*x, *y, req.check_epsilon(),
                                 req.check_samples(), within_budget);
          if (!c.ok()) return c.status();
          v1::GradientCheck* pc = resp->mutable_check();
          pc->set_parameters_checked(c->parameters_checked);
          pc->set_max_abs_error(c->max_abs_error);
          pc->set_max_rel_error(c->max_rel_error);
        }
        return absl::OkStatus();
      },
      state->network);
}

}  // namespace backprop::server
