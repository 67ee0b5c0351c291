// Builds and runs the gRPC server around BackpropService: message limits,
// transport hardening (RELIABILITY.md §3), health and reflection services,
// and an orderly shutdown. main.cc and the tests both start servers here.
#ifndef BACKPROP_SERVER_SERVER_H_
#define BACKPROP_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

#include "server/auth.h"
#include "server/limits.h"
#include "server/service.h"

namespace backprop::server {

struct ServerOptions {
  // "HOST:PORT" (port 0 picks a free one); empty: no port at all, only
  // InProcessChannel() (tests).
  std::string listen = "127.0.0.1:50051";
  ServiceOptions service;
  // Transport limits; defaults are RELIABILITY.md §3 (limits.h). Compression
  // is always identity only: a compressed request is refused before it is
  // inflated.
  int max_receive_message_bytes = limits::kMaxReceiveMessageBytes;
  int max_send_message_bytes = limits::kMaxSendMessageBytes;
  int max_concurrent_streams = limits::kMaxConcurrentStreams;  // per connection
  int max_metadata_bytes = limits::kMaxMetadataBytes;
  absl::Duration handshake_timeout = limits::kHandshakeTimeout;
  absl::Duration keepalive_time = limits::kKeepaliveTime;
  absl::Duration keepalive_timeout = limits::kKeepaliveTimeout;
  absl::Duration min_ping_interval = limits::kMinPingInterval;
  int max_ping_strikes = limits::kMaxPingStrikes;
  absl::Duration max_connection_idle = limits::kMaxConnectionIdle;
  int64_t resource_quota_bytes = limits::kResourceQuotaBytes;
  bool reflection = true;
  // Non-empty: register Fashion-MNIST from this folder when its files are
  // there (a missing folder is reported, not fatal).
  std::string preload_fashion_mnist_dir;
  // TLS (tls.h): cert + key enable TLS; client_ca adds mTLS.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Without TLS, a listen address that is not loopback is refused
  // (kFailedPrecondition) unless this is set.
  bool insecure_allow_remote = false;
  // Non-empty: every Backprop and reflection call needs a bearer token
  // listed in this file (auth.h); health stays open.
  std::string auth_tokens_file;
};

// The integer channel arguments Start() gives the ServerBuilder for the
// transport settings of `options` (names are GRPC_ARG_*), in order.
std::vector<std::pair<std::string, int>> TransportChannelArgs(
    const ServerOptions& options);

class BackpropServer {
 public:
  // Creates the directories, takes model_dir/LOCK (kFailedPrecondition when
  // another server holds it), loads what they hold (reporting each file that
  // fails through `report`), starts serving, and marks health SERVING.
  static absl::StatusOr<std::unique_ptr<BackpropServer>> Start(
      const ServerOptions& options,
      const std::function<void(const std::string&)>& report);

  ~BackpropServer();

  // The port actually bound (0 when options.listen was empty).
  int port() const { return port_; }
  std::shared_ptr<grpc::Channel> InProcessChannel();
  BackpropService& service() { return *service_; }

  // Health NOT_SERVING, cancels trainings, stops accepting, lets in-flight
  // calls finish for up to `grace` (then cancels them), and waits. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  BackpropServer() = default;

  int lock_fd_ = -1;  // flock on model_dir/LOCK: one server per folder
  std::unique_ptr<BackpropService> service_;
  std::unique_ptr<AuthorizingService> auth_service_;  // with auth_tokens_file
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_SERVER_H_
