// backprop predict: feedforward for examples from a file or the command
// line, batched into Predict calls; with labels, accuracy and a confusion
// matrix of the server's answers.
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/output.h"
#include "client/wire.h"

namespace backprop::client {
namespace {

struct PredictFlags {
  std::string model;
  InputFlags input;
  uint64_t batch = 1000;
  bool probabilities = false;
  bool rows = false;
};

int RunPredict(const GlobalOptions& global, const PredictFlags& flags) {
  absl::StatusOr<ExampleSet> set = LoadInputs(flags.input);
  if (!set.ok()) return ReportError(std::string(set.status().message()));

  Connection connection(global);
  // The model's dtype decides the element type we send (responses come in
  // it anyway), and its output width the size of the confusion matrix.
  v1::Model model;
  if (const grpc::Status s = FetchModel(connection, flags.model, &model);
      !s.ok()) {
    return ReportRpcError(s);
  }
  const v1::DType dtype = model.spec().dtype();
  const uint64_t bytes_per_row = set->cols * (dtype == v1::FLOAT32 ? 4 : 8);
  const uint64_t rows_per_call = std::max<uint64_t>(
      1, std::min<uint64_t>(flags.batch, kRequestByteBudget / bytes_per_row));

  std::vector<uint32_t> labels;
  std::vector<std::vector<double>> outputs;
  uint64_t epochs_min = UINT64_MAX, epochs_max = 0;
  v1::PredictRequest request;
  request.set_model_id(flags.model);
  v1::PredictResponse response;
  for (uint64_t done = 0; done < set->rows;) {
    const uint64_t n = std::min(rows_per_call, set->rows - done);
    FillMatrix(n, set->cols, set->inputs.data() + done * set->cols, dtype,
               request.mutable_inputs());
    const grpc::Status s =
        connection.Call(&v1::Backprop::Stub::Predict, request, &response);
    if (!s.ok()) return ReportRpcError(s);
    if (static_cast<uint64_t>(response.labels_size()) != n) {
      return ReportError("server answered " +
                         std::to_string(response.labels_size()) +
                         " labels for " + std::to_string(n) + " rows");
    }
    labels.insert(labels.end(), response.labels().begin(),
                  response.labels().end());
    if (flags.probabilities) {
      const std::vector<double> values = MatrixValues(response.outputs());
      const uint64_t width = response.outputs().cols();
      if (response.outputs().rows() != n || values.size() != n * width) {
        return ReportError("server answered a malformed outputs matrix");
      }
      for (uint64_t r = 0; r < n; ++r) {
        outputs.emplace_back(values.begin() + r * width,
                             values.begin() + (r + 1) * width);
      }
    }
    epochs_min = std::min<uint64_t>(epochs_min, response.epochs_trained());
    epochs_max = std::max<uint64_t>(epochs_max, response.epochs_trained());
    done += n;
  }

  // Accuracy and confusion matrix (rows: true label, columns: predicted).
  uint64_t correct = 0;
  std::vector<std::vector<uint64_t>> confusion;
  if (set->has_labels()) {
    uint32_t classes =
        model.spec().layer_sizes_size() > 0
            ? model.spec().layer_sizes(model.spec().layer_sizes_size() - 1)
            : 0;
    classes = std::max(classes, set->max_label() + 1);
    for (uint32_t l : labels) classes = std::max(classes, l + 1);
    confusion.assign(classes, std::vector<uint64_t>(classes, 0));
    for (uint64_t i = 0; i < set->rows; ++i) {
      ++confusion[set->labels[i]][labels[i]];
      correct += set->labels[i] == labels[i] ? 1 : 0;
    }
  }
  const double accuracy =
      set->rows > 0 ? static_cast<double>(correct) / set->rows : 0;

  if (global.json) {
    nlohmann::json j = {{"model_id", flags.model},
                        {"epochs_trained", epochs_max},
                        {"count", set->rows},
                        {"labels", labels}};
    if (flags.probabilities) j["outputs"] = outputs;
    if (set->has_labels()) {
      j["correct"] = correct;
      j["accuracy"] = accuracy;
      j["confusion_matrix"] = confusion;
    }
    PrintJson(j);
    return kExitOk;
  }
  if (!set->has_labels() || flags.rows || flags.probabilities) {
    std::vector<std::string> header = {"ROW", "LABEL"};
    if (set->has_labels()) header.push_back("TRUE");
    if (flags.probabilities) header.push_back("OUTPUTS");
    Table table(header);
    for (uint64_t i = 0; i < set->rows; ++i) {
      std::vector<std::string> row = {std::to_string(i),
                                      std::to_string(labels[i])};
      if (set->has_labels()) row.push_back(std::to_string(set->labels[i]));
      if (flags.probabilities) {
        std::string cell;
        for (double v : outputs[i])
          cell += (cell.empty() ? "" : " ") + Fixed(v, 4);
        row.push_back(cell);
      }
      table.AddRow(row);
    }
    table.Print(std::cout);
  }
  std::cout << "predicted " << set->rows << " examples with the weights of "
            << "epoch " << epochs_max;
  if (epochs_min != epochs_max) {
    std::cout << " (training moved on during the run: epochs " << epochs_min
              << ".." << epochs_max << ")";
  }
  std::cout << "\n";
  if (set->has_labels()) {
    std::cout << "accuracy: " << Percent(accuracy) << " (" << correct << "/"
              << set->rows << ")\n\nconfusion matrix (rows: true label, "
              << "columns: predicted label)\n";
    std::vector<std::string> header = {"TRUE\\PRED"};
    for (size_t c = 0; c < confusion.size(); ++c) {
      header.push_back(std::to_string(c));
    }
    header.push_back("RECALL");
    Table table(header);
    for (size_t r = 0; r < confusion.size(); ++r) {
      std::vector<std::string> row = {std::to_string(r)};
      uint64_t total = 0;
      for (uint64_t v : confusion[r])
        row.push_back(std::to_string(v)), total += v;
      row.push_back(total > 0
                        ? Percent(static_cast<double>(confusion[r][r]) / total)
                        : "-");
      table.AddRow(row);
    }
    table.Print(std::cout);
  }
  return kExitOk;
}

}  // namespace

void AddPredictCommand(CLI::App& app, CommandEnv env) {
  auto flags = std::make_shared<PredictFlags>();
  CLI::App* cmd = app.add_subcommand(
      "predict",
      "Predict labels for examples from an IDX/CSV file or --values. With "
      "labels (--labels, --label-column) also prints the accuracy and the "
      "confusion matrix.");
  cmd->add_option("MODEL", flags->model, "model id")->required();
  AddInputFlags(cmd, &flags->input, /*allow_values=*/true);
  cmd->add_option("--batch", flags->batch,
                  "rows per Predict call (capped so that a request stays "
                  "under 3 MiB)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--probabilities", flags->probabilities,
                "print each row's output activations a^L");
  cmd->add_flag("--rows", flags->rows,
                "print each row's label even when true labels are given");
  cmd->callback(
      [env, flags] { *env.exit_code = RunPredict(*env.global, *flags); });
}

}  // namespace backprop::client
