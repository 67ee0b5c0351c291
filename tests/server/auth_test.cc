// Security hardening: bearer tokens with roles (server/auth.h), TLS and mTLS
// (server/tls.h), and the loopback-only rule for plaintext, in-process with
// the real BackpropServer::Start and against the real binary.
#include "server/auth.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "backprop/v1/backprop.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/tls.h"
#include "tests/server/test_util.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>

namespace backprop::server {
namespace {

using ::backprop::server::testing::DoubleMatrix;
using ::backprop::server::testing::Spec;
using ::backprop::server::testing::TempDir;

// Tokens and their SHA-256, hex, from `printf %s TOKEN | sha256sum`.
constexpr char kReadToken[] = "reader-token";
constexpr char kTrainToken[] = "trainer-token";
constexpr char kAdminToken[] = "admin-token";
constexpr char kTokensFile[] =
    "# test tokens\n"
    "ba5005a40cf5212e4ac0190104cc127edab013294bb71279a975b27a80982d45 read\n"
    "\n"
    "7913868486a8f53bb47d4c0557d26493dc77536998063d945da4705649deabfc train"
    "  # trailing comment\n"
    "10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a admin\n";

constexpr char kReflectionMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
// ServerReflectionRequest{list_services: "*"} encoded by hand: field 7,
// wire type 2 (tag 0x3a), length 1, "*".
const std::string kListServicesRequest("\x3a\x01*", 3);

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

std::string ToString(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

struct GenericResult {
  grpc::Status status;
  std::string replies;  // every reply message, concatenated
};

// Calls `method` as a stream of raw bytes (works for every method shape):
// one request message, half-close, read all replies, finish.
GenericResult CallGeneric(const std::shared_ptr<grpc::Channel>& channel,
                          const std::string& method, const std::string& request,
                          const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(20));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::CompletionQueue cq;
  auto wait = [&cq](intptr_t tag) {
    void* got = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&got, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(got), tag);
    return ok;
  };
  GenericResult result;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  if (wait(1)) {
    grpc::Slice slice(request);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    if (wait(2)) {
      call->WritesDone(reinterpret_cast<void*>(3));
      wait(3);
    }
  }
  grpc::ByteBuffer reply;
  while (true) {
    call->Read(&reply, reinterpret_cast<void*>(4));
    if (!wait(4)) break;
    result.replies += ToString(reply);
  }
  call->Finish(&result.status, reinterpret_cast<void*>(5));
  wait(5);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

// The service as the generated descriptor pool knows it (gRPC's C++ stubs
// have no descriptor() of their own).
const google::protobuf::ServiceDescriptor* BackpropDescriptor() {
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      "backprop.v1.Backprop");
}

std::vector<std::string> BackpropMethodPaths() {
  std::vector<std::string> paths;
  const google::protobuf::ServiceDescriptor* service = BackpropDescriptor();
  for (int i = 0; i < service->method_count(); ++i) {
    paths.push_back("/" + service->full_name() + "/" +
                    service->method(i)->name());
  }
  return paths;
}

// ---------------------------------------------------------------------------
// Token table, roles, loopback rule.

TEST(Sha256Test, MatchesFips180Vector) {
  // FIPS 180-2 appendix B.1: SHA-256("abc").
  const Sha256Digest d = Sha256("abc");
  std::string hex;
  for (unsigned char c : d) {
    static const char kHex[] = "0123456789abcdef";
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  EXPECT_EQ(hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokenTableTest, ParsesRolesAndComments) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(kTokensFile);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);
  EXPECT_EQ(table->Lookup(kReadToken), Role::kRead);
  EXPECT_EQ(table->Lookup(kTrainToken), Role::kTrain);
  EXPECT_EQ(table->Lookup(kAdminToken), Role::kAdmin);
  EXPECT_EQ(table->Lookup("reader-token "), Role::kNone);
  EXPECT_EQ(table->Lookup(""), Role::kNone);
}

TEST(TokenTableTest, RejectsBadFilesWithoutEchoingThem) {
  const std::string digest =
      "ba5005a40cf5212e4ac0190104cc127edab013294bb71279a975b27a80982d45";
  for (const std::string& text : std::vector<std::string>{
           std::string("# only comments\n"),
           digest + " root\n",                       // unknown role
           digest.substr(1) + " read\n",             // 63 digits
           "secret-token read\n",                    // not a digest
           digest + " read extra\n",                 // three fields
           digest + " read\n" + digest + " admin\n"  // duplicate
       }) {
    absl::StatusOr<TokenTable> table = TokenTable::Parse(text);
    EXPECT_FALSE(table.ok()) << text;
    EXPECT_EQ(table.status().message().find("secret-token"),
              absl::string_view::npos);
  }
}

TEST(TokenTableTest, AuthorizeChecksSchemeTokenAndRole) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(kTokensFile);
  ASSERT_TRUE(table.ok());
  using Md = std::multimap<grpc::string_ref, grpc::string_ref>;
  EXPECT_EQ(table->Authorize(Md{}, Role::kRead).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      table->Authorize(Md{{"authorization", "Basic reader-token"}}, Role::kRead)
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status weak = table->Authorize(
      Md{{"authorization", "Bearer reader-token"}}, Role::kTrain);
  EXPECT_EQ(weak.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(weak.error_message().find("reader-token"), std::string::npos);
  EXPECT_TRUE(
      table
          ->Authorize(Md{{"authorization", "Bearer admin-token"}}, Role::kTrain)
          .ok());
}

TEST(RoleTest, EveryBackpropMethodHasARole) {
  const google::protobuf::ServiceDescriptor* service = BackpropDescriptor();
  for (int i = 0; i < service->method_count(); ++i) {
    EXPECT_NE(RequiredRole(service->method(i)->name()), Role::kNone)
        << service->method(i)->name();
  }
  EXPECT_EQ(RequiredRole("Predict"), Role::kRead);
  EXPECT_EQ(RequiredRole("Train"), Role::kTrain);
  EXPECT_EQ(RequiredRole("DeleteDataset"), Role::kAdmin);
}

TEST(LoopbackTest, OnlyLoopbackHostsCount) {
  for (const char* a : {"127.0.0.1:50051", "127.8.9.10:0", "localhost:1",
                        "LOCALHOST:1", "[::1]:50051"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(a)) << a;
  }
  for (const char* a :
       {"0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.1:1", "128.0.0.1:1",
        "example.com:1", "localhost.example.com:1", "[::2]:1"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(a)) << a;
  }
}

// ---------------------------------------------------------------------------
// A server with --auth_tokens, called over its in-process channel.

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.Sub("tokens"), kTokensFile);
    ServerOptions options;
    options.listen = "";
    options.service.model_dir = dir_.Sub("models");
    options.service.data_dir = dir_.Sub("datasets");
    options.auth_tokens_file = dir_.Sub("tokens");
    auto server = BackpropServer::Start(options, [](const std::string&) {});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = server_->InProcessChannel();
    stub_ = v1::Backprop::NewStub(channel_);
  }

  grpc::Status CreateModel(const std::string& token, const std::string& id) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::CreateModelRequest req;
    req.set_model_id(id);
    *req.mutable_spec() = Spec({3, 2, 1});
    v1::Model resp;
    return stub_->CreateModel(&ctx, req, &resp);
  }

  TempDir dir_;
  std::unique_ptr<BackpropServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Backprop::Stub> stub_;
};

