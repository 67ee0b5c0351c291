// The real backprop-server binary: started on port 0 with temporary folders,
// it prints "listening on HOST:PORT", serves health and reflection, stops
// cleanly on SIGTERM and keeps every model at a completed epoch across a
// restart, even after SIGKILL during training.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "tests/server/test_util.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace backprop::server {
namespace {

using ::backprop::server::testing::AllValues;
using ::backprop::server::testing::RunTrain;
using ::backprop::server::testing::Spec;
using ::backprop::server::testing::SyntheticExamples;
using ::backprop::server::testing::TempDir;

// A child process running backprop-server.
class ServerProcess {
 public:
  explicit ServerProcess(const TempDir& dir) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    const std::string models = "--model_dir=" + dir.Sub("models");
    const std::string data = "--data_dir=" + dir.Sub("datasets");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      execl(BACKPROP_SERVER_BINARY, BACKPROP_SERVER_BINARY,
            "--listen=127.0.0.1:0", models.c_str(), data.c_str(),
            "--max_concurrent_trainings=2", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    stdout_ = out[0];
  }

  ~ServerProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
  }

  // The first stdout line, or "" after timeout_ms.
  std::string ReadLine(int timeout_ms) {
    std::string line;
    char c;
    while (true) {
      pollfd p{stdout_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) return "";
      if (read(stdout_, &c, 1) != 1) return "";
      if (c == '\n') return line;
      line.push_back(c);
    }
  }

  // Parses "listening on 127.0.0.1:PORT"; 0 if the line is not that.
  int AwaitListening() {
    const std::string line = ReadLine(60'000);
    std::smatch m;
    static const std::regex kLine("listening on 127\\.0\\.0\\.1:([0-9]+)");
    if (!std::regex_match(line, m, kLine)) {
      ADD_FAILURE() << "unexpected first line: '" << line << "'";
      return 0;
    }
    return std::stoi(m[1]);
  }

  // Exit status (as from waitpid) or -1 when it did not exit in timeout_ms.
  int Wait(int timeout_ms) {
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      const int ready = poll(&p, 1, timeout_ms);
      close(pidfd);
      if (ready <= 0) return -1;
    }
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) return -1;
    reaped_ = true;
    return status;
  }

  void Signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
  bool reaped_ = false;
};

