#include "fuzz/service_fixture.h"

#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/test/default_reactor_test_peer.h>

namespace backprop::fuzz {
namespace {

using server::BackpropService;

// BACKPROP_FUZZ_VERBOSE=1: print each call's status (to see what a seed
// or a crash input reaches).
const bool kVerbose = std::getenv("BACKPROP_FUZZ_VERBOSE") != nullptr;

grpc::Status Log(const char* rpc, grpc::Status s) {
  if (kVerbose) {
    std::fprintf(stderr, "  %s: %d %s\n", rpc,
                 static_cast<int>(s.error_code()), s.error_message().c_str());
  }
  return s;
}

// Calls a unary handler of the service on a context whose default reactor
// reports its status to us instead of to a call, and waits for Finish.
template <typename Req, typename Resp>
grpc::Status CallUnary(BackpropService& service,
                       grpc::ServerUnaryReactor* (BackpropService::*method)(
                           grpc::CallbackServerContext*, const Req*, Resp*),
                       const Req& req, Resp* resp) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  grpc::CallbackServerContext ctx;
  grpc::testing::DefaultReactorTestPeer peer(&ctx, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_all();
  });
  (service.*method)(&ctx, &req, resp);
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return status;
}

v1::ModelSpec Spec(std::vector<uint32_t> sizes, v1::Activation hidden,
                   v1::Activation output, v1::Cost cost, v1::DType dtype) {
  v1::ModelSpec s;
  for (uint32_t n : sizes) s.add_layer_sizes(n);
  s.set_hidden_activation(hidden);
  s.set_output_activation(output);
  s.set_cost(cost);
  s.set_dtype(dtype);
  s.set_seed(7);
  return s;
}

}  // namespace

void Fail(const std::string& message) {
  std::fprintf(stderr, "INVARIANT BROKEN: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

TempFolder::TempFolder() {
  const char* env = std::getenv("TMPDIR");
  std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                     : env != nullptr               ? env
                                                    : "/tmp";
  std::string pattern = base + "/backprop-fuzz.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) Fail("mkdtemp failed in " + base);
  path_ = buf.data();
}

TempFolder::~TempFolder() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

v1::Examples FixtureExamples(uint32_t rows, bool labels) {
  v1::Examples e;
  v1::Matrix* x = e.mutable_inputs();
  x->set_rows(rows);
  x->set_cols(4);
  for (uint32_t i = 0; i < rows * 4; ++i) {
    x->add_double_values(static_cast<double>((i * 37) % 11) / 10.0);
  }
  if (labels) {
    for (uint32_t i = 0; i < rows; ++i) {
      e.mutable_labels()->add_values(i % 3);
    }
  } else {
    v1::Matrix* y = e.mutable_target_values();
    y->set_rows(rows);
    y->set_cols(2);
    for (uint32_t i = 0; i < rows * 2; ++i) {
      y->add_double_values(static_cast<double>(i % 5) / 4.0);
    }
  }
  return e;
}

ServiceFixture::ServiceFixture(bool with_fixtures)
    : with_fixtures_(with_fixtures),
      model_dir_(folder_.path() + "/models"),
      data_dir_(folder_.path() + "/data") {
  // Parsing fuzz input logs every string field that is not UTF-8: millions
  // of lines, and time. The parse result is all the harness needs.
  google::protobuf::SetLogHandler(nullptr);
  Start();
  if (with_fixtures_) CreateFixtures();
}

ServiceFixture::~ServiceFixture() {
  stub_.reset();
  if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
  server_.reset();
}

void ServiceFixture::Start() {
  server::ServerOptions o;
  // Streams go over loopback TCP, not InProcessChannel(): gRPC 1.51's
  // in-process transport keeps every client-streaming call that the server
  // finishes before the client's half-close (an upload refused at its
  // first message) for the life of the channel, ~25 KB each: 8,000 such
  // uploads grew the process by 200 MB in-process and by 3 MB over TCP,
  // and upload_dataset_fuzzer ran out of memory after 975,000 inputs.
  o.listen = "127.0.0.1:0";
  o.reflection = false;
  o.service.model_dir = model_dir_;
  o.service.data_dir = data_dir_;
  o.service.max_parameters = kFuzzMaxParameters;
  o.service.max_rows_per_call = kFuzzMaxRowsPerCall;
  o.service.max_dataset_bytes = kFuzzMaxDatasetBytes;
  o.service.max_models = kFuzzMaxModels;
  o.service.max_datasets = kFuzzMaxDatasets;
  reports_.clear();
  absl::StatusOr<std::unique_ptr<server::BackpropServer>> s =
      server::BackpropServer::Start(
          o, [this](const std::string& line) { reports_.push_back(line); });
  if (!s.ok()) Fail("server start: " + s.status().ToString());
  server_ = *std::move(s);
  stub_ = v1::Backprop::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                          grpc::InsecureChannelCredentials()));
}