TEST_F(AuthServerTest, EveryMethodWithoutTokenIsUnauthenticated) {
  std::vector<std::string> methods = BackpropMethodPaths();
  ASSERT_EQ(methods.size(), 11u);  // the 11 rpcs of backprop.proto
  methods.push_back(kReflectionMethod);
  for (const std::string& method : methods) {
    const bool reflection = method == kReflectionMethod;
    const GenericResult r = CallGeneric(
        channel_, method, reflection ? kListServicesRequest : "", "");
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method << ": " << r.status.error_message();
    // Reflection's handler runs, but on blanked requests: no service names.
    EXPECT_EQ(r.replies.find("backprop.v1"), std::string::npos) << method;
  }
}

TEST_F(AuthServerTest, EveryMethodWithWrongTokenIsUnauthenticated) {
  std::vector<std::string> methods = BackpropMethodPaths();
  methods.push_back(kReflectionMethod);
  for (const std::string& method : methods) {
    const GenericResult r = CallGeneric(channel_, method, "", "wrong-token");
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method;
  }
}

TEST_F(AuthServerTest, ReflectionWorksWithReadToken) {
  const GenericResult r = CallGeneric(channel_, kReflectionMethod,
                                      kListServicesRequest, kReadToken);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_NE(r.replies.find("backprop.v1.Backprop"), std::string::npos);
}

TEST_F(AuthServerTest, HealthNeedsNoToken) {
  // HealthCheckRequest{} is empty; HealthCheckResponse{status: SERVING} is
  // field 1 varint 1: bytes 08 01.
  const GenericResult r =
      CallGeneric(channel_, "/grpc.health.v1.Health/Check", "", "");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.replies, std::string("\x08\x01", 2));
}

