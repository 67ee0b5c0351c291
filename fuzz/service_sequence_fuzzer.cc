// A sequence of operations on ONE service, decoded from the input, with the
// service's invariants checked after every operation (RELIABILITY.md F2):
//   - the listed models are exactly those created minus those deleted (and
//     the same for data sets), over paged lists;
//   - every listed model answers GetModel, with the epochs_trained this
//     harness counted from the Train events, and not training at rest; its
//     file decodes with core's DecodeModel and holds the same epochs_trained;
//     every data set's file decodes with DecodeDataset to the same size;
//   - the folders hold exactly one file per model and data set (no temp
//     file left at rest), and a restart on the same folders loads all of
//     them without a single report.
// A broken invariant aborts (a crash for libFuzzer, a failed test in replay).
//
// Input: byte 0 = the number of operations k (at most kMaxOps), bytes
// 1..k = one operation code each, the rest = the arguments the operations
// read in turn (ids from small pools, layer sizes, values, ...). Arguments
// read past the end are zeros, and a zero argument always picks the common,
// valid choice (id "m0"/"d0", spec [1, 1], one example, ...), so a seed is
// just a list of operation codes, and every input decodes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "backprop/v1/backprop.pb.h"
#include "core/model_file.h"
#include "fuzz/service_fixture.h"

