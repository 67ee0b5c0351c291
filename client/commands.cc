#include "client/commands.h"

#include <iostream>

#include "absl/status/status.h"

namespace backprop::client {

void AddInputFlags(CLI::App* cmd, InputFlags* flags, bool allow_values) {
  cmd->add_option("--images", flags->images,
                  "IDX images file (gzip or plain); u8 pixels are scaled to "
                  "[0, 1]")
      ->group("Inputs");
  cmd->add_option("--labels", flags->labels, "IDX labels file (gzip or plain)")
      ->group("Inputs");
  cmd->add_option("--csv", flags->csv,
                  "CSV file: one example per line, comma-separated numbers")
      ->group("Inputs");
  cmd->add_option("--label-column", flags->label_column,
                  "CSV column holding the class label (0-based; -1 = last)")
      ->group("Inputs");
  cmd->add_flag("--csv-header", flags->csv_header,
                "the CSV's first line holds column names")
      ->group("Inputs");
  if (allow_values) {
    cmd->add_option("--values", flags->values,
                    "one example inline, comma-separated (repeatable)")
        ->group("Inputs");
  }
  cmd->add_option("--limit", flags->limit,
                  "use only the first N examples (0 = all)")
      ->group("Inputs");
}

absl::StatusOr<ExampleSet> LoadInputs(const InputFlags& flags) {
  const int sources = (flags.images.empty() ? 0 : 1) +
                      (flags.csv.empty() ? 0 : 1) +
                      (flags.values.empty() ? 0 : 1);
  if (sources != 1) {
    return absl::InvalidArgumentError(
        "give exactly one input source: --images [--labels], --csv or "
        "--values");
  }
  if (!flags.labels.empty() && flags.images.empty()) {
    return absl::InvalidArgumentError("--labels needs --images");
  }
  if (!flags.images.empty()) {
    return LoadIdx(flags.images, flags.labels, flags.limit);
  }
  if (!flags.csv.empty()) {
    CsvOptions o;
    o.has_label = flags.label_column.has_value();
    o.label_column = flags.label_column.value_or(0);
    o.skip_header = flags.csv_header;
    return LoadCsv(flags.csv, o, flags.limit);
  }
  absl::StatusOr<ExampleSet> set = ParseValueRows(flags.values);
  if (set.ok() && flags.limit > 0 && set->rows > flags.limit) {
    set->rows = flags.limit;
    set->inputs.resize(set->rows * set->cols);
  }
  return set;
}

grpc::Status FetchModel(Connection& connection, const std::string& model_id,
                        v1::Model* model) {
  v1::GetModelRequest request;
  request.set_model_id(model_id);
  return connection.Call(&v1::Backprop::Stub::GetModel, request, model);
}

void PrintJson(const nlohmann::json& value) {
  std::cout << value.dump(2) << std::endl;
}

}  // namespace backprop::client
