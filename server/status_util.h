// The one place where an absl::Status becomes a grpc::Status (STYLE.md §3).
#ifndef BACKPROP_SERVER_STATUS_UTIL_H_
#define BACKPROP_SERVER_STATUS_UTIL_H_

#include "absl/status/status.h"
#include <grpcpp/support/status.h>

namespace backprop::server {

// Same code, same message. absl and gRPC both number codes as google.rpc.Code.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The reverse, for statuses that come back from gRPC calls (tests, tools).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_STATUS_UTIL_H_
