#include "server/server.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include "server/tls.h"
#include <fcntl.h>
#include <sys/file.h>

namespace backprop::server {
namespace {

constexpr char kServiceName[] = "backprop.v1.Backprop";

absl::Status MakeDir(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

int Milliseconds(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 0,
                                               INT_MAX));
}

}  // namespace

std::vector<std::pair<std::string, int>> TransportChannelArgs(
    const ServerOptions& o) {
  return {
      {GRPC_ARG_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams},
      {GRPC_ARG_MAX_METADATA_SIZE, o.max_metadata_bytes},
      {GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, Milliseconds(o.handshake_timeout)},
      {GRPC_ARG_KEEPALIVE_TIME_MS, Milliseconds(o.keepalive_time)},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Milliseconds(o.keepalive_timeout)},
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
      {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       Milliseconds(o.min_ping_interval)},
      {GRPC_ARG_HTTP2_MAX_PING_STRIKES, o.max_ping_strikes},
      {GRPC_ARG_MAX_CONNECTION_IDLE_MS, Milliseconds(o.max_connection_idle)},
  };
}

absl::StatusOr<std::unique_ptr<BackpropServer>> BackpropServer::Start(
    const ServerOptions& options,
    const std::function<void(const std::string&)>& report) {
  // Security first: refuse a bad configuration before touching any folder.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials({options.tls_cert_file, options.tls_key_file,
                             options.tls_client_ca_file});
  if (!credentials.ok()) return credentials.status();
  const bool tls = !options.tls_cert_file.empty();
  if (!tls && !options.insecure_allow_remote && !options.listen.empty() &&
      !IsLoopbackListenAddress(options.listen)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to listen on '", options.listen,
        "' without TLS: plaintext is only served on loopback (127.0.0.0/8, "
        "::1, localhost). Give --tls_cert/--tls_key, or "
        "--insecure_allow_remote "
        "if a proxy or a private network protects the port"));
  }
  std::shared_ptr<const TokenTable> tokens;
  if (!options.auth_tokens_file.empty()) {
    absl::StatusOr<TokenTable> table =
        TokenTable::LoadFile(options.auth_tokens_file);
    if (!table.ok()) return table.status();
    tokens = std::make_shared<const TokenTable>(*std::move(table));
  }

  if (absl::Status s = MakeDir(options.service.model_dir); !s.ok()) return s;
  if (absl::Status s = MakeDir(options.service.data_dir); !s.ok()) return s;

  std::unique_ptr<BackpropServer> server(new BackpropServer());
  if (!options.service.model_dir.empty()) {
    const std::string lock = options.service.model_dir + "/LOCK";
    server->lock_fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (server->lock_fd_ < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open ", lock, ": ", std::strerror(errno)));
    }
    if (flock(server->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another backprop-server is using ", options.service.model_dir, " (",
          lock, " is locked); give each server its own --model_dir"));
    }
  }
  server->service_ = std::make_unique<BackpropService>(options.service);
  server->service_->LoadAll(report);
  if (!options.preload_fashion_mnist_dir.empty()) {
    if (absl::Status s = server->service_->PreloadFashionMnist(
            options.preload_fashion_mnist_dir);
        !s.ok()) {
      report(absl::StrCat("Fashion-MNIST not preloaded: ", s.ToString()));
    }
  }

  // Both are process-wide switches that every later ServerBuilder reads.
  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection)
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  if (!options.listen.empty()) {
    builder.AddListeningPort(options.listen, *credentials, &server->port_);
  }
  if (tokens != nullptr) {
    server->auth_service_ =
        std::make_unique<AuthorizingService>(server->service_.get(), tokens);
    builder.RegisterService(server->auth_service_.get());
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(NewReflectionAuthInterceptorFactory(tokens));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  } else {
    builder.RegisterService(server->service_.get());
  }
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options.max_send_message_bytes);
  // Transport hardening, RELIABILITY.md §3.
  for (const auto& [name, value] : TransportChannelArgs(options)) {
    builder.AddChannelArgument(name, value);
  }
  // Identity only (RELIABILITY.md §3): nothing here shows that gRPC 1.51
  // stops inflating a message once it passes the receive limit, so a small
  // gzip bomb could cost its inflated size. With gzip and deflate disabled,
  // a compressed call is refused from its headers (UNIMPLEMENTED), before
  // any message is read. Set through the builder, not as a channel
  // argument: BuildAndStart overwrites
  // GRPC_COMPRESSION_CHANNEL_ENABLED_ALGORITHMS_BITSET with its own bitset.
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  grpc::ResourceQuota quota("backprop-server");
  quota.Resize(static_cast<size_t>(options.resource_quota_bytes));
  builder.SetResourceQuota(quota);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr ||
      (!options.listen.empty() && server->port_ == 0)) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on '", options.listen,
                     "' (address in use or malformed?)"));
  }
  grpc::HealthCheckServiceInterface* health =
      server->server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus("", true);
    health->SetServingStatus(kServiceName, true);
  }
  return server;
}

BackpropServer::~BackpropServer() {
  Shutdown(absl::Seconds(5));
  server_.reset();
  auth_service_.reset();
  service_.reset();
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

std::shared_ptr<grpc::Channel> BackpropServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return server_->InProcessChannel(args);
}

void BackpropServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  // Trainings stop within one mini-batch and end their streams CANCELLED,
  // each model at its last completed (already persisted) epoch.
  service_->BeginShutdown();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

}  // namespace backprop::server
