// backprop upload: a labelled data set from IDX or CSV files, streamed to
// UploadDataset in chunks.
#include <chrono>
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/output.h"
#include "client/views.h"
#include "client/wire.h"

namespace backprop::client {
namespace {

// The server accepts chunks of up to 1 MiB (RELIABILITY.md §3); 256 KiB
// keeps every message far below that and below gRPC's 4 MiB default.
constexpr uint64_t kDefaultChunkBytes = 256 << 10;

struct UploadFlags {
  InputFlags input;
  std::string id;
  std::string description;
  uint32_t classes = 0;
  std::string dtype = "float64";
  uint64_t chunk_bytes = kDefaultChunkBytes;
  bool progress = false;
};

int RunUpload(const GlobalOptions& global, const UploadFlags& flags) {
  absl::StatusOr<ExampleSet> set = LoadInputs(flags.input);
  if (!set.ok()) return ReportError(std::string(set.status().message()));
  if (!set->has_labels()) {
    return ReportError(
        "upload needs labels: give --labels with --images, or "
        "--label-column with --csv",
        kExitUsage);
  }
  const uint32_t classes =
      flags.classes > 0 ? flags.classes : set->max_label() + 1;

  Connection connection(global);
  grpc::ClientContext context;
  connection.PrepareStream(&context);
  v1::Dataset dataset;
  std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer =
      connection.stub().UploadDataset(&context, &dataset);

  v1::UploadDatasetRequest request;
  v1::DatasetHeader* header = request.mutable_header();
  header->set_dataset_id(flags.id);
  header->set_feature_count(static_cast<uint32_t>(set->cols));
  header->set_class_count(classes);
  header->set_description(flags.description);

  const uint64_t bytes_per_row =
      set->cols * (DTypes().at(flags.dtype) == v1::FLOAT32 ? 4 : 8) + 4;
  const uint64_t rows_per_chunk =
      std::max<uint64_t>(1, flags.chunk_bytes / bytes_per_row);
  ProgressBar bar(flags.progress || StderrIsTerminal());
  const auto start = std::chrono::steady_clock::now();
  uint64_t bytes_sent = request.ByteSizeLong();
  bool stream_ok = writer->Write(request);
  uint64_t done = 0;
  while (stream_ok && done < set->rows) {
    const uint64_t n = std::min(rows_per_chunk, set->rows - done);
    request.Clear();
    v1::Examples* chunk = request.mutable_chunk();
    FillMatrix(n, set->cols, set->inputs.data() + done * set->cols,
               DTypes().at(flags.dtype), chunk->mutable_inputs());
    chunk->mutable_labels()->mutable_values()->Add(
        set->labels.begin() + done, set->labels.begin() + done + n);
    bytes_sent += request.ByteSizeLong();
    stream_ok = writer->Write(request);
    done += n;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    bar.Update(static_cast<double>(done) / set->rows,
               Bytes(bytes_sent) + "  " + std::to_string(done) + "/" +
                   std::to_string(set->rows) + " examples  " +
                   Rate(seconds > 0 ? done / seconds : 0) + " examples/s");
  }
  if (stream_ok) writer->WritesDone();
  const grpc::Status s = writer->Finish();
  bar.Clear();
  if (!s.ok()) return ReportRpcError(s);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (global.json) {
    nlohmann::json j = DatasetJson(dataset);
    j["bytes_sent"] = bytes_sent;
    j["seconds"] = seconds;
    PrintJson(j);
  } else {
    std::cout << "uploaded dataset " << dataset.dataset_id() << ": "
              << dataset.example_count() << " examples, "
              << dataset.feature_count() << " features, "
              << dataset.class_count() << " classes (" << Bytes(bytes_sent)
              << " in " << Fixed(seconds, 2) << " s, "
              << Rate(seconds > 0 ? set->rows / seconds : 0)
              << " examples/s)\n";
  }
  return kExitOk;
}

}  // namespace

void AddUploadCommand(CLI::App& app, CommandEnv env) {
  auto flags = std::make_shared<UploadFlags>();
  CLI::App* cmd = app.add_subcommand(
      "upload",
      "Upload a labelled data set: IDX images + labels files (gzip or "
      "plain, e.g. Fashion-MNIST) or a CSV file with a label column.");
  AddInputFlags(cmd, &flags->input, /*allow_values=*/false);
  cmd->add_option("--id", flags->id,
                  "data set id (empty: the server picks one)");
  cmd->add_option("--description", flags->description, "free text");
  cmd->add_option("--classes", flags->classes,
                  "number of classes (0: largest label + 1)");
  cmd->add_option("--dtype", flags->dtype, "element type sent on the wire")
      ->check(CLI::IsMember(Words(DTypes())))
      ->capture_default_str();
  cmd->add_option("--chunk-bytes", flags->chunk_bytes,
                  "approximate size of each streamed chunk")
      ->check(CLI::Range(uint64_t{1024}, uint64_t{1} << 20))
      ->capture_default_str();
  cmd->add_flag("--progress", flags->progress,
                "show the progress bar even when stderr is not a terminal");
  cmd->callback(
      [env, flags] { *env.exit_code = RunUpload(*env.global, *flags); });
}

}  // namespace backprop::client
