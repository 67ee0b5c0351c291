// backprop datasets list|get|delete.
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/resource_commands.h"
#include "client/views.h"

namespace backprop::client {
namespace {

int RunList(const GlobalOptions& global) {
  return RunListCommand(
      global, &v1::Backprop::Stub::ListDatasets,
      [](const v1::ListDatasetsResponse& r) -> const auto& {
        return r.datasets();
      },
      "datasets", DatasetJson,
      {"DATASET", "EXAMPLES", "FEATURES", "CLASSES", "TARGETS", "DESCRIPTION"},
      [](const v1::Dataset& d) -> std::vector<std::string> {
        return {d.dataset_id(), std::to_string(d.example_count()),
                std::to_string(d.feature_count()),
                d.class_count() > 0 ? std::to_string(d.class_count()) : "-",
                d.target_size() > 0 ? std::to_string(d.target_size()) : "-",
                d.description()};
      });
}

int RunGet(const GlobalOptions& global, const std::string& id) {
  v1::GetDatasetRequest request;
  request.set_dataset_id(id);
  return RunGetCommand(global, &v1::Backprop::Stub::GetDataset, request,
                       DatasetJson, PrintDataset);
}

int RunDelete(const GlobalOptions& global, const std::string& id) {
  v1::DeleteDatasetRequest request;
  request.set_dataset_id(id);
  return RunDeleteCommand(global, &v1::Backprop::Stub::DeleteDataset, request,
                          "dataset", id);
}

}  // namespace

void AddDatasetsCommand(CLI::App& app, CommandEnv env) {
  CLI::App* datasets = app.add_subcommand(
      "datasets", "List, show and delete data sets (see also: upload).");
  datasets->require_subcommand(1);

  CLI::App* list = datasets->add_subcommand("list", "List every data set.");
  list->callback([env] { *env.exit_code = RunList(*env.global); });

  auto get_id = std::make_shared<std::string>();
  CLI::App* get = datasets->add_subcommand("get", "Show one data set.");
  get->add_option("DATASET", *get_id, "data set id")->required();
  get->callback(
      [env, get_id] { *env.exit_code = RunGet(*env.global, *get_id); });

  auto delete_id = std::make_shared<std::string>();
  CLI::App* del = datasets->add_subcommand("delete", "Delete a data set.");
  del->add_option("DATASET", *delete_id, "data set id")->required();
  del->callback([env, delete_id] {
    *env.exit_code = RunDelete(*env.global, *delete_id);
  });
}

}  // namespace backprop::client
