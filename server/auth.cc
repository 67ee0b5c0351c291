#include "server/auth.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <google/protobuf/message_lite.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace backprop::server {
namespace {

constexpr absl::string_view kBackpropPrefix = "/backprop.v1.Backprop/";
constexpr absl::string_view kHealthPrefix = "/grpc.health.v1.Health/";
constexpr absl::string_view kBearer = "Bearer ";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ParseHexDigest(absl::string_view hex, Sha256Digest* out) {
  if (hex.size() != 2 * out->size()) return false;
  for (size_t i = 0; i < out->size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* ctx,
                                 grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// Streaming calls refused before they reach the service. gRPC keeps a
// Finish() issued before the reactor is bound and replays it.
template <typename T>
class RejectedWriter final : public grpc::ServerWriteReactor<T> {
 public:
  explicit RejectedWriter(grpc::Status status) {
    this->Finish(std::move(status));
  }
  void OnDone() override { delete this; }
};

template <typename T>
class RejectedReader final : public grpc::ServerReadReactor<T> {
 public:
  explicit RejectedReader(grpc::Status status) {
    this->Finish(std::move(status));
  }
  void OnDone() override { delete this; }
};

class ReflectionAuthInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ReflectionAuthInterceptor(std::shared_ptr<const TokenTable> tokens)
      : tokens_(std::move(tokens)) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      status_ =
          tokens_->Authorize(*methods->GetRecvInitialMetadata(), Role::kRead);
    }
    if (!status_.ok()) {
      // The handler still runs, but only ever sees empty requests, and the
      // caller gets the authorization error as the final status.
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::POST_RECV_MESSAGE)) {
        if (void* message = methods->GetRecvMessage(); message != nullptr) {
          static_cast<google::protobuf::MessageLite*>(message)->Clear();
        }
      }
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_STATUS)) {
        methods->ModifySendStatus(status_);
      }
    }
    methods->Proceed();
  }

 private:
  std::shared_ptr<const TokenTable> tokens_;
  grpc::Status status_;
};

class ReflectionAuthFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ReflectionAuthFactory(std::shared_ptr<const TokenTable> tokens)
      : tokens_(std::move(tokens)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const absl::string_view method =
        info->method() == nullptr ? "" : info->method();
    if (absl::StartsWith(method, kBackpropPrefix) ||
        absl::StartsWith(method, kHealthPrefix)) {
      return nullptr;
    }
    return new ReflectionAuthInterceptor(tokens_);
  }

 private:
  std::shared_ptr<const TokenTable> tokens_;
};

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kTrain:
      return "train";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

Role RequiredRole(absl::string_view method_name) {
  static const auto* const kRoles =
      new std::map<std::string, Role, std::less<>>{
          {"GetModel", Role::kRead},       {"ListModels", Role::kRead},
          {"GetDataset", Role::kRead},     {"ListDatasets", Role::kRead},
          {"Predict", Role::kRead},        {"GetGradients", Role::kRead},
          {"Train", Role::kTrain},         {"CreateModel", Role::kTrain},
          {"UploadDataset", Role::kTrain}, {"DeleteModel", Role::kAdmin},
          {"DeleteDataset", Role::kAdmin},
      };
  auto it = kRoles->find(method_name);
  return it == kRoles->end() ? Role::kNone : it->second;
}

Sha256Digest Sha256(absl::string_view data) {
  Sha256Digest digest{};
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(),
             nullptr);
  return digest;
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    const std::string where = absl::StrCat("auth tokens line ", line_number);
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected '<hex sha256> <role>'"));
    }
    Entry entry;
    if (!ParseHexDigest(fields[0], &entry.digest)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ": the first field must be 64 hex digits (sha256 of the "
                       "token, e.g. from `printf %s TOKEN | sha256sum`)"));
    }
    if (fields[1] == "read") {
      entry.role = Role::kRead;
    } else if (fields[1] == "train") {
      entry.role = Role::kTrain;
    } else if (fields[1] == "admin") {
      entry.role = Role::kAdmin;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": role must be read, train or admin"));
    }
    for (const Entry& other : table.entries_) {
      if (other.digest == entry.digest) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": the same token is listed twice"));
      }
    }
    table.entries_.push_back(entry);
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError(
        "auth tokens file lists no token (every call would be refused)");
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read auth tokens file ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return Parse(text.str());
}

Role TokenTable::Lookup(absl::string_view token) const {
  const Sha256Digest digest = Sha256(token);
  unsigned role = 0;
  // No early exit: every entry is compared with CRYPTO_memcmp (constant
  // time), and the match is folded in without a branch on it. Entries are
  // unique, so at most one matches.
  for (const Entry& entry : entries_) {
    const unsigned differs =
        CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) != 0;
    role |= (differs - 1u) & static_cast<unsigned>(entry.role);
  }
  return static_cast<Role>(role);
}

