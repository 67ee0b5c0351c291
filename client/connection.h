// The channel every command shares, the options that shape it, and how a
// failed call is reported to the user.
#ifndef BACKPROP_CLIENT_CONNECTION_H_
#define BACKPROP_CLIENT_CONNECTION_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "backprop/v1/backprop.grpc.pb.h"

namespace backprop::client {

// Exit codes of the CLI.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;  // an RPC failed, or a file was bad
inline constexpr int kExitUsage = 2;  // bad flags or flag values
inline constexpr int kExitInterrupted = 130;  // 128 + SIGINT

inline constexpr char kDefaultServer[] = "127.0.0.1:50051";
// Unary calls get this deadline unless --deadline says otherwise; streams get
// none unless --deadline is given (a training run may take hours).
inline constexpr double kDefaultUnaryDeadlineSeconds = 60.0;
// Requests we build are kept under this many bytes: the server's receive
// limit is gRPC's default 4 MiB (RELIABILITY.md §3).
inline constexpr size_t kRequestByteBudget = 3u << 20;

// Flags shared by every command (set by main.cc before a command runs).
struct GlobalOptions {
  std::string server = kDefaultServer;
  double deadline_seconds = 0;  // 0: kDefaultUnaryDeadlineSeconds, streams none
  bool json = false;
  // TLS: any of these set switches the channel to TLS. tls_ca: PEM roots
  // that sign the server's certificate (empty: the system's roots);
  // tls_cert/tls_key: client certificate for mTLS.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Non-empty: sent as "authorization: Bearer <token>" on every call.
  // Never printed.
  std::string token;
};

// A unary method of the stub, e.g. &backprop::v1::Backprop::Stub::GetModel.
template <typename Request, typename Response>
using UnaryRpc = grpc::Status (backprop::v1::Backprop::Stub::*)(
    grpc::ClientContext*, const Request&, Response*);

class Connection {
 public:
  // Creates the channel lazily on first use. Receives up to 512 MiB per
  // message so that every response the server may send fits; keepalive
  // every 60 s so that a dead peer is noticed during a long Train stream.
  explicit Connection(const GlobalOptions& options);
  // A connection of its own (not shared with other channels to the same
  // server through gRPC's global subchannel pool), for load generation
  // over several TCP connections.
  Connection(const GlobalOptions& options, int private_index);

  std::shared_ptr<grpc::Channel> channel();
  backprop::v1::Backprop::Stub& stub();

  // Applies the deadline for a unary call.
  void PrepareUnary(grpc::ClientContext* context) const;
  // Applies the deadline for a streaming call (none unless --deadline).
  void PrepareStream(grpc::ClientContext* context) const;

  // One unary call in a context of its own with the unary deadline.
  template <typename Request, typename Response>
  grpc::Status Call(UnaryRpc<Request, Response> rpc, const Request& request,
                    Response* response) {
    grpc::ClientContext context;
    PrepareUnary(&context);
    return (stub().*rpc)(&context, request, response);
  }

  const GlobalOptions& options() const { return options_; }

 private:
  GlobalOptions options_;
  int private_index_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<backprop::v1::Backprop::Stub> stub_;
};

// "NOT_FOUND" for grpc::StatusCode::NOT_FOUND, and so on.
const char* StatusCodeName(grpc::StatusCode code);

// Prints "error: CODE: message" to stderr and returns kExitError.
int ReportRpcError(const grpc::Status& status);
// Prints "error: message" to stderr and returns the given exit code.
int ReportError(const std::string& message, int exit_code = kExitError);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_CONNECTION_H_