TEST_F(AuthServerTest, ReadTokenCannotTrainOrCreateButCanPredict) {
  EXPECT_EQ(CreateModel(kReadToken, "m").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(CreateModel(kTrainToken, "m").ok());

  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kReadToken);
    v1::TrainRequest req;
    req.set_model_id("m");
    req.set_epochs(1);
    auto reader = stub_->Train(&ctx, req);
    v1::TrainEvent ev;
    EXPECT_FALSE(reader->Read(&ev));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kReadToken);
    v1::PredictRequest req;
    req.set_model_id("m");
    *req.mutable_inputs() = DoubleMatrix(1, 3, {0.1, 0.2, 0.3});
    v1::PredictResponse resp;
    grpc::Status s = stub_->Predict(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  {
    // train < admin: deleting is refused and the model stays.
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kTrainToken);
    v1::DeleteModelRequest req;
    req.set_model_id("m");
    v1::DeleteModelResponse resp;
    EXPECT_EQ(stub_->DeleteModel(&ctx, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(CreateModel(kAdminToken, "m").error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }
}

TEST(AuthServerStartTest, BadTokensFileRefusesToStart) {
  TempDir dir;
  WriteFile(dir.Sub("tokens"), "not-a-digest read\n");
  ServerOptions options;
  options.listen = "";
  options.service.model_dir = dir.Sub("models");
  options.service.data_dir = dir.Sub("datasets");
  options.auth_tokens_file = dir.Sub("tokens");
  EXPECT_EQ(
      BackpropServer::Start(options, [](const std::string&) {}).status().code(),
      absl::StatusCode::kInvalidArgument);
  options.auth_tokens_file = dir.Sub("missing");
  EXPECT_FALSE(BackpropServer::Start(options, [](const std::string&) {}).ok());
}

// ---------------------------------------------------------------------------
// TLS and mTLS over a real loopback port, with a throwaway PKI made by the
// openssl command.

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TempDir();
    const std::string d = pki_->path();
    const std::string script =
        "set -e; cd '" + d +
        "'\n"
        "key() { openssl genpkey -algorithm EC -pkeyopt "
        "ec_paramgen_curve:P-256 -out $1.key 2>/dev/null; }\n"
        "ca() { key $1; openssl req -x509 -new -key $1.key -out $1.pem -days 2 "
        "-subj /CN=$1; }\n"
        "leaf() { key $1; openssl req -new -key $1.key -out $1.csr -subj "
        "/CN=$1; printf '%s\\n' \"$3\" > $1.ext; openssl x509 -req -in "
        "$1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 "
        "-extfile $1.ext 2>/dev/null; }\n"
        "ca ca; ca other-ca\n"
        "leaf server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'\n"
        "leaf client ca 'extendedKeyUsage=clientAuth'\n"
        "leaf stranger other-ca 'extendedKeyUsage=clientAuth'\n";
    WriteFile(d + "/make-pki.sh", script);
    const std::string cmd =
        "bash '" + d + "/make-pki.sh' >'" + d + "/log' 2>&1";
    pki_ok_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(pki_ok_) << "openssl failed; see " << pki_->Sub("log");
  }

  static std::string Pki(const std::string& name) { return pki_->Sub(name); }
  static std::string Read(const std::string& name) {
    return *ReadFileToString(Pki(name));
  }

  std::unique_ptr<BackpropServer> StartTls(bool mtls,
                                           const std::string& tokens = "") {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.service.model_dir = dir_.Sub("models");
    options.service.data_dir = dir_.Sub("datasets");
    options.tls_cert_file = Pki("server.pem");
    options.tls_key_file = Pki("server.key");
    if (mtls) options.tls_client_ca_file = Pki("ca.pem");
    if (!tokens.empty()) {
      WriteFile(dir_.Sub("tokens"), tokens);
      options.auth_tokens_file = dir_.Sub("tokens");
    }
    auto server = BackpropServer::Start(options, [](const std::string&) {});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // ListModels with the given credentials; the status tells whether the
  // connection (handshake included) worked.
  static grpc::Status ListModels(
      int port, const std::shared_ptr<grpc::ChannelCredentials>& creds,
      const std::string& token = "") {
    auto stub = v1::Backprop::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::ListModelsResponse resp;
    return stub->ListModels(&ctx, v1::ListModelsRequest(), &resp);
  }

  static std::shared_ptr<grpc::ChannelCredentials> Ssl(
      const std::string& ca, const std::string& client = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Read(ca + ".pem");
    if (!client.empty()) {
      o.pem_cert_chain = Read(client + ".pem");
      o.pem_private_key = Read(client + ".key");
    }
    return grpc::SslCredentials(o);
  }

  static TempDir* pki_;
  static bool pki_ok_;
  TempDir dir_;
};

TempDir* TlsTest::pki_ = nullptr;
bool TlsTest::pki_ok_ = false;

TEST_F(TlsTest, TlsServerAcceptsTlsClientsOfItsCaOnly) {
  std::unique_ptr<BackpropServer> server = StartTls(/*mtls=*/false);
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  grpc::Status s = ListModels(port, Ssl("ca"));
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ListModels(port, grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ListModels(port, Ssl("other-ca")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MtlsRequiresAClientCertificateOfTheClientCa) {
  std::unique_ptr<BackpropServer> server = StartTls(/*mtls=*/true);
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  EXPECT_NE(ListModels(port, Ssl("ca")).error_code(), grpc::StatusCode::OK);
  EXPECT_NE(ListModels(port, Ssl("ca", "stranger")).error_code(),
            grpc::StatusCode::OK);
  grpc::Status s = ListModels(port, Ssl("ca", "client"));
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(TlsTest, TokensWorkOverTls) {
  std::unique_ptr<BackpropServer> server =
      StartTls(/*mtls=*/false, kTokensFile);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(ListModels(server->port(), Ssl("ca")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status s = ListModels(server->port(), Ssl("ca"), kReadToken);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(TlsTest, PlaintextOnlyOnLoopbackUnlessAllowed) {
  ServerOptions options;
  options.listen = "0.0.0.0:0";
  options.service.model_dir = dir_.Sub("models");
  options.service.data_dir = dir_.Sub("datasets");
  auto refused = BackpropServer::Start(options, [](const std::string&) {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--insecure_allow_remote"),
            absl::string_view::npos);
  options.insecure_allow_remote = true;
  auto allowed = BackpropServer::Start(options, [](const std::string&) {});
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  (*allowed)->Shutdown(absl::Seconds(1));
  allowed->reset();
  options.insecure_allow_remote = false;
  options.tls_cert_file = Pki("server.pem");
  options.tls_key_file = Pki("server.key");
  auto tls = BackpropServer::Start(options, [](const std::string&) {});
  EXPECT_TRUE(tls.ok()) << tls.status();
}

// ---------------------------------------------------------------------------
// The real binary refuses a non-loopback plaintext address.

struct RunResult {
  int exit_status = -1;  // waitpid status
  std::string first_line;
};

// Starts backprop-server with `flags`; returns its first stdout line and,
// after SIGTERM if it was still running, its exit status.
RunResult RunServer(const TempDir& dir, std::vector<std::string> flags) {
  flags.push_back("--model_dir=" + dir.Sub("models"));
  flags.push_back("--data_dir=" + dir.Sub("datasets"));
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {};
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(BACKPROP_SERVER_BINARY));
  for (std::string& f : flags) argv.push_back(f.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    // As in the Docker image and the integration tests. OpenBLAS's pool
    // threads start before main() blocks SIGTERM, so with more than one the
    // kernel may hand SIGTERM to one of them and kill the process.
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    execv(BACKPROP_SERVER_BINARY, argv.data());
    _exit(127);
  }
  close(out[1]);
  RunResult r;
  char c;
  while (true) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 60'000) <= 0 || read(out[0], &c, 1) != 1 || c == '\n') {
      break;
    }
    r.first_line.push_back(c);
  }
  kill(pid, SIGTERM);  // no-op if it already exited
  waitpid(pid, &r.exit_status, 0);
  close(out[0]);  // only now: the server never gets SIGPIPE from us
  return r;
}

TEST(ServerBinarySecurityTest, RefusesRemotePlaintextUnlessAllowed) {
  TempDir dir;
  const RunResult refused = RunServer(dir, {"--listen=0.0.0.0:0"});
  EXPECT_EQ(refused.first_line, "");
  ASSERT_TRUE(WIFEXITED(refused.exit_status));
  EXPECT_NE(WEXITSTATUS(refused.exit_status), 0);

  const RunResult allowed =
      RunServer(dir, {"--listen=0.0.0.0:0", "--insecure_allow_remote"});
  EXPECT_EQ(allowed.first_line.rfind("listening on 0.0.0.0:", 0), 0u)
      << allowed.first_line;
  ASSERT_TRUE(WIFEXITED(allowed.exit_status))
      << "killed by signal " << WTERMSIG(allowed.exit_status);
  EXPECT_EQ(WEXITSTATUS(allowed.exit_status), 0);  // clean SIGTERM shutdown
}

}  // namespace
}  // namespace backprop::server
