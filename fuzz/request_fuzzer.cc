// The request fuzzers (request_fuzzer.h): the input is the serialized
// request (ParseFromArray; bytes that do not parse are skipped), handed to
// the real handler of a shared in-process service (service_fixture.h).
//
// UploadDataset is a client stream: its input is a series of messages, each
// a 2-byte little-endian length and that many bytes of UploadDatasetRequest
// (the last one may be shorter than its length says).
//
// Besides "no crash, no sanitizer report", each target checks what a reply
// promises (shapes, counts, that a created model can be read back, that a
// deleted one is gone), and after every input of an RPC that may change
// what the service holds that the folders hold only the files of what is
// registered.
#include "fuzz/request_fuzzer.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backprop/v1/backprop.pb.h"
#include "fuzz/service_fixture.h"

namespace backprop::fuzz {
namespace {

template <typename Req>
bool Parse(const uint8_t* data, size_t size, Req* req) {
  return req->ParseFromArray(data, static_cast<int>(size));
}

void Expect(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

void FuzzCreateModel(const uint8_t* data, size_t size) {
  v1::CreateModelRequest req;
  if (!Parse(data, size, &req)) return;
  ServiceFixture& f = SharedFixture();
  const bool existed = !req.model_id().empty() &&
                       f.service().models().Contains(req.model_id());
  v1::Model resp;
  const grpc::Status s = f.CreateModel(req, &resp);
  if (s.ok()) {
    Expect(!existed, "CreateModel replaced an existing model");
    Expect(req.model_id().empty() || resp.model_id() == req.model_id(),
           "CreateModel answered another id");
    Expect(resp.parameter_count() <= kFuzzMaxParameters,
           "CreateModel accepted more parameters than max_parameters");
    v1::GetModelRequest get;
    get.set_model_id(resp.model_id());
    get.set_include_parameters(true);
    v1::Model m;
    Expect(f.GetModel(get, &m).ok(), "a created model cannot be read back");
    Expect(m.parameters_size() + 1 == m.spec().layer_sizes_size(),
           "a created model has the wrong number of layers");
  } else if (!existed && !req.model_id().empty()) {
    Expect(!f.service().models().Contains(req.model_id()),
           "a failed CreateModel left the model registered");
  }
}

void FuzzGetModel(const uint8_t* data, size_t size) {
  v1::GetModelRequest req;
  if (!Parse(data, size, &req)) return;
  v1::Model resp;
  if (SharedFixture().GetModel(req, &resp).ok()) {
    Expect(resp.model_id() == req.model_id(), "GetModel answered another id");
    Expect(!req.include_parameters() ||
               resp.parameters_size() + 1 == resp.spec().layer_sizes_size(),
           "GetModel parameters do not match the spec");
  }
}

void FuzzListModels(const uint8_t* data, size_t size) {
  v1::ListModelsRequest req;
  if (!Parse(data, size, &req)) return;
  v1::ListModelsResponse resp;
  if (SharedFixture().ListModels(req, &resp).ok()) {
    Expect(req.page_size() == 0 ||
               static_cast<uint32_t>(resp.models_size()) <= req.page_size(),
           "ListModels returned more than page_size");
  }
}

void FuzzDeleteModel(const uint8_t* data, size_t size) {
  v1::DeleteModelRequest req;
  if (!Parse(data, size, &req)) return;
  ServiceFixture& f = SharedFixture();
  if (f.DeleteModel(req).ok()) {
    Expect(!f.service().models().Contains(req.model_id()),
           "a deleted model is still registered");
  }
}

void FuzzGetDataset(const uint8_t* data, size_t size) {
  v1::GetDatasetRequest req;
  if (!Parse(data, size, &req)) return;
  v1::Dataset resp;
  if (SharedFixture().GetDataset(req, &resp).ok()) {
    Expect(resp.dataset_id() == req.dataset_id(),
           "GetDataset answered another id");
  }
}

void FuzzListDatasets(const uint8_t* data, size_t size) {
  v1::ListDatasetsRequest req;
  if (!Parse(data, size, &req)) return;
  v1::ListDatasetsResponse resp;
  if (SharedFixture().ListDatasets(req, &resp).ok()) {
    Expect(req.page_size() == 0 ||
               static_cast<uint32_t>(resp.datasets_size()) <= req.page_size(),
           "ListDatasets returned more than page_size");
  }
}

void FuzzDeleteDataset(const uint8_t* data, size_t size) {
  v1::DeleteDatasetRequest req;
  if (!Parse(data, size, &req)) return;
  ServiceFixture& f = SharedFixture();
  if (f.DeleteDataset(req).ok()) {
    Expect(!f.service().datasets().Contains(req.dataset_id()),
           "a deleted dataset is still registered");
  }
}

void FuzzUploadDataset(const uint8_t* data, size_t size) {
  std::vector<v1::UploadDatasetRequest> parts;
  size_t pos = 0;
  while (pos + 2 <= size && parts.size() < 64) {
    size_t len = data[pos] | (size_t{data[pos + 1]} << 8);
    pos += 2;
    if (len > size - pos) len = size - pos;
    if (!Parse(data + pos, len, &parts.emplace_back())) return;
    pos += len;
  }
  if (parts.empty()) return;
  ServiceFixture& f = SharedFixture();
  v1::Dataset resp;
  if (f.UploadDataset(parts, &resp).ok()) {
    v1::GetDatasetRequest get;
    get.set_dataset_id(resp.dataset_id());
    v1::Dataset got;
    Expect(f.GetDataset(get, &got).ok(), "an uploaded dataset is not there");
    Expect(got.example_count() == resp.example_count() &&
               got.example_count() > 0,
           "an uploaded dataset has another example count");
  }
}

void FuzzTrain(const uint8_t* data, size_t size) {
  v1::TrainRequest req;
  if (!Parse(data, size, &req)) return;
  // The one cap outside the server: it has no limit on epochs.
  if (req.epochs() > kFuzzMaxEpochs) req.set_epochs(kFuzzMaxEpochs);
  ServiceFixture& f = SharedFixture();
  v1::GetModelRequest get;
  get.set_model_id(req.model_id());
  v1::Model before;
  const bool exists = f.GetModel(get, &before).ok();
  std::vector<v1::TrainEvent> events;
  const grpc::Status s = f.Train(req, &events);
  uint32_t epochs = 0;
  for (const v1::TrainEvent& e : events) epochs += e.has_epoch() ? 1 : 0;
  if (s.ok()) Expect(epochs == req.epochs(), "Train skipped an epoch event");
  if (exists) {
    v1::Model after;
    Expect(f.GetModel(get, &after).ok(), "the trained model is gone");
    Expect(after.epochs_trained() == before.epochs_trained() + epochs,
           "epochs_trained does not match the epoch events");
    Expect(!after.training(), "the model still trains after Train ended");
  }
}

void FuzzPredict(const uint8_t* data, size_t size) {
  v1::PredictRequest req;
  if (!Parse(data, size, &req)) return;
  v1::PredictResponse resp;
  if (SharedFixture().Predict(req, &resp).ok()) {
    const v1::Matrix& out = resp.outputs();
    Expect(out.rows() == req.inputs().rows(), "Predict: wrong output rows");
    Expect(resp.labels_size() == static_cast<int>(out.rows()),
           "Predict: one label per row");
    Expect(static_cast<uint64_t>(out.float_values_size()) +
                   out.double_values_size() ==
               out.rows() * out.cols(),
           "Predict: outputs hold rows * cols values");
  }
}

void FuzzGetGradients(const uint8_t* data, size_t size) {
  v1::GetGradientsRequest req;
  if (!Parse(data, size, &req)) return;
  ServiceFixture& f = SharedFixture();
  v1::GetGradientsResponse resp;
  if (f.GetGradients(req, &resp).ok()) {
    v1::GetModelRequest get;
    get.set_model_id(req.model_id());
    v1::Model m;
    Expect(f.GetModel(get, &m).ok(), "GetGradients of a missing model");
    Expect(resp.gradients_size() + 1 == m.spec().layer_sizes_size(),
           "GetGradients: one gradient per layer");
  }
}

}  // namespace

void FuzzRequest(Rpc rpc, const uint8_t* data, size_t size) {
  ServiceFixture& f = SharedFixture();  // first: it also quiets protobuf
  bool mutates = true;
  switch (rpc) {
    case Rpc::kCreateModel: FuzzCreateModel(data, size); break;
    case Rpc::kGetModel: FuzzGetModel(data, size); mutates = false; break;
    case Rpc::kListModels: FuzzListModels(data, size); mutates = false; break;
    case Rpc::kDeleteModel: FuzzDeleteModel(data, size); break;
    case Rpc::kUploadDataset: FuzzUploadDataset(data, size); break;
    case Rpc::kGetDataset: FuzzGetDataset(data, size); mutates = false; break;
    case Rpc::kListDatasets:
      FuzzListDatasets(data, size);
      mutates = false;
      break;
    case Rpc::kDeleteDataset: FuzzDeleteDataset(data, size); break;
    case Rpc::kTrain: FuzzTrain(data, size); break;
    case Rpc::kPredict: FuzzPredict(data, size); mutates = false; break;
    case Rpc::kGetGradients:
      FuzzGetGradients(data, size);
      mutates = false;
      break;
  }
  // After an RPC that may change what the service holds: undo it and check
  // the folders. The others only read.
  if (mutates) f.Restore();
}

}  // namespace backprop::fuzz
