// backprop-server: serves backprop.v1.Backprop (../shared/API.md) over gRPC.
// Prints exactly one line "listening on HOST:PORT" to stdout once it accepts
// calls; everything else goes to stderr. SIGTERM/SIGINT: stop accepting,
// cancel trainings (each model keeps its last completed epoch, already on
// disk), let in-flight calls finish, exit 0.
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "core/blas.h"
#include "core/readers.h"
#include "server/limits.h"
#include "server/server.h"
#include <fcntl.h>

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "HOST:PORT to listen on; port 0 picks a free port (the chosen one is "
          "printed). Plaintext: keep it on loopback or behind a proxy.");
ABSL_FLAG(std::string, model_dir, "./backprop-data/models",
          "Folder of the model files (<id>.model); created if missing.");
ABSL_FLAG(std::string, data_dir, "./backprop-data/datasets",
          "Folder of uploaded datasets (<id>.dataset); created if missing.");
// Limits: defaults from server/limits.h (RELIABILITY.md §3). Each help text
// says what going over the limit returns.
namespace lim = backprop::server::limits;
ABSL_FLAG(int, max_concurrent_trainings,
          lim::DefaultMaxConcurrentTrainings(),
          "Train calls running at once (default: min(4, cores)); one more "
          "gets RESOURCE_EXHAUSTED at once.");
ABSL_FLAG(int, max_receive_message_mb, lim::kMaxReceiveMessageBytes >> 20,
          "Largest request message in MiB (1..2047); a bigger one gets "
          "RESOURCE_EXHAUSTED from gRPC. Uploads come in chunks that must "
          "each fit.");
ABSL_FLAG(int, max_send_message_mb, lim::kMaxSendMessageBytes >> 20,
          "Largest response message in MiB (1..2047); holds the weights of a "
          "model at --max_parameters. A bigger response fails "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_parameters, lim::kMaxParameters,
          "Most weights + biases per model; bigger specs get "
          "RESOURCE_EXHAUSTED before anything is allocated.");
ABSL_FLAG(uint32_t, max_layers, lim::kMaxLayers,
          "Most entries of layer_sizes (input and output included); more get "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint32_t, max_layer_width, lim::kMaxLayerWidth,
          "Most neurons in one layer; a wider layer gets RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_dataset_mb, lim::kMaxDatasetBytes >> 20,
          "Most MiB per uploaded dataset (8 bytes per input or target value, "
          "4 per label); the chunk that goes over gets RESOURCE_EXHAUSTED "
          "and nothing is kept.");
ABSL_FLAG(uint64_t, max_upload_chunk_kb, lim::kMaxUploadChunkBytes >> 10,
          "Most KiB per upload chunk (serialized Examples); a bigger chunk "
          "gets RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_upload_chunks, lim::kMaxUploadChunks,
          "Most chunks per upload; the next one gets RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_concurrent_uploads, lim::kMaxConcurrentUploads,
          "UploadDataset calls in progress at once; one more gets "
          "RESOURCE_EXHAUSTED at once.");
ABSL_FLAG(uint64_t, max_models, lim::kMaxModels,
          "Most models held at once; one more CreateModel gets "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_datasets, lim::kMaxDatasets,
          "Most datasets held at once; one more upload gets "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_rows_per_call, lim::kMaxRowsPerCall,
          "Most example rows per Predict / GetGradients call and per inline "
          "Train data; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, predict_budget, lim::kPredictBudget,
          "Longest a Predict may compute (or the call's deadline if sooner); "
          "past it the call ends DEADLINE_EXCEEDED.");
ABSL_FLAG(absl::Duration, gradients_budget, lim::kGradientsBudget,
          "Longest a GetGradients finite-difference check may run (or the "
          "call's deadline if sooner); past it the call ends "
          "DEADLINE_EXCEEDED.");
ABSL_FLAG(absl::Duration, max_train_time, lim::kMaxTrainTime,
          "Longest wall time of one Train call; past it training stops, the "
          "model keeps its last completed epoch and the stream ends "
          "DEADLINE_EXCEEDED.");
ABSL_FLAG(int, max_concurrent_streams, lim::kMaxConcurrentStreams,
          "Calls in flight per connection (HTTP/2 MAX_CONCURRENT_STREAMS); "
          "clients queue the rest.");
