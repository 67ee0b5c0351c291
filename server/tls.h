// Transport security for the server: TLS / mTLS credentials from PEM files,
// and the rule that plaintext stays on loopback unless explicitly allowed.
#ifndef BACKPROP_SERVER_TLS_H_
#define BACKPROP_SERVER_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <grpcpp/security/server_credentials.h>

namespace backprop::server {

struct TlsFiles {
  std::string cert;       // PEM certificate chain of the server
  std::string key;        // PEM private key of the server
  std::string client_ca;  // non-empty: mTLS, clients must present a
                          // certificate signed by this CA (PEM)
};

// TLS credentials (mTLS with GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_
// AND_VERIFY when client_ca is set). kInvalidArgument when only one of
// cert/key is given or client_ca comes without them; kFailedPrecondition
// when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

// True when the HOST of "HOST:PORT" is loopback: 127.0.0.0/8, ::1 ("[::1]")
// or "localhost". Anything else (0.0.0.0, [::], an empty host, a name)
// counts as remote.
bool IsLoopbackListenAddress(absl::string_view listen);

// Reads a whole file (kFailedPrecondition naming the path if it cannot).
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_TLS_H_