namespace backprop::fuzz {
namespace {

constexpr size_t kMaxOps = 24;
// A restart costs ~6 ms and a Train ~2 ms (threads, a stream, a save per
// epoch); beyond these counts per input, those operations list instead, so
// that one input stays around 10 ms at most.
constexpr int kMaxRestarts = 2;
constexpr int kMaxTrains = 4;

class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t Below(uint32_t n) { return Byte() % n; }
  bool Bit() { return (Byte() & 1) != 0; }
  // Small values (0 for 0); a few bytes stand for the extremes a client may
  // send.
  double Value() { return ValueOf(Byte()); }
  static double ValueOf(uint8_t b) {
    switch (b) {
      case 255: return std::numeric_limits<double>::quiet_NaN();
      case 254: return std::numeric_limits<double>::infinity();
      case 253: return 1e300;
      case 252: return -1e300;
      case 251: return 1e-310;  // subnormal
      default: return static_cast<int8_t>(b) / 16.0;
    }
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

struct ModelInfo {
  uint64_t epochs = 0;
  std::vector<uint32_t> sizes;
};

class Sequence {
 public:
  Sequence(ServiceFixture& f, Bytes& in) : f_(f), in_(in) {}

  void Run(const std::vector<uint8_t>& ops) {
    for (uint8_t op : ops) {
      switch (op % 11) {
        case 0: Create(/*with_parameters=*/false); break;
        case 1: Create(/*with_parameters=*/true); break;
        case 2: Clone(); break;
        case 3: DeleteModel(); break;
        case 4: ++trains_ <= kMaxTrains ? Train() : GetAndList(); break;
        case 5: Predict(); break;
        case 6: Gradients(); break;
        case 7: Upload(); break;
        case 8: DeleteDataset(); break;
        case 9: ++restarts_ <= kMaxRestarts ? Restart() : GetAndList(); break;
        default: GetAndList(); break;
      }
      CheckInvariants();
    }
  }

 private:
  // An id of the pool, "" (create: the server picks one), an existing id,
  // or an invalid one.
  std::string PickId(const char* prefix, bool for_create,
                     const std::set<std::string>& existing) {
    const uint32_t k = in_.Below(8);
    if (k < 5) return prefix + std::to_string(k);
    if (k == 5 && for_create) return "";
    if (k == 7) return in_.Bit() ? "../x" : "Bad";
    if (existing.empty()) return std::string(prefix) + "9";
    auto it = existing.begin();
    std::advance(it, in_.Below(static_cast<uint32_t>(existing.size())));
    return *it;
  }
  std::string PickModel(bool for_create) {
    std::set<std::string> ids;
    for (const auto& [id, info] : models_) ids.insert(id);
    return PickId("m", for_create, ids);
  }
  std::string PickDataset(bool for_create) {
    std::set<std::string> ids;
    for (const auto& [id, n] : datasets_) ids.insert(id);
    return PickId("d", for_create, ids);
  }

  // Widths of a known model, or made up (requests that must fail).
  std::vector<uint32_t> SizesOf(const std::string& id) {
    auto it = models_.find(id);
    if (it != models_.end()) return it->second.sizes;
    return {1 + in_.Below(4), 1 + in_.Below(4)};
  }

  uint32_t Perturb(uint32_t n) {
    switch (in_.Below(16)) {
      case 14: return n + 1;
      case 15: return n == 0 ? 0 : n - 1;
      default: return n;
    }
  }

  void FillMatrix(uint64_t rows, uint64_t cols, v1::Matrix* m) {
    m->set_rows(rows);
    m->set_cols(cols);
    const bool f32 = in_.Below(4) == 3;
    const uint64_t n = Perturb(static_cast<uint32_t>(rows * cols));
    for (uint64_t i = 0; i < n; ++i) {
      if (f32) {
        m->add_float_values(static_cast<float>(in_.Value()));
      } else {
        m->add_double_values(in_.Value());
      }
    }
  }

  // rows examples for widths n_in -> n_out: labels or target values.
  void FillExamples(uint32_t rows, uint32_t n_in, uint32_t n_out,
                    v1::Examples* e) {
    FillMatrix(rows, Perturb(n_in), e->mutable_inputs());
    if (!in_.Bit()) {
      const uint32_t n = Perturb(rows);
      for (uint32_t i = 0; i < n; ++i) {
        e->mutable_labels()->add_values(in_.Below(n_out + 1));
      }
    } else {
      FillMatrix(rows, Perturb(n_out), e->mutable_target_values());
    }
  }

  void Create(bool with_parameters) {
    v1::CreateModelRequest req;
    req.set_model_id(PickModel(/*for_create=*/true));
    if (in_.Below(16) != 15) {
      v1::ModelSpec* spec = req.mutable_spec();
      const uint32_t layers = 2 + in_.Below(3);
      for (uint32_t l = 0; l < layers; ++l) {
        uint32_t n = 1 + in_.Below(5);
        if (in_.Below(32) == 31) n = in_.Bit() ? 0 : 5000;
        spec->add_layer_sizes(n);
      }
      spec->set_hidden_activation(static_cast<v1::Activation>(in_.Below(7)));
      spec->set_output_activation(static_cast<v1::Activation>(in_.Below(7)));
      spec->set_cost(static_cast<v1::Cost>(in_.Below(4)));
      spec->set_initializer(static_cast<v1::Initializer>(in_.Below(4)));
      spec->set_dtype(static_cast<v1::DType>(in_.Below(4)));
      spec->set_seed(in_.Byte());
      if (with_parameters) {
        for (uint32_t l = 1; l < layers; ++l) {
          const uint32_t rows = Perturb(spec->layer_sizes(l));
          const uint32_t cols = spec->layer_sizes(l - 1);
          if (uint64_t{rows} * cols > 64) break;  // sizes were made huge
          v1::LayerParameters* p = req.add_parameters();
          FillMatrix(rows, cols, p->mutable_weights());
          FillMatrix(rows, 1, p->mutable_biases());
        }
      }
    }
    SendCreate(req);
  }

  // CreateModel with the parameters of an existing model, which must then
  // hold exactly those parameters.
  void Clone() {
    v1::GetModelRequest get;
    get.set_model_id(PickModel(/*for_create=*/false));
    get.set_include_parameters(true);
    v1::Model src;
    if (!f_.GetModel(get, &src).ok()) {
      if (models_.count(get.model_id()) > 0) Fail("GetModel of a listed model");
      return;
    }
    v1::CreateModelRequest req;
    req.set_model_id(PickModel(/*for_create=*/true));
    *req.mutable_spec() = src.spec();
    *req.mutable_parameters() = src.parameters();
    const std::string id = SendCreate(req);
    if (id.empty()) return;
    v1::GetModelRequest get_copy;
    get_copy.set_model_id(id);
    get_copy.set_include_parameters(true);
    v1::Model copy;
    if (!f_.GetModel(get_copy, &copy).ok()) Fail("GetModel of a clone");
    if (copy.parameters_size() != src.parameters_size()) {
      Fail("a clone has another layer count");
    }
    for (int l = 0; l < src.parameters_size(); ++l) {
      if (copy.parameters(l).SerializeAsString() !=
          src.parameters(l).SerializeAsString()) {
        Fail("a model created with parameters holds other parameters");
      }
    }
  }

  // Returns the created id, or "" when the create failed.
  std::string SendCreate(const v1::CreateModelRequest& req) {
    const bool existed = models_.count(req.model_id()) > 0;
    v1::Model resp;
    const grpc::Status s = f_.CreateModel(req, &resp);
    if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS && !existed) {
      Fail("ALREADY_EXISTS for a model that does not exist: " +
           req.model_id());
    }
    if (!s.ok()) return "";
    if (existed) Fail("CreateModel replaced model " + req.model_id());
    if (models_.count(resp.model_id()) > 0) {
      Fail("CreateModel picked an id in use: " + resp.model_id());
    }
    ModelInfo& info = models_[resp.model_id()];
    info.sizes.assign(resp.spec().layer_sizes().begin(),
                      resp.spec().layer_sizes().end());
    return resp.model_id();
  }

  void DeleteModel() {
    v1::DeleteModelRequest req;
    req.set_model_id(PickModel(/*for_create=*/false));
    const bool existed = models_.count(req.model_id()) > 0;
    const grpc::Status s = f_.DeleteModel(req);
    if (s.ok() && !existed) Fail("deleted a model that was not there");
    if (s.error_code() == grpc::StatusCode::NOT_FOUND && existed) {
      Fail("NOT_FOUND deleting model " + req.model_id());
    }
    if (existed && !s.ok()) {
      Fail("an idle model could not be deleted: " + s.error_message());
    }
    if (s.ok()) models_.erase(req.model_id());
  }

  void Train() {
    v1::TrainRequest req;
    req.set_model_id(PickModel(/*for_create=*/false));
    const std::vector<uint32_t> sizes = SizesOf(req.model_id());
    switch (in_.Below(3)) {
      case 0:
        FillExamples(1 + in_.Below(8), sizes.front(), sizes.back(),
                     req.mutable_examples());
        break;
      case 1: req.set_dataset_id(PickDataset(/*for_create=*/false)); break;
      default: break;  // no data
    }
    if (in_.Below(4) == 3) {
      FillExamples(1 + in_.Below(4), sizes.front(), sizes.back(),
                   req.mutable_validation_examples());
    }
    const uint32_t e = in_.Below(8);
    req.set_epochs(e == 7 ? 0 : 1 + e % kFuzzMaxEpochs);
    req.set_mini_batch_size((1 + in_.Below(9)) % 9);  // 0: invalid
    const uint8_t eta = in_.Byte();
    req.set_learning_rate(eta == 0 ? 0.5 : Bytes::ValueOf(eta));
    req.set_momentum(in_.Below(4) * 0.3);
    req.set_l2_lambda(in_.Below(3) * 0.1);
    req.set_shuffle_seed(in_.Byte());
    req.set_monitor_training(in_.Bit());
    req.set_progress_interval_ms(in_.Below(2));
    std::vector<v1::TrainEvent> events;
    const grpc::Status s = f_.Train(req, &events);
    uint32_t epochs = 0;
    for (const v1::TrainEvent& e : events) epochs += e.has_epoch() ? 1 : 0;
    auto it = models_.find(req.model_id());
    if (it == models_.end()) {
      if (s.ok() || epochs > 0) Fail("trained a model that does not exist");
      return;
    }
    if (s.ok() && epochs != req.epochs()) Fail("Train lost an epoch event");
    it->second.epochs += epochs;
  }

  void Predict() {
    v1::PredictRequest req;
    req.set_model_id(PickModel(/*for_create=*/false));
    const std::vector<uint32_t> sizes = SizesOf(req.model_id());
    const uint32_t rows = (1 + in_.Below(5)) % 5;
    FillMatrix(rows, Perturb(sizes.front()), req.mutable_inputs());
    v1::PredictResponse resp;
    const grpc::Status s = f_.Predict(req, &resp);
    if (!s.ok()) return;
    if (models_.count(req.model_id()) == 0) Fail("Predict of a missing model");
    if (resp.outputs().rows() != rows ||
        resp.outputs().cols() != sizes.back() ||
        resp.labels_size() != static_cast<int>(rows)) {
      Fail("Predict answered the wrong shape");
    }
    if (resp.epochs_trained() != models_[req.model_id()].epochs) {
      Fail("Predict answered with other weights than the last epoch's");
    }
  }

  void Gradients() {
    v1::GetGradientsRequest req;
    req.set_model_id(PickModel(/*for_create=*/false));
    const std::vector<uint32_t> sizes = SizesOf(req.model_id());
    FillExamples((1 + in_.Below(5)) % 5, sizes.front(), sizes.back(),
                 req.mutable_examples());
    if (in_.Below(4) == 3) {
      req.set_check_epsilon(1e-4);
      req.set_check_samples(in_.Below(20));
    }
    v1::GetGradientsResponse resp;
    const grpc::Status s = f_.GetGradients(req, &resp);
    if (!s.ok()) return;
    if (models_.count(req.model_id()) == 0) {
      Fail("GetGradients of a missing model");
    }
    if (resp.gradients_size() + 1 != static_cast<int>(sizes.size())) {
      Fail("GetGradients: one gradient per layer");
    }
  }

  void Upload() {
    std::vector<v1::UploadDatasetRequest> parts;
    const uint32_t features = 1 + in_.Below(4);
    const uint32_t outputs = 2 + in_.Below(3);
    const bool labels = !in_.Bit();
    std::string id;
    if (in_.Below(8) != 7) {
      v1::DatasetHeader* h = parts.emplace_back().mutable_header();
      id = PickDataset(/*for_create=*/true);
      h->set_dataset_id(id);
      h->set_feature_count(Perturb(features));
      if (labels) {
        h->set_class_count(Perturb(outputs));
      } else {
        h->set_target_size(Perturb(outputs));
      }
      h->set_description("fuzz");
    }
    uint64_t rows_sent = 0;
    for (uint32_t c = (1 + in_.Below(4)) % 4; c > 0; --c) {
      const uint32_t rows = (1 + in_.Below(5)) % 5;
      v1::Examples* e = parts.emplace_back().mutable_chunk();
      FillMatrix(rows, features, e->mutable_inputs());
      if (labels) {
        for (uint32_t i = 0; i < rows; ++i) {
          e->mutable_labels()->add_values(in_.Below(outputs + 1));
        }
      } else {
        FillMatrix(rows, outputs, e->mutable_target_values());
      }
      rows_sent += rows;
    }
    const bool existed = datasets_.count(id) > 0;
    v1::Dataset resp;
    const grpc::Status s = f_.UploadDataset(parts, &resp);
    if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS && !existed) {
      Fail("ALREADY_EXISTS for a dataset that does not exist: " + id);
    }
    if (!s.ok()) return;
    if (existed) Fail("UploadDataset replaced dataset " + id);
    if (datasets_.count(resp.dataset_id()) > 0) {
      Fail("UploadDataset picked an id in use");
    }
    if (resp.example_count() != rows_sent) {
      Fail("an upload kept another number of examples than were sent");
    }
    datasets_[resp.dataset_id()] = resp.example_count();
  }