std::unique_ptr<v1::Backprop::Stub> Connect(int port) {
  return v1::Backprop::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
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

grpc::ByteBuffer FromString(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

v1::Model GetModel(v1::Backprop::Stub* stub, const std::string& id) {
  v1::GetModelRequest req;
  req.set_model_id(id);
  req.set_include_parameters(true);
  v1::Model m;
  grpc::ClientContext ctx;
  grpc::Status s = stub->GetModel(&ctx, req, &m);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return m;
}

v1::TrainRequest LongTrain(const std::string& id, uint32_t epochs) {
  v1::TrainRequest req;
  req.set_model_id(id);
  *req.mutable_examples() = SyntheticExamples(2000, 2, 5);
  req.set_epochs(epochs);
  req.set_mini_batch_size(10);
  req.set_learning_rate(1.0);
  return req;
}

TEST(ServerBinaryTest, ServesHealthAndReflectionAndRestartsBitwise) {
  TempDir dir;
  v1::Model before;
  {
    ServerProcess p(dir);
    const int port = p.AwaitListening();
    ASSERT_GT(port, 0);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                            grpc::InsecureChannelCredentials());
    grpc::GenericStub generic(channel);

    // grpc.health.v1.Health/Check{service: "backprop.v1.Backprop"}: field 1,
    // length-delimited. SERVING is status = 1, i.e. bytes 08 01.
    const std::string name = "backprop.v1.Backprop";
    grpc::ByteBuffer request = FromString(
        std::string("\x0a", 1) + static_cast<char>(name.size()) + name);
    grpc::ByteBuffer response;
    grpc::ClientContext hctx;
    testing::Notification done;
    grpc::Status hstatus;
    generic.UnaryCall(&hctx, "/grpc.health.v1.Health/Check",
                      grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) {
                        hstatus = s;
                        done.Notify();
                      });
    ASSERT_TRUE(done.WaitFor(std::chrono::seconds(30)));
    ASSERT_TRUE(hstatus.ok()) << hstatus.error_message();
    EXPECT_EQ(ToString(response), std::string("\x08\x01", 2));

    // Reflection: ServerReflectionInfo{list_services: ""} (field 7).
    grpc::CompletionQueue cq;
    grpc::ClientContext rctx;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
        generic.PrepareCall(
            &rctx,
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    call->Write(FromString(std::string("\x3a\x00", 2)),
                reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    grpc::ByteBuffer listing;
    call->Read(&listing, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    EXPECT_NE(ToString(listing).find("backprop.v1.Backprop"),
              std::string::npos);
    EXPECT_NE(ToString(listing).find("grpc.health.v1.Health"),
              std::string::npos);
    call->WritesDone(reinterpret_cast<void*>(4));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    grpc::Status rstatus;
    call->Finish(&rstatus, reinterpret_cast<void*>(5));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_TRUE(rstatus.ok()) << rstatus.error_message();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }

    auto stub = v1::Backprop::NewStub(channel);
    v1::CreateModelRequest create;
    create.set_model_id("persist");
    *create.mutable_spec() = Spec({2, 3, 2});
    v1::Model created;
    grpc::ClientContext cctx;
    ASSERT_TRUE(stub->CreateModel(&cctx, create, &created).ok());
    v1::TrainRequest train = LongTrain("persist", 3);
    *train.mutable_examples() = SyntheticExamples(100, 2, 5);
    ASSERT_TRUE(RunTrain(stub.get(), train).status.ok());
    before = GetModel(stub.get(), "persist");
    ASSERT_EQ(before.epochs_trained(), 3u);

    p.Signal(SIGTERM);
    const int status = p.Wait(10'000);
    ASSERT_NE(status, -1) << "no exit within 10 s of SIGTERM";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  ServerProcess again(dir);
  const int port = again.AwaitListening();
  ASSERT_GT(port, 0);
  auto stub = Connect(port);
  v1::Model after = GetModel(stub.get(), "persist");
  EXPECT_EQ(after.epochs_trained(), 3u);
  const std::vector<double> a = AllValues(before);
  const std::vector<double> b = AllValues(after);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0);
}

TEST(ServerBinaryTest, SigtermDuringTrainingCancelsAndExitsZero) {
  TempDir dir;
  ServerProcess p(dir);
  const int port = p.AwaitListening();
  ASSERT_GT(port, 0);
  auto stub = Connect(port);
  v1::CreateModelRequest create;
  create.set_model_id("long");
  *create.mutable_spec() = Spec({2, 16, 2});
  v1::Model created;
  grpc::ClientContext cctx;
  ASSERT_TRUE(stub->CreateModel(&cctx, create, &created).ok());
  grpc::ClientContext ctx;
  // A server that ignores SIGTERM would otherwise keep this test reading
  // for the whole 100,000 epochs; one minute is far more than a clean stop.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto r = stub->Train(&ctx, LongTrain("long", 100000));
  v1::TrainEvent ev;
  ASSERT_TRUE(r->Read(&ev));
  p.Signal(SIGTERM);
  while (r->Read(&ev)) {
  }
  EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const int status = p.Wait(10'000);
  ASSERT_NE(status, -1) << "no exit within 10 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(ServerBinaryTest, SigkillDuringTrainingLeavesACompletedEpoch) {
  TempDir dir;
  uint64_t seen = 0;
  {
    ServerProcess p(dir);
    const int port = p.AwaitListening();
    ASSERT_GT(port, 0);
    auto stub = Connect(port);
    v1::CreateModelRequest create;
    create.set_model_id("crash");
    *create.mutable_spec() = Spec({2, 16, 2});
    v1::Model created;
    grpc::ClientContext cctx;
    ASSERT_TRUE(stub->CreateModel(&cctx, create, &created).ok());
    grpc::ClientContext ctx;
    auto r = stub->Train(&ctx, LongTrain("crash", 100000));
    v1::TrainEvent ev;
    while (seen < 2 && r->Read(&ev)) {
      if (ev.has_epoch()) seen = ev.epoch().epochs_trained();
    }
    ASSERT_EQ(seen, 2u);
    p.Signal(SIGKILL);
    const int status = p.Wait(10'000);
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    ctx.TryCancel();
  }
  ServerProcess again(dir);
  const int port = again.AwaitListening();
  ASSERT_GT(port, 0);
  auto stub = Connect(port);
  v1::Model m = GetModel(stub.get(), "crash");
  EXPECT_GE(m.epochs_trained(), seen);  // it may have finished more
  EXPECT_FALSE(m.training());
  for (double v : AllValues(m)) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(AllValues(m).size(), 2u * 16 + 16 + 16 * 2 + 2);
}

}  // namespace
}  // namespace backprop::server