std::vector<std::string> ServiceFixture::Restart() {
  stub_.reset();
  server_->Shutdown(absl::Seconds(5));
  server_.reset();
  Start();
  return reports_;
}

void ServiceFixture::CreateFixtures() {
  struct M {
    const char* id;
    v1::ModelSpec spec;
  };
  const M models[] = {
      {kModel64, Spec({4, 5, 3}, v1::SIGMOID, v1::SOFTMAX, v1::CROSS_ENTROPY,
                      v1::FLOAT64)},
      {kModel32, Spec({4, 3, 2}, v1::RELU, v1::IDENTITY, v1::QUADRATIC,
                      v1::FLOAT32)},
  };
  for (const M& m : models) {
    if (service().models().Contains(m.id)) continue;
    v1::CreateModelRequest req;
    req.set_model_id(m.id);
    *req.mutable_spec() = m.spec;
    v1::Model resp;
    if (grpc::Status s = CreateModel(req, &resp); !s.ok()) {
      Fail("fixture model " + std::string(m.id) + ": " + s.error_message());
    }
  }
  for (bool labels : {true, false}) {
    const char* id = labels ? kLabels : kTargets;
    if (service().datasets().Contains(id)) continue;
    std::vector<v1::UploadDatasetRequest> parts(3);
    v1::DatasetHeader* h = parts[0].mutable_header();
    h->set_dataset_id(id);
    h->set_feature_count(4);
    if (labels) {
      h->set_class_count(3);
    } else {
      h->set_target_size(2);
    }
    *parts[1].mutable_chunk() = FixtureExamples(8, labels);
    *parts[2].mutable_chunk() = FixtureExamples(8, labels);
    v1::Dataset resp;
    if (grpc::Status s = UploadDataset(parts, &resp); !s.ok()) {
      Fail("fixture dataset " + std::string(id) + ": " + s.error_message());
    }
  }
}

grpc::Status ServiceFixture::CreateModel(const v1::CreateModelRequest& req,
                                         v1::Model* resp) {
  return Log("CreateModel",
             CallUnary(service(), &BackpropService::CreateModel, req, resp));
}

grpc::Status ServiceFixture::GetModel(const v1::GetModelRequest& req,
                                      v1::Model* resp) {
  return Log("GetModel",
             CallUnary(service(), &BackpropService::GetModel, req, resp));
}

grpc::Status ServiceFixture::ListModels(const v1::ListModelsRequest& req,
                                        v1::ListModelsResponse* resp) {
  return Log("ListModels",
             CallUnary(service(), &BackpropService::ListModels, req, resp));
}

grpc::Status ServiceFixture::DeleteModel(const v1::DeleteModelRequest& req) {
  v1::DeleteModelResponse resp;
  return Log("DeleteModel",
             CallUnary(service(), &BackpropService::DeleteModel, req, &resp));
}

grpc::Status ServiceFixture::GetDataset(const v1::GetDatasetRequest& req,
                                        v1::Dataset* resp) {
  return Log("GetDataset",
             CallUnary(service(), &BackpropService::GetDataset, req, resp));
}

grpc::Status ServiceFixture::ListDatasets(const v1::ListDatasetsRequest& req,
                                          v1::ListDatasetsResponse* resp) {
  return Log("ListDatasets",
             CallUnary(service(), &BackpropService::ListDatasets, req, resp));
}

grpc::Status ServiceFixture::DeleteDataset(
    const v1::DeleteDatasetRequest& req) {
  v1::DeleteDatasetResponse resp;
  return Log("DeleteDataset",
             CallUnary(service(), &BackpropService::DeleteDataset, req, &resp));
}

grpc::Status ServiceFixture::Predict(const v1::PredictRequest& req,
                                     v1::PredictResponse* resp) {
  return Log("Predict",
             CallUnary(service(), &BackpropService::Predict, req, resp));
}

grpc::Status ServiceFixture::GetGradients(const v1::GetGradientsRequest& req,
                                          v1::GetGradientsResponse* resp) {
  return Log("GetGradients",
             CallUnary(service(), &BackpropService::GetGradients, req, resp));
}

