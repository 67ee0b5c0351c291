// Bearer-token authorization for backprop.v1.Backprop and server reflection.
//
// --auth_tokens FILE holds one "<hex sha256 of token> <role>" per line ('#'
// starts a comment). Each call must carry "authorization: Bearer <token>";
// the token's SHA-256 is compared, in constant time, with every entry.
// Missing/unknown token: UNAUTHENTICATED; known token whose role is too weak:
// PERMISSION_DENIED. Health (grpc.health.v1) stays open. Tokens are never
// logged or echoed in a status message.
//
// Roles are ordered read < train < admin; a method needs:
//   read : GetModel ListModels GetDataset ListDatasets Predict GetGradients,
//          server reflection
//   train: Train CreateModel UploadDataset
//   admin: DeleteModel DeleteDataset
//
// How the check is enforced (gRPC 1.51): a server interceptor cannot fail a
// call before its handler runs, so the Backprop methods are checked by
// AuthorizingService, a wrapper that authorizes and then delegates to the
// real BackpropService (a rejected call never reaches it). Reflection is a
// sync service registered by gRPC's plugin; NewReflectionAuthInterceptor()
// blanks the requests of an unauthorized reflection call (so it learns
// nothing) and replaces its final status with the authorization error.
#ifndef BACKPROP_SERVER_AUTH_H_
#define BACKPROP_SERVER_AUTH_H_

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include "backprop/v1/backprop.grpc.pb.h"
#include "server/service.h"

namespace backprop::server {

enum class Role { kNone = 0, kRead = 1, kTrain = 2, kAdmin = 3 };

// "read", "train", "admin" ("none" for kNone).
const char* RoleName(Role role);

// The role each backprop.v1.Backprop method needs, by method name
// ("Predict"); kNone for names that are not Backprop methods.
Role RequiredRole(absl::string_view method_name);

using Sha256Digest = std::array<unsigned char, 32>;

// SHA-256 with OpenSSL's libcrypto (EVP_Digest).
Sha256Digest Sha256(absl::string_view data);

class TokenTable {
 public:
  // Parses the --auth_tokens format. Errors name the line, never its text.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text);
  static absl::StatusOr<TokenTable> LoadFile(const std::string& path);

  // The role of `token` (kNone if unknown). Constant time in the token's
  // content: hashes it, then compares the digest with every entry without
  // stopping at a match.
  Role Lookup(absl::string_view token) const;

  // Checks the "authorization" entry of a call's client metadata.
  grpc::Status Authorize(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
      Role needed) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Sha256Digest digest;
    Role role;
  };
  std::vector<Entry> entries_;
};

// Checks every call's token against `tokens`, then hands authorized calls to
// `inner` (not owned, must outlive this). Registered instead of `inner`.
class AuthorizingService final : public v1::Backprop::CallbackService {
 public:
  AuthorizingService(BackpropService* inner,
                     std::shared_ptr<const TokenTable> tokens);

  grpc::ServerUnaryReactor* CreateModel(grpc::CallbackServerContext* ctx,
                                        const v1::CreateModelRequest* req,
                                        v1::Model* resp) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const v1::GetModelRequest* req,
                                     v1::Model* resp) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* req,
                                       v1::ListModelsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteModel(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteModelRequest* req,
                                        v1::DeleteModelResponse* resp) override;
  grpc::ServerReadReactor<v1::UploadDatasetRequest>* UploadDataset(
      grpc::CallbackServerContext* ctx, v1::Dataset* resp) override;
  grpc::ServerUnaryReactor* GetDataset(grpc::CallbackServerContext* ctx,
                                       const v1::GetDatasetRequest* req,
                                       v1::Dataset* resp) override;
  grpc::ServerUnaryReactor* ListDatasets(
      grpc::CallbackServerContext* ctx, const v1::ListDatasetsRequest* req,
      v1::ListDatasetsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteDataset(
      grpc::CallbackServerContext* ctx, const v1::DeleteDatasetRequest* req,
      v1::DeleteDatasetResponse* resp) override;
  grpc::ServerWriteReactor<v1::TrainEvent>* Train(
      grpc::CallbackServerContext* ctx, const v1::TrainRequest* req) override;
  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* ctx,
                                    const v1::PredictRequest* req,
                                    v1::PredictResponse* resp) override;
  grpc::ServerUnaryReactor* GetGradients(
      grpc::CallbackServerContext* ctx, const v1::GetGradientsRequest* req,
      v1::GetGradientsResponse* resp) override;

 private:
  grpc::Status Check(grpc::CallbackServerContext* ctx,
                     absl::string_view method) const;

  BackpropService* inner_;
  std::shared_ptr<const TokenTable> tokens_;
};

// Guards every method other than backprop.v1.Backprop's (checked by
// AuthorizingService) and grpc.health.v1's (open): in practice server
// reflection. Needs role read.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewReflectionAuthInterceptorFactory(std::shared_ptr<const TokenTable> tokens);

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_AUTH_H_
