// One libFuzzer target per request type of backprop.v1. The harness
// (request_fuzzer.cc) is compiled once into backprop_fuzz_service; each
// target is request_fuzzer_main.cc compiled with BACKPROP_FUZZ_RPC set to
// one Rpc enumerator (fuzz/CMakeLists.txt).
#ifndef BACKPROP_FUZZ_REQUEST_FUZZER_H_
#define BACKPROP_FUZZ_REQUEST_FUZZER_H_

#include <cstddef>
#include <cstdint>

namespace backprop::fuzz {

enum class Rpc {
  kCreateModel,
  kGetModel,
  kListModels,
  kDeleteModel,
  kUploadDataset,
  kGetDataset,
  kListDatasets,
  kDeleteDataset,
  kTrain,
  kPredict,
  kGetGradients,
};

// Parses data as rpc's request (UploadDataset: a series of 2-byte
// little-endian lengths, each followed by that many bytes of one
// UploadDatasetRequest), calls the handler of the shared fixture and checks
// the reply; aborts on a broken promise. After an RPC that may change what
// the service holds, restores the fixture and checks its folders.
void FuzzRequest(Rpc rpc, const uint8_t* data, size_t size);

}  // namespace backprop::fuzz

#endif  // BACKPROP_FUZZ_REQUEST_FUZZER_H_