grpc::Status ServiceFixture::Train(const v1::TrainRequest& req,
                                   std::vector<v1::TrainEvent>* events) {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::TrainEvent>> reader =
      stub_->Train(&ctx, req);
  v1::TrainEvent ev;
  while (reader->Read(&ev)) events->push_back(ev);
  return Log("Train", reader->Finish());
}

grpc::Status ServiceFixture::UploadDataset(
    const std::vector<v1::UploadDatasetRequest>& parts, v1::Dataset* resp) {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer =
      stub_->UploadDataset(&ctx, resp);
  for (const v1::UploadDatasetRequest& p : parts) {
    if (!writer->Write(p)) break;  // the server ended the call early
  }
  writer->WritesDone();
  return Log("UploadDataset", writer->Finish());
}

std::set<std::string> ServiceFixture::AllModelIds(uint32_t page_size) {
  std::set<std::string> ids;
  v1::ListModelsRequest req;
  req.set_page_size(page_size);
  for (int pages = 0;; ++pages) {
    if (pages > 1000) Fail("ListModels pages never end");
    v1::ListModelsResponse resp;
    if (grpc::Status s = ListModels(req, &resp); !s.ok()) {
      Fail("ListModels: " + s.error_message());
    }
    if (page_size > 0 &&
        static_cast<uint32_t>(resp.models_size()) > page_size) {
      Fail("ListModels returned more than page_size");
    }
    for (const v1::Model& m : resp.models()) {
      if (!ids.insert(m.model_id()).second) {
        Fail("ListModels listed " + m.model_id() + " twice");
      }
    }
    if (resp.next_page_token().empty()) return ids;
    req.set_page_token(resp.next_page_token());
  }
}

std::set<std::string> ServiceFixture::AllDatasetIds(uint32_t page_size) {
  std::set<std::string> ids;
  v1::ListDatasetsRequest req;
  req.set_page_size(page_size);
  for (int pages = 0;; ++pages) {
    if (pages > 1000) Fail("ListDatasets pages never end");
    v1::ListDatasetsResponse resp;
    if (grpc::Status s = ListDatasets(req, &resp); !s.ok()) {
      Fail("ListDatasets: " + s.error_message());
    }
    if (page_size > 0 &&
        static_cast<uint32_t>(resp.datasets_size()) > page_size) {
      Fail("ListDatasets returned more than page_size");
    }
    for (const v1::Dataset& d : resp.datasets()) {
      if (!ids.insert(d.dataset_id()).second) {
        Fail("ListDatasets listed " + d.dataset_id() + " twice");
      }
    }
    if (resp.next_page_token().empty()) return ids;
    req.set_page_token(resp.next_page_token());
  }
}

void ServiceFixture::Restore() {
  const std::set<std::string> fixture_models = {kModel64, kModel32};
  const std::set<std::string> fixture_data = {kLabels, kTargets};
  for (const std::string& id : AllModelIds(0)) {
    if (fixture_models.count(id) > 0) continue;
    v1::DeleteModelRequest req;
    req.set_model_id(id);
    if (grpc::Status s = DeleteModel(req); !s.ok()) {
      Fail("cannot delete model " + id + ": " + s.error_message());
    }
  }
  for (const std::string& id : AllDatasetIds(0)) {
    if (fixture_data.count(id) > 0) continue;
    v1::DeleteDatasetRequest req;
    req.set_dataset_id(id);
    if (grpc::Status s = DeleteDataset(req); !s.ok()) {
      Fail("cannot delete dataset " + id + ": " + s.error_message());
    }
  }
  if (with_fixtures_) CreateFixtures();
  CheckFiles(AllModelIds(0), AllDatasetIds(0));
}

void ServiceFixture::CheckFiles(const std::set<std::string>& models,
                                const std::set<std::string>& datasets) const {
  auto check = [](const std::string& dir, const std::set<std::string>& ids,
                  const std::string& ext) {
    std::set<std::string> want;
    for (const std::string& id : ids) want.insert(id + ext);
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name == "LOCK") continue;
      if (want.erase(name) == 0) {
        Fail(dir + " holds " + name + ", which is no registered " + ext +
             " (a temp file or a leftover)");
      }
    }
    if (ec) Fail("cannot list " + dir + ": " + ec.message());
    if (!want.empty()) Fail(dir + " lacks " + *want.begin());
  };
  check(model_dir_, models, ".model");
  check(data_dir_, datasets, ".dataset");
}

ServiceFixture& SharedFixture() {
  static ServiceFixture* fixture = [] {
    auto* f = new ServiceFixture(/*with_fixtures=*/true);
    std::atexit([] { delete &SharedFixture(); });
    return f;
  }();
  return *fixture;
}

}  // namespace backprop::fuzz