  void DeleteDataset() {
    v1::DeleteDatasetRequest req;
    req.set_dataset_id(PickDataset(/*for_create=*/false));
    const bool existed = datasets_.count(req.dataset_id()) > 0;
    const grpc::Status s = f_.DeleteDataset(req);
    if (s.ok() && !existed) Fail("deleted a dataset that was not there");
    if (existed && !s.ok()) {
      Fail("a dataset could not be deleted: " + s.error_message());
    }
    if (s.ok()) datasets_.erase(req.dataset_id());
  }

  void Restart() {
    for (const std::string& line : f_.Restart()) {
      Fail("restart reported: " + line);
    }
  }

  void GetAndList() {
    const uint32_t page = in_.Below(4);
    if (f_.AllModelIds(page).size() != models_.size()) {
      Fail("a paged ListModels lists another number of models");
    }
    if (f_.AllDatasetIds(page).size() != datasets_.size()) {
      Fail("a paged ListDatasets lists another number of datasets");
    }
  }

  void CheckInvariants() {
    std::set<std::string> want_models;
    for (const auto& [id, info] : models_) want_models.insert(id);
    if (f_.AllModelIds(2) != want_models) {
      Fail("ListModels differs from created minus deleted");
    }
    for (const auto& [id, info] : models_) {
      v1::GetModelRequest get;
      get.set_model_id(id);
      v1::Model m;
      if (grpc::Status s = f_.GetModel(get, &m); !s.ok()) {
        Fail("listed model " + id + " does not load: " + s.error_message());
      }
      if (m.epochs_trained() != info.epochs) {
        Fail("model " + id + " has epochs_trained " +
             std::to_string(m.epochs_trained()) + ", Train events said " +
             std::to_string(info.epochs));
      }
      if (m.training()) Fail("model " + id + " trains at rest");
      const std::string path = f_.model_dir() + "/" + id + ".model";
      absl::StatusOr<std::string> bytes = ReadFileNoFollow(path, 1 << 20);
      if (!bytes.ok()) Fail(path + ": " + bytes.status().ToString());
      absl::StatusOr<ModelRecord> rec =
          DecodeModel(*bytes, kFuzzMaxParameters);
      if (!rec.ok()) Fail(path + ": " + rec.status().ToString());
      if (rec->epochs_trained != info.epochs) {
        Fail(path + " holds another epochs_trained than the service");
      }
    }
    std::set<std::string> want_data;
    for (const auto& [id, n] : datasets_) want_data.insert(id);
    if (f_.AllDatasetIds(2) != want_data) {
      Fail("ListDatasets differs from uploaded minus deleted");
    }
    for (const auto& [id, n] : datasets_) {
      v1::GetDatasetRequest get;
      get.set_dataset_id(id);
      v1::Dataset d;
      if (grpc::Status s = f_.GetDataset(get, &d); !s.ok()) {
        Fail("listed dataset " + id + ": " + s.error_message());
      }
      if (d.example_count() != n) Fail("dataset " + id + " changed size");
      const std::string path = f_.data_dir() + "/" + id + ".dataset";
      absl::StatusOr<std::string> bytes =
          ReadFileNoFollow(path, kFuzzMaxDatasetBytes * 4 + (1 << 20));
      if (!bytes.ok()) Fail(path + ": " + bytes.status().ToString());
      absl::StatusOr<Dataset> data = DecodeDataset(*bytes, nullptr);
      if (!data.ok()) Fail(path + ": " + data.status().ToString());
      if (data->size() != n) Fail(path + " holds another example count");
    }
    f_.CheckFiles(want_models, want_data);
  }

  ServiceFixture& f_;
  Bytes& in_;
  std::map<std::string, ModelInfo> models_;
  std::map<std::string, uint64_t> datasets_;
  int trains_ = 0;
  int restarts_ = 0;
};

}  // namespace
}  // namespace backprop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using backprop::fuzz::ServiceFixture;
  // One service for the whole process, emptied before each input.
  static ServiceFixture* fixture = [] {
    auto* f = new ServiceFixture(/*with_fixtures=*/false);
    std::atexit([] { delete fixture; });
    return f;
  }();
  fixture->Restore();
  if (size == 0) return 0;
  const size_t k =
      std::min<size_t>({data[0], backprop::fuzz::kMaxOps, size - 1});
  const std::vector<uint8_t> ops(data + 1, data + 1 + k);
  backprop::fuzz::Bytes in(data + 1 + k, size - 1 - k);
  backprop::fuzz::Sequence(*fixture, in).Run(ops);
  return 0;
}