ABSL_FLAG(int, max_metadata_kb, lim::kMaxMetadataBytes >> 10,
          "Most KiB of request metadata (headers); a call with more is "
          "refused.");
ABSL_FLAG(absl::Duration, handshake_timeout, lim::kHandshakeTimeout,
          "A connection that has not finished its TLS/HTTP2 handshake by then "
          "is closed.");
ABSL_FLAG(absl::Duration, keepalive_time, lim::kKeepaliveTime,
          "The server pings a connection after this long without activity, "
          "to notice a dead client (e.g. one holding a Train stream).");
ABSL_FLAG(absl::Duration, keepalive_timeout, lim::kKeepaliveTimeout,
          "A keepalive ping not answered within this closes the connection "
          "and cancels its calls.");
ABSL_FLAG(absl::Duration, min_ping_interval, lim::kMinPingInterval,
          "Clients may ping this often, also without calls; a ping sooner is "
          "a strike.");
ABSL_FLAG(int, max_ping_strikes, lim::kMaxPingStrikes,
          "After more strikes than this the server sends GOAWAY "
          "ENHANCE_YOUR_CALM (too_many_pings) and closes the connection.");
ABSL_FLAG(absl::Duration, max_connection_idle, lim::kMaxConnectionIdle,
          "A connection without calls for this long is closed.");
ABSL_FLAG(int64_t, resource_quota_mb, lim::kResourceQuotaBytes >> 20,
          "MiB gRPC may use for transport buffers (grpc::ResourceQuota).");
ABSL_FLAG(bool, preload_fashion_mnist, false,
          "Register Debian's Fashion-MNIST (package dataset-fashion-mnist) as "
          "read-only in-memory datasets 'fashion-mnist-train' (60,000) and "
          "'fashion-mnist-test' (10,000); about 440 MB of RAM. Deleting them "
          "gives FAILED_PRECONDITION.");
ABSL_FLAG(std::string, fashion_mnist_dir, backprop::kFashionMnistDir,
          "Where --preload_fashion_mnist reads the IDX files.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the server; with --tls_key, serve TLS "
          "only.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA: mTLS, every client must present a certificate signed by "
          "it (needs --tls_cert/--tls_key).");
ABSL_FLAG(bool, insecure_allow_remote, false,
          "Allow plaintext (no --tls_cert) on a non-loopback --listen "
          "address. Without it the server refuses anything but 127.0.0.0/8, "
          "::1 and localhost. Use only behind a TLS proxy or on a private "
          "network.");
ABSL_FLAG(std::string, auth_tokens, "",
          "File of bearer tokens, one '<hex sha256 of token> <role>' per line "
          "('#' comments; e.g. `printf %s TOKEN | sha256sum`). Every call "
          "but health then needs 'authorization: Bearer TOKEN'. Roles, "
          "read < train < admin: read = GetModel ListModels GetDataset "
          "ListDatasets Predict GetGradients and reflection; train = Train "
          "CreateModel UploadDataset; admin = DeleteModel DeleteDataset. "
          "Missing/unknown token: UNAUTHENTICATED; weaker role: "
          "PERMISSION_DENIED.");
ABSL_FLAG(int, blas_threads, 1,
          "Threads OpenBLAS may use inside one matrix product. 1 (default): "
          "parallelism comes from concurrent calls and trainings, small "
          "Predicts never wake a thread pool, and results do not depend on "
          "the core count. 0 leaves OpenBLAS's own setting "
          "(OPENBLAS_NUM_THREADS, else one per core).");
ABSL_FLAG(bool, reflection, true,
          "Serve gRPC server reflection so grpcurl etc. work without the "
          ".proto.");

namespace {

// Written by OnStopSignal, read by main: see main.
int g_stop_pipe[2] = {-1, -1};

extern "C" void OnStopSignal(int signal_number) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  [[maybe_unused]] ssize_t written = write(g_stop_pipe[1], &byte, 1);
  errno = saved_errno;
}