grpc::Status TokenTable::Authorize(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
    Role needed) const {
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing 'authorization: Bearer <token>' metadata");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWithIgnoreCase(value, kBearer)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization metadata must be 'Bearer <token>'");
  }
  const Role role =
      Lookup(absl::StripAsciiWhitespace(value.substr(kBearer.size())));
  if (role == Role::kNone) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown token");
  }
  if (static_cast<int>(role) < static_cast<int>(needed)) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("this method needs role '", RoleName(needed),
                     "'; the token has role '", RoleName(role), "'"));
  }
  return grpc::Status::OK;
}

AuthorizingService::AuthorizingService(BackpropService* inner,
                                       std::shared_ptr<const TokenTable> tokens)
    : inner_(inner), tokens_(std::move(tokens)) {}

grpc::Status AuthorizingService::Check(grpc::CallbackServerContext* ctx,
                                       absl::string_view method) const {
  return tokens_->Authorize(ctx->client_metadata(), RequiredRole(method));
}

grpc::ServerUnaryReactor* AuthorizingService::CreateModel(
    grpc::CallbackServerContext* ctx, const v1::CreateModelRequest* req,
    v1::Model* resp) {
  grpc::Status s = Check(ctx, "CreateModel");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->CreateModel(ctx, req, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::GetModel(
    grpc::CallbackServerContext* ctx, const v1::GetModelRequest* req,
    v1::Model* resp) {
  grpc::Status s = Check(ctx, "GetModel");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->GetModel(ctx, req, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::ListModels(
    grpc::CallbackServerContext* ctx, const v1::ListModelsRequest* req,
    v1::ListModelsResponse* resp) {
  grpc::Status s = Check(ctx, "ListModels");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->ListModels(ctx, req, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::DeleteModel(
    grpc::CallbackServerContext* ctx, const v1::DeleteModelRequest* req,
    v1::DeleteModelResponse* resp) {
  grpc::Status s = Check(ctx, "DeleteModel");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->DeleteModel(ctx, req, resp);
}

grpc::ServerReadReactor<v1::UploadDatasetRequest>*
AuthorizingService::UploadDataset(grpc::CallbackServerContext* ctx,
                                  v1::Dataset* resp) {
  grpc::Status s = Check(ctx, "UploadDataset");
  if (!s.ok()) {
    return new RejectedReader<v1::UploadDatasetRequest>(std::move(s));
  }
  return inner_->UploadDataset(ctx, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::GetDataset(
    grpc::CallbackServerContext* ctx, const v1::GetDatasetRequest* req,
    v1::Dataset* resp) {
  grpc::Status s = Check(ctx, "GetDataset");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->GetDataset(ctx, req, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::ListDatasets(
    grpc::CallbackServerContext* ctx, const v1::ListDatasetsRequest* req,
    v1::ListDatasetsResponse* resp) {
  grpc::Status s = Check(ctx, "ListDatasets");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->ListDatasets(ctx, req, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::DeleteDataset(
    grpc::CallbackServerContext* ctx, const v1::DeleteDatasetRequest* req,
    v1::DeleteDatasetResponse* resp) {
  grpc::Status s = Check(ctx, "DeleteDataset");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->DeleteDataset(ctx, req, resp);
}

grpc::ServerWriteReactor<v1::TrainEvent>* AuthorizingService::Train(
    grpc::CallbackServerContext* ctx, const v1::TrainRequest* req) {
  grpc::Status s = Check(ctx, "Train");
  if (!s.ok()) return new RejectedWriter<v1::TrainEvent>(std::move(s));
  return inner_->Train(ctx, req);
}

grpc::ServerUnaryReactor* AuthorizingService::Predict(
    grpc::CallbackServerContext* ctx, const v1::PredictRequest* req,
    v1::PredictResponse* resp) {
  grpc::Status s = Check(ctx, "Predict");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->Predict(ctx, req, resp);
}

grpc::ServerUnaryReactor* AuthorizingService::GetGradients(
    grpc::CallbackServerContext* ctx, const v1::GetGradientsRequest* req,
    v1::GetGradientsResponse* resp) {
  grpc::Status s = Check(ctx, "GetGradients");
  if (!s.ok()) return Reject(ctx, std::move(s));
  return inner_->GetGradients(ctx, req, resp);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewReflectionAuthInterceptorFactory(std::shared_ptr<const TokenTable> tokens) {
  return std::make_unique<ReflectionAuthFactory>(std::move(tokens));
}

}  // namespace backprop::server
