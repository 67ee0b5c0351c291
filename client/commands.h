// The CLI's commands. Each Add*Command registers one (sub)command on the
// app; when CLI11 selects it, its callback runs the command and stores the
// process exit code in *exit_code. One .cc per command (cmd_*.cc).
#ifndef BACKPROP_CLIENT_COMMANDS_H_
#define BACKPROP_CLIENT_COMMANDS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "client/connection.h"
#include "client/data_files.h"
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace backprop::client {

// What a command needs from main: the parsed global flags (read when the
// command runs, after parsing) and where to put its exit code.
struct CommandEnv {
  const GlobalOptions* global = nullptr;
  int* exit_code = nullptr;
};

void AddHealthCommand(CLI::App& app, CommandEnv env);
void AddModelsCommand(CLI::App& app, CommandEnv env);
void AddDatasetsCommand(CLI::App& app, CommandEnv env);
void AddUploadCommand(CLI::App& app, CommandEnv env);
void AddTrainCommand(CLI::App& app, CommandEnv env);
void AddPredictCommand(CLI::App& app, CommandEnv env);
void AddGradientsCommand(CLI::App& app, CommandEnv env);
void AddExportImportCommands(CLI::App& app, CommandEnv env);
void AddBenchCommand(CLI::App& app, CommandEnv env);

// Example inputs from files or inline values, shared by upload, predict and
// gradients.
struct InputFlags {
  std::string images;
  std::string labels;
  std::string csv;
  std::optional<int> label_column;  // none: the CSV has no label column
  bool csv_header = false;
  std::vector<std::string> values;
  uint64_t limit = 0;
};
// allow_values: also offer --values (predict only).
void AddInputFlags(CLI::App* cmd, InputFlags* flags, bool allow_values);
// Loads what the flags name. kInvalidArgument when no source or more than
// one is given, and the file errors of data_files.h.
absl::StatusOr<ExampleSet> LoadInputs(const InputFlags& flags);

// GetModel without the parameters, on `connection` with the unary deadline.
grpc::Status FetchModel(Connection& connection, const std::string& model_id,
                        backprop::v1::Model* model);

// Prints a JSON value (pretty, one document) to stdout.
void PrintJson(const nlohmann::json& value);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_COMMANDS_H_
