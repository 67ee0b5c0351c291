// The backprop.v1 service as the request and sequence fuzzers see it: one
// real server (BackpropServer::Start on 127.0.0.1:0) on temporary model and
// data folders, with a small model and data set of each kind pre-created so that
// well-formed requests reach the engine.
//
// How requests reach the handlers:
//  - unary RPCs call the service's own CallbackService methods directly, on
//    a CallbackServerContext bound to gRPC's DefaultReactorTestPeer (gRPC's
//    documented way to unit-test callback unary handlers without a call).
//    That is the whole handler, status mapping included, at the cost of a
//    function call, so the 1,000,000-run budget stays in seconds;
//  - Train and UploadDataset use their own reactors (a stream), which only a
//    real call can drive: those go over a loopback TCP port (127.0.0.1:0),
//    not InProcessChannel(), whose transport retains calls (the .cc says
//    which).
// No hook in server/ is needed for either.
//
// Limits: the fuzzers run with the server's own limit checks, configured
// small (kFuzz* below) so that one input costs milliseconds at most: the
// shipped defaults (limits.h) allow requests that take seconds by design.
// The only cap outside the server is the Train harness's epoch count.
#ifndef BACKPROP_FUZZ_SERVICE_FIXTURE_H_
#define BACKPROP_FUZZ_SERVICE_FIXTURE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "backprop/v1/backprop.grpc.pb.h"
#include "server/server.h"

namespace backprop::fuzz {

// The service limits of every fuzz fixture (ServiceOptions).
inline constexpr uint64_t kFuzzMaxParameters = 1000;
inline constexpr uint64_t kFuzzMaxRowsPerCall = 32;
inline constexpr uint64_t kFuzzMaxDatasetBytes = 64 << 10;
inline constexpr uint64_t kFuzzMaxModels = 8;
inline constexpr uint64_t kFuzzMaxDatasets = 8;
// Epochs of one Train call (the server has no epoch limit of its own).
inline constexpr uint32_t kFuzzMaxEpochs = 2;

// Prints the message and aborts: a broken invariant is a crash for libFuzzer.
[[noreturn]] void Fail(const std::string& message);

// A folder that holds model_dir and data_dir, removed with its contents.
// Under /dev/shm when it exists: every model save fsyncs, which costs
// nothing on tmpfs.
class TempFolder {
 public:
  TempFolder();
  ~TempFolder();
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ServiceFixture {
 public:
  // The fixture models and data sets (ids, shapes: see the .cc).
  static constexpr const char* kModel64 = "fx-f64";    // [4, 5, 3] float64
  static constexpr const char* kModel32 = "fx-f32";    // [4, 3, 2] float32
  static constexpr const char* kLabels = "fx-labels";  // 4 features, 3 classes
  static constexpr const char* kTargets = "fx-targets";  // 4 features, 2 wide

  // Starts a server on fresh folders. with_fixtures: pre-create the models
  // and data sets above.
  explicit ServiceFixture(bool with_fixtures);
  ~ServiceFixture();

  const std::string& model_dir() const { return model_dir_; }
  const std::string& data_dir() const { return data_dir_; }
  server::BackpropService& service() { return server_->service(); }
  v1::Backprop::Stub& stub() { return *stub_; }

  // Shuts the server down and starts a new one on the same folders. Returns
  // what loading reported (a file that failed to load, a stale temp file).
  std::vector<std::string> Restart();

  // Unary RPCs, straight into the handler.
  grpc::Status CreateModel(const v1::CreateModelRequest& req, v1::Model* resp);
  grpc::Status GetModel(const v1::GetModelRequest& req, v1::Model* resp);
  grpc::Status ListModels(const v1::ListModelsRequest& req,
                          v1::ListModelsResponse* resp);
  grpc::Status DeleteModel(const v1::DeleteModelRequest& req);
  grpc::Status GetDataset(const v1::GetDatasetRequest& req, v1::Dataset* resp);
  grpc::Status ListDatasets(const v1::ListDatasetsRequest& req,
                            v1::ListDatasetsResponse* resp);
  grpc::Status DeleteDataset(const v1::DeleteDatasetRequest& req);
  grpc::Status Predict(const v1::PredictRequest& req,
                       v1::PredictResponse* resp);
  grpc::Status GetGradients(const v1::GetGradientsRequest& req,
                            v1::GetGradientsResponse* resp);

  // Streams, over loopback TCP. Train reads every event.
  grpc::Status Train(const v1::TrainRequest& req,
                     std::vector<v1::TrainEvent>* events);
  grpc::Status UploadDataset(const std::vector<v1::UploadDatasetRequest>& parts,
                             v1::Dataset* resp);

  // Every model and data set id, walking the list pages (page_size ids per
  // page). Fails (aborts) when a page is refused or the pages overlap.
  std::set<std::string> AllModelIds(uint32_t page_size);
  std::set<std::string> AllDatasetIds(uint32_t page_size);

  // After each input of a request fuzzer: removes what the input added,
  // re-creates fixture entries it deleted, then checks that the folders
  // hold exactly the files of what is registered (no temp file left).
  void Restore();

  // Aborts unless model_dir holds exactly LOCK (optional) and "<id>.model"
  // for each id, and data_dir exactly "<id>.dataset" for each id.
  void CheckFiles(const std::set<std::string>& models,
                  const std::set<std::string>& datasets) const;

 private:
  void Start();
  void CreateFixtures();

  const bool with_fixtures_;
  TempFolder folder_;
  std::string model_dir_;
  std::string data_dir_;
  std::unique_ptr<server::BackpropServer> server_;
  std::unique_ptr<v1::Backprop::Stub> stub_;
  std::vector<std::string> reports_;
};

// The fixture every request fuzzer shares (created on first use, shut down
// at exit).
ServiceFixture& SharedFixture();

// Fixture inputs for seeds and tests: rows x 4 inputs in [0, 1], labels for
// 3 classes, 2-wide targets.
v1::Examples FixtureExamples(uint32_t rows, bool labels);

}  // namespace backprop::fuzz

#endif  // BACKPROP_FUZZ_SERVICE_FIXTURE_H_