// Keeps the blocks of big messages in malloc's heap. Every Predict or upload
// with a large message allocates and frees buffers of its size (a 256-row
// float32 batch is 800 KB; the receive limit is 4 MiB by default). glibc
// maps blocks above its mmap threshold (128 KB at first) straight from the
// kernel and gives a heap's free top back beyond its trim threshold, so each
// such call paid for fresh zeroed pages: page faults were ~14% of the
// server's CPU time with 256-row batches. Blocks up to 16 MiB now come from
// the heap, and up to 32 MiB of free heap top per arena stays for the next
// call (BENCHMARKS.md section 5 has the before and after). A malloc setting
// the operator made through the environment wins.
void TuneMallocForLargeMessages() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if ((tunables != nullptr &&
       std::strstr(tunables, "glibc.malloc.") != nullptr) ||
      std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
      std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) {
    return;
  }
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  TuneMallocForLargeMessages();
  absl::SetProgramUsageMessage(
      "Trains and serves fully-connected neural networks over gRPC "
      "(backprop.v1.Backprop, health and reflection).\n"
      "Usage: backprop-server [--listen=127.0.0.1:50051] [--model_dir=DIR] "
      "[--data_dir=DIR] ...");
  // --help lists the flags of this file (Abseil's default looks for a file
  // named after the binary, backprop-server.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "server/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  const int recv_mb = absl::GetFlag(FLAGS_max_receive_message_mb);
  const int send_mb = absl::GetFlag(FLAGS_max_send_message_mb);
  const int trainings = absl::GetFlag(FLAGS_max_concurrent_trainings);
  if (recv_mb < 1 || recv_mb > 2047 || send_mb < 1 || send_mb > 2047) {
    std::cerr << "--max_receive_message_mb and --max_send_message_mb must be "
                 "in 1..2047\n";
    return 2;
  }
  if (trainings < 1) {
    std::cerr << "--max_concurrent_trainings must be at least 1\n";
    return 2;
  }
  const int blas_threads = absl::GetFlag(FLAGS_blas_threads);
  if (blas_threads < 0 || blas_threads > 1024) {
    std::cerr << "--blas_threads must be in 0..1024 (0: OpenBLAS decides)\n";
    return 2;
  }
  if (blas_threads > 0 && !backprop::SetBlasThreads(blas_threads)) {
    std::cerr << "backprop-server: the BLAS library is not OpenBLAS; "
                 "--blas_threads has no effect\n";
  }
  const uint64_t dataset_mb = absl::GetFlag(FLAGS_max_dataset_mb);
  if (dataset_mb < 1 || dataset_mb > (uint64_t{1} << 40)) {
    std::cerr << "--max_dataset_mb must be in 1..2^40\n";
    return 2;
  }
  const uint64_t chunk_kb = absl::GetFlag(FLAGS_max_upload_chunk_kb);
  if (chunk_kb < 1 || chunk_kb > (uint64_t{1} << 40)) {
    std::cerr << "--max_upload_chunk_kb must be in 1..2^40\n";
    return 2;
  }
  const int metadata_kb = absl::GetFlag(FLAGS_max_metadata_kb);
  const int64_t quota_mb = absl::GetFlag(FLAGS_resource_quota_mb);
  if (metadata_kb < 1 || metadata_kb > (1 << 20) || quota_mb < 1 ||
      quota_mb > (int64_t{1} << 40)) {
    std::cerr << "--max_metadata_kb must be in 1..2^20 and "
                 "--resource_quota_mb in 1..2^40\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_max_concurrent_uploads) < 1 ||
      absl::GetFlag(FLAGS_max_concurrent_streams) < 1 ||
      absl::GetFlag(FLAGS_max_ping_strikes) < 0) {
    std::cerr << "--max_concurrent_uploads and --max_concurrent_streams "
                 "must be at least 1, --max_ping_strikes at least 0\n";
    return 2;
  }
  for (const auto& [name, d] :
       {std::pair<const char*, absl::Duration>{
            "predict_budget", absl::GetFlag(FLAGS_predict_budget)},
        {"gradients_budget", absl::GetFlag(FLAGS_gradients_budget)},
        {"max_train_time", absl::GetFlag(FLAGS_max_train_time)},
        {"handshake_timeout", absl::GetFlag(FLAGS_handshake_timeout)},
        {"keepalive_time", absl::GetFlag(FLAGS_keepalive_time)},
        {"keepalive_timeout", absl::GetFlag(FLAGS_keepalive_timeout)},
        {"min_ping_interval", absl::GetFlag(FLAGS_min_ping_interval)},
        {"max_connection_idle", absl::GetFlag(FLAGS_max_connection_idle)}}) {
    if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      std::cerr << "--" << name << " must be a positive, finite duration "
                   "such as 500ms, 10s, 30m or 24h\n";
      return 2;
    }
  }

  backprop::server::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  if (options.listen.empty()) {
    std::cerr << "--listen must not be empty\n";
    return 2;
  }
  options.service.model_dir = absl::GetFlag(FLAGS_model_dir);
  options.service.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.service.max_concurrent_trainings = trainings;
  options.service.max_parameters = absl::GetFlag(FLAGS_max_parameters);
  options.service.max_layers = absl::GetFlag(FLAGS_max_layers);
  options.service.max_layer_width = absl::GetFlag(FLAGS_max_layer_width);
  options.service.max_dataset_bytes = dataset_mb << 20;
  options.service.max_upload_chunk_bytes = chunk_kb << 10;
  options.service.max_upload_chunks = absl::GetFlag(FLAGS_max_upload_chunks);
  options.service.max_concurrent_uploads =
      absl::GetFlag(FLAGS_max_concurrent_uploads);
  options.service.max_models = absl::GetFlag(FLAGS_max_models);
  options.service.max_datasets = absl::GetFlag(FLAGS_max_datasets);
  options.service.max_rows_per_call = absl::GetFlag(FLAGS_max_rows_per_call);
  options.service.predict_budget = absl::GetFlag(FLAGS_predict_budget);
  options.service.gradients_budget = absl::GetFlag(FLAGS_gradients_budget);
  options.service.max_train_time = absl::GetFlag(FLAGS_max_train_time);
  options.max_receive_message_bytes = recv_mb << 20;
  options.max_send_message_bytes = send_mb << 20;
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  options.max_metadata_bytes = metadata_kb << 10;
  options.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.min_ping_interval = absl::GetFlag(FLAGS_min_ping_interval);
  options.max_ping_strikes = absl::GetFlag(FLAGS_max_ping_strikes);
  options.max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
  options.resource_quota_bytes = quota_mb << 20;
  options.reflection = absl::GetFlag(FLAGS_reflection);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.insecure_allow_remote = absl::GetFlag(FLAGS_insecure_allow_remote);
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens);
  if (absl::GetFlag(FLAGS_preload_fashion_mnist)) {
    options.preload_fashion_mnist_dir = absl::GetFlag(FLAGS_fashion_mnist_dir);
  }

  // A handler, not a signal mask: OpenBLAS starts its threads before main()
  // runs, so a mask set here would not cover them, and a SIGTERM delivered
  // to one of them would kill the process uncleanly. The handler runs on
  // whichever thread gets the signal and only writes to a pipe main reads.
  if (pipe2(g_stop_pipe, O_CLOEXEC) != 0 ||
      fcntl(g_stop_pipe[1], F_SETFL, O_NONBLOCK) != 0) {
    std::cerr << "backprop-server: cannot create the signal pipe\n";
    return 1;
  }
  struct sigaction stop_action = {};
  stop_action.sa_handler = OnStopSignal;
  sigemptyset(&stop_action.sa_mask);
  stop_action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &stop_action, nullptr);
  sigaction(SIGINT, &stop_action, nullptr);

  auto report = [](const std::string& line) {
    std::cerr << "backprop-server: " << line << std::endl;
  };
  absl::StatusOr<std::unique_ptr<backprop::server::BackpropServer>> server =
      backprop::server::BackpropServer::Start(options, report);
  if (!server.ok()) {
    std::cerr << "backprop-server: " << server.status().ToString() << "\n";
    return 1;
  }
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::cout << "listening on " << host << ":" << (*server)->port()
            << std::endl;  // endl flushes: clients wait for this line

  // poll with a timeout rather than one blocking read: under ThreadSanitizer
  // a signal that arrives while this thread sits in read() is deferred until
  // the thread next enters the runtime, and SA_RESTART would restart the read
  // forever. Waking every 200 ms gives the runtime that chance; outside TSan
  // the handler has already written the byte and poll returns at once.
  unsigned char signal_number = 0;
  for (;;) {
    pollfd wait_for = {g_stop_pipe[0], POLLIN, 0};
    if (poll(&wait_for, 1, 200) > 0 &&
        read(g_stop_pipe[0], &signal_number, 1) == 1) {
      break;
    }
  }
  std::cerr << "backprop-server: signal " << int{signal_number}
            << ", shutting down" << std::endl;
  (*server)->Shutdown(absl::Seconds(5));
  server->reset();
  std::cerr << "backprop-server: stopped" << std::endl;
  return 0;
}
