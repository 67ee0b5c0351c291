#include "client/health.h"

#include <condition_variable>
#include <mutex>
#include <vector>

namespace backprop::client {

const char* ServingStatusName(ServingStatus s) {
  switch (s) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

grpc::ByteBuffer EncodeHealthCheckRequest(const std::string& service) {
  std::string bytes;
  if (!service.empty()) {
    bytes.push_back(0x0A);  // field 1, wire type 2 (length-delimited)
    uint64_t n = service.size();
    while (n >= 0x80) {
      bytes.push_back(static_cast<char>((n & 0x7F) | 0x80));
      n >>= 7;
    }
    bytes.push_back(static_cast<char>(n));
    bytes += service;
  }
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool DecodeHealthCheckResponse(const grpc::ByteBuffer& buffer,
                               ServingStatus* status) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  *status = ServingStatus::kUnknown;  // proto3: an absent field is 0
  size_t i = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && i < bytes.size(); shift += 7) {
      const auto b = static_cast<unsigned char>(bytes[i++]);
      *v |= uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  };
  while (i < bytes.size()) {
    uint64_t tag = 0, v = 0;
    if (!varint(&tag)) return false;
    switch (tag & 7) {
      case 0:
        if (!varint(&v)) return false;
        if ((tag >> 3) == 1) *status = static_cast<ServingStatus>(v);
        break;
      case 1:
        i += 8;
        break;
      case 2:
        if (!varint(&v) || v > bytes.size() - i) return false;
        i += v;
        break;
      case 5:
        i += 4;
        break;
      default:
        return false;
    }
  }
  return i == bytes.size();
}

grpc::Status CheckHealth(grpc::GenericStub& stub, grpc::ClientContext* context,
                         const std::string& service, ServingStatus* status) {
  const grpc::ByteBuffer request = EncodeHealthCheckRequest(service);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  stub.UnaryCall(context, kHealthCheckMethod, grpc::StubOptions(), &request,
                 &response, [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   result = std::move(s);
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (result.ok() && !DecodeHealthCheckResponse(response, status)) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        "malformed HealthCheckResponse");
  }
  return result;
}

}  // namespace backprop::client
