// grpc.health.v1.Health/Check through a generic stub. The two messages are
// tiny (HealthCheckRequest { string service = 1; }, HealthCheckResponse
// { ServingStatus status = 1; }), so they are encoded here by hand rather
// than by pulling a second .proto into the build.
#ifndef BACKPROP_CLIENT_HEALTH_H_
#define BACKPROP_CLIENT_HEALTH_H_

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

namespace backprop::client {

inline constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";

// ServingStatus values of grpc.health.v1.
enum class ServingStatus {
  kUnknown = 0,
  kServing = 1,
  kNotServing = 2,
  kServiceUnknown = 3
};
const char* ServingStatusName(ServingStatus s);

// The serialized HealthCheckRequest for a service name ("" = the server).
grpc::ByteBuffer EncodeHealthCheckRequest(const std::string& service);
// Reads HealthCheckResponse.status; false when the bytes are malformed.
bool DecodeHealthCheckResponse(const grpc::ByteBuffer& buffer,
                               ServingStatus* status);

// A blocking Check on the channel (the generic stub only has async forms).
grpc::Status CheckHealth(grpc::GenericStub& stub, grpc::ClientContext* context,
                         const std::string& service, ServingStatus* status);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_HEALTH_H_
