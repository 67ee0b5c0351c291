// backprop train: runs mini-batch SGD on the server and shows it live — a
// progress bar inside each epoch (stderr) and one table row per epoch
// (stdout). Ctrl-C cancels the stream; the model keeps its last completed
// epoch, which is then reported.
#include <fstream>
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/interrupt.h"
#include "client/output.h"
#include "client/svg_plot.h"
#include "client/views.h"

namespace backprop::client {
namespace {

struct TrainFlags {
  std::string model;
  std::string dataset;
  std::string validation;
  uint32_t epochs = 1;
  uint32_t batch = 10;
  double eta = 0;
  double lambda = 0;
  double momentum = 0;
  uint64_t shuffle_seed = 0;
  bool monitor_training = false;
  std::optional<uint32_t> progress_ms;
  std::string plot;
};

const std::vector<size_t> kColumnWidths = {5, 5, 10, 9, 10, 8, 7, 10};

std::vector<std::string> EpochRow(const v1::EpochMetrics& m, bool training,
                                  bool validation) {
  return {std::to_string(m.epoch()),
          std::to_string(m.epochs_trained()),
          training ? Fixed(m.training_cost(), 5) : "-",
          training ? Percent(m.training_accuracy()) : "-",
          validation ? Fixed(m.validation_cost(), 5) : "-",
          validation ? Percent(m.validation_accuracy()) : "-",
          Fixed(m.seconds(), 2),
          Rate(m.examples_per_second())};
}

absl::Status WritePlot(const std::string& path, const std::string& model,
                       const std::vector<v1::EpochMetrics>& epochs,
                       bool training, bool validation) {
  PlotPanel cost{"Cost", "epoch", "cost", false, {}};
  PlotPanel accuracy{"Accuracy", "epoch", "accuracy", true, {}};
  PlotSeries tc{"training", "#1f77b4", {}, {}},
      vc{"validation", "#d62728", {}, {}};
  PlotSeries ta = tc, va = vc;
  for (const v1::EpochMetrics& m : epochs) {
    const double x = static_cast<double>(m.epochs_trained());
    tc.x.push_back(x), tc.y.push_back(m.training_cost());
    ta.x.push_back(x), ta.y.push_back(m.training_accuracy());
    vc.x.push_back(x), vc.y.push_back(m.validation_cost());
    va.x.push_back(x), va.y.push_back(m.validation_accuracy());
  }
  if (training) cost.series.push_back(tc), accuracy.series.push_back(ta);
  if (validation) cost.series.push_back(vc), accuracy.series.push_back(va);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << RenderSvg("Learning curves of model " + model, {cost, accuracy});
  out.close();
  if (!out) return absl::UnavailableError("cannot write " + path);
  return absl::OkStatus();
}

int RunTrain(const GlobalOptions& global, const TrainFlags& flags) {
  const bool training = flags.monitor_training;
  const bool validation = !flags.validation.empty();
  v1::TrainRequest request;
  request.set_model_id(flags.model);
  request.set_dataset_id(flags.dataset);
  if (validation) request.set_validation_dataset_id(flags.validation);
  request.set_epochs(flags.epochs);
  request.set_mini_batch_size(flags.batch);
  request.set_learning_rate(flags.eta);
  request.set_l2_lambda(flags.lambda);
  request.set_momentum(flags.momentum);
  request.set_shuffle_seed(flags.shuffle_seed);
  request.set_monitor_training(training);
  // Progress events cost the server a little; ask for them only when they
  // will be shown.
  const uint32_t progress_ms =
      flags.progress_ms.value_or(StderrIsTerminal() && !global.json ? 200 : 0);
  request.set_progress_interval_ms(progress_ms);

  Connection connection(global);
  grpc::ClientContext context;
  connection.PrepareStream(&context);
  InterruptWatcher watcher([&context] { context.TryCancel(); });
  std::unique_ptr<grpc::ClientReader<v1::TrainEvent>> reader =
      connection.stub().Train(&context, request);

  ProgressBar bar(progress_ms > 0);
  std::vector<v1::EpochMetrics> epochs;
  if (!global.json) {
    // Right-aligned over the (right-aligned) numbers of each column.
    std::vector<std::string> header = {"EPOCH",     "TOTAL",     "TRAIN_COST",
                                       "TRAIN_ACC", "VAL_COST",  "VAL_ACC",
                                       "SECONDS",   "EXAMPLES/S"};
    for (size_t i = 0; i < header.size(); ++i) {
      header[i].insert(0, kColumnWidths[i] - header[i].size(), ' ');
    }
    std::cout << Table::FormatRow(header, kColumnWidths) << std::endl;
  }
  v1::TrainEvent event;
  while (reader->Read(&event)) {
    if (event.has_progress()) {
      const v1::BatchProgress& p = event.progress();
      bar.Update(
          p.examples_total() > 0
              ? static_cast<double>(p.examples_done()) / p.examples_total()
              : 0,
          "epoch " + std::to_string(p.epoch()) + "/" +
              std::to_string(flags.epochs) + "  " +
              std::to_string(p.examples_done()) + "/" +
              std::to_string(p.examples_total()) + "  cost " +
              Fixed(p.running_cost(), 5));
    } else if (event.has_epoch()) {
      bar.Clear();
      epochs.push_back(event.epoch());
      if (!global.json) {
        std::cout << Table::FormatRow(
                         EpochRow(event.epoch(), training, validation),
                         kColumnWidths)
                  << std::endl;
      }
    }
  }
  const grpc::Status status = reader->Finish();
  bar.Clear();

  int exit_code = kExitOk;
  nlohmann::json result = {{"model_id", flags.model}};
  nlohmann::json rows = nlohmann::json::array();
  for (const v1::EpochMetrics& m : epochs) rows.push_back(EpochJson(m));
  result["epochs"] = rows;
  if (watcher.interrupted()) {
    // Where the model stands is the server's answer, not the rows we saw.
    v1::Model model;
    const grpc::Status s = FetchModel(connection, flags.model, &model);
    result["interrupted"] = true;
    if (s.ok()) {
      result["model"] = ModelJson(model);
      std::cerr << "interrupted: training cancelled; model " << flags.model
                << " stands at epoch " << model.epochs_trained()
                << " (its last completed epoch)\n";
    } else {
      std::cerr << "interrupted: training cancelled; ";
      ReportRpcError(s);
    }
    exit_code = kExitInterrupted;
  } else if (!status.ok()) {
    exit_code = ReportRpcError(status);
    result["error"] = {{"code", StatusCodeName(status.error_code())},
                       {"message", status.error_message()}};
  }
  if (global.json) PrintJson(result);
  if (!flags.plot.empty() && !epochs.empty()) {
    if (absl::Status s =
            WritePlot(flags.plot, flags.model, epochs, training, validation);
        !s.ok()) {
      return ReportError(std::string(s.message()));
    }
    if (!global.json) std::cerr << "wrote " << flags.plot << "\n";
  }
  return exit_code;
}

}  // namespace

void AddTrainCommand(CLI::App& app, CommandEnv env) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a model with mini-batch SGD on an uploaded data set. Prints one "
      "row per epoch as it completes; Ctrl-C stops training, keeping the "
      "last completed epoch (exit code 130).");
  cmd->add_option("MODEL", flags->model, "model id")->required();
  cmd->add_option("--dataset", flags->dataset, "training data set id")
      ->required();
  cmd->add_option("--validation", flags->validation,
                  "validation data set id (cost and accuracy per epoch)");
  cmd->add_option("--epochs", flags->epochs, "epochs to run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch", flags->batch, "mini-batch size m")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--eta", flags->eta, "learning rate η")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lambda", flags->lambda, "L2 regularization λ")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--momentum", flags->momentum, "momentum μ in [0, 1)")
      ->check(CLI::Range(0.0, 0.999999999))
      ->capture_default_str();
  cmd->add_option("--shuffle-seed", flags->shuffle_seed,
                  "seed of the per-epoch shuffle")
      ->capture_default_str();
  cmd->add_flag("--monitor-training", flags->monitor_training,
                "also report cost and accuracy on the training data");
  cmd->add_option("--progress-ms", flags->progress_ms,
                  "progress bar updates at most this often (default 200 when "
                  "stderr is a terminal, else 0 = no bar)");
  cmd->add_option("--plot", flags->plot,
                  "write the learning curves to this SVG file");
  cmd->callback(
      [env, flags] { *env.exit_code = RunTrain(*env.global, *flags); });
}

}  // namespace backprop::client
