// backprop datasets list|get|delete.
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/output.h"
#include "client/views.h"

namespace backprop::client {
namespace {

int RunList(const GlobalOptions& global) {
  Connection connection(global);
  std::vector<v1::Dataset> datasets;
  v1::ListDatasetsRequest request;
  do {
    grpc::ClientContext context;
    connection.PrepareUnary(&context);
    v1::ListDatasetsResponse response;
    const grpc::Status s =
        connection.stub().ListDatasets(&context, request, &response);
    if (!s.ok()) return ReportRpcError(s);
    datasets.insert(datasets.end(), response.datasets().begin(),
                    response.datasets().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());

  if (global.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const v1::Dataset& d : datasets) j.push_back(DatasetJson(d));
    PrintJson({{"datasets", j}});
    return kExitOk;
  }
  Table table(
      {"DATASET", "EXAMPLES", "FEATURES", "CLASSES", "TARGETS", "DESCRIPTION"});
  for (const v1::Dataset& d : datasets) {
    table.AddRow({d.dataset_id(), std::to_string(d.example_count()),
                  std::to_string(d.feature_count()),
                  d.class_count() > 0 ? std::to_string(d.class_count()) : "-",
                  d.target_size() > 0 ? std::to_string(d.target_size()) : "-",
                  d.description()});
  }
  table.Print(std::cout);
  return kExitOk;
}

int RunGet(const GlobalOptions& global, const std::string& id) {
  Connection connection(global);
  grpc::ClientContext context;
  connection.PrepareUnary(&context);
  v1::GetDatasetRequest request;
  request.set_dataset_id(id);
  v1::Dataset dataset;
  const grpc::Status s =
      connection.stub().GetDataset(&context, request, &dataset);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson(DatasetJson(dataset));
  } else {
    PrintDataset(dataset, std::cout);
  }
  return kExitOk;
}

int RunDelete(const GlobalOptions& global, const std::string& id) {
  Connection connection(global);
  grpc::ClientContext context;
  connection.PrepareUnary(&context);
  v1::DeleteDatasetRequest request;
  request.set_dataset_id(id);
  v1::DeleteDatasetResponse response;
  const grpc::Status s =
      connection.stub().DeleteDataset(&context, request, &response);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson({{"deleted", id}});
  } else {
    std::cout << "deleted dataset " << id << "\n";
  }
  return kExitOk;
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
