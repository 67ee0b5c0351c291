#include "server/status_util.h"

#include <string>

namespace backprop::server {

static_assert(static_cast<int>(absl::StatusCode::kInvalidArgument) ==
                  grpc::StatusCode::INVALID_ARGUMENT,
              "absl and gRPC status codes must share numbering");
static_assert(static_cast<int>(absl::StatusCode::kUnauthenticated) ==
                  grpc::StatusCode::UNAUTHENTICATED,
              "absl and gRPC status codes must share numbering");

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace backprop::server
