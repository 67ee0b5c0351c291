// The limits and transport settings the server ships with: the values of
// RELIABILITY.md §3 (../shared), in one place. ServiceOptions, ServerOptions
// and the flags of main.cc all take their defaults from here; README.md
// "Limits that ship as defaults" lists them with the status each returns.
#ifndef BACKPROP_SERVER_LIMITS_H_
#define BACKPROP_SERVER_LIMITS_H_

#include <algorithm>
#include <cstdint>
#include <thread>

#include "absl/time/time.h"

namespace backprop::server::limits {

// ---- Per request and per model (server/convert.cc, core/spec.cc) ----
// Predict / GetGradients rows per call, and rows of inline Train examples.
inline constexpr uint64_t kMaxRowsPerCall = 10'000;
// Weights + biases of one model.
inline constexpr uint64_t kMaxParameters = 1'000'000;
// Entries of ModelSpec.layer_sizes (input and output included).
inline constexpr uint32_t kMaxLayers = 64;
// Largest entry of ModelSpec.layer_sizes.
inline constexpr uint32_t kMaxLayerWidth = 65'536;

// ---- Per server (server/registry.cc, server/service.cc) ----
inline constexpr uint64_t kMaxModels = 1'000;
inline constexpr uint64_t kMaxDatasets = 1'000;
// Concurrent Train calls: min(4, cores).
inline int DefaultMaxConcurrentTrainings() {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<int>(std::min(4u, cores));
}

// ---- Uploads (UploadDataset) ----
// Values held per dataset (8 bytes per input or target value, 4 per label).
inline constexpr uint64_t kMaxDatasetBytes = uint64_t{256} << 20;
// Serialized size of one chunk (an Examples message).
inline constexpr uint64_t kMaxUploadChunkBytes = uint64_t{1} << 20;
inline constexpr uint64_t kMaxUploadChunks = 100'000;
inline constexpr int kMaxConcurrentUploads = 4;

// ---- Time caps ----
// A Predict stops at min(client deadline, now + this): DEADLINE_EXCEEDED.
inline constexpr absl::Duration kPredictBudget = absl::Seconds(5);
// A GetGradients with a finite-difference check stops at min(client
// deadline, now + this): each checked parameter costs two long-double passes
// over every example, so 10,000 samples of a big model would run for hours.
inline constexpr absl::Duration kGradientsBudget = absl::Seconds(60);
// A Train call ends DEADLINE_EXCEEDED after this much wall time.
inline constexpr absl::Duration kMaxTrainTime = absl::Hours(24);

// ---- gRPC transport (server/server.cc) ----
inline constexpr int kMaxReceiveMessageBytes = 4 << 20;
inline constexpr int kMaxSendMessageBytes = 16 << 20;
inline constexpr int kMaxConcurrentStreams = 100;
inline constexpr int kMaxMetadataBytes = 16 << 10;
inline constexpr absl::Duration kHandshakeTimeout = absl::Seconds(10);
inline constexpr absl::Duration kKeepaliveTime = absl::Seconds(60);
inline constexpr absl::Duration kKeepaliveTimeout = absl::Seconds(20);
// Clients may ping this often (also without calls); more often is a strike.
inline constexpr absl::Duration kMinPingInterval = absl::Seconds(30);
// More strikes than this: GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
inline constexpr int kMaxPingStrikes = 2;
inline constexpr absl::Duration kMaxConnectionIdle = absl::Minutes(30);
// Memory gRPC may use for its buffers (grpc::ResourceQuota).
inline constexpr int64_t kResourceQuotaBytes = int64_t{512} << 20;

}  // namespace backprop::server::limits

#endif  // BACKPROP_SERVER_LIMITS_H_
