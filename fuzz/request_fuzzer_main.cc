// The entry point of one request fuzzer: BACKPROP_FUZZ_RPC names its Rpc
// (request_fuzzer.h), e.g. kCreateModel.
#include <cstddef>
#include <cstdint>

#include "fuzz/request_fuzzer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  backprop::fuzz::FuzzRequest(backprop::fuzz::Rpc::BACKPROP_FUZZ_RPC, data,
                              size);
  return 0;
}
