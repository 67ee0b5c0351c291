// backprop models list|get|create|delete.
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/output.h"
#include "client/resource_commands.h"
#include "client/views.h"
#include "client/wire.h"

namespace backprop::client {
namespace {

struct CreateFlags {
  std::string id;
  std::vector<uint32_t> layers;
  std::string hidden = "sigmoid";
  std::string output = "sigmoid";
  std::string cost = "quadratic";
  std::string init = "scaled_normal";
  uint64_t seed = 0;
  std::string dtype = "float64";
};

int RunList(const GlobalOptions& global) {
  return RunListCommand(
      global, &v1::Backprop::Stub::ListModels,
      [](const v1::ListModelsResponse& r) -> const auto& { return r.models(); },
      "models", ModelJson,
      {"MODEL", "LAYERS", "HIDDEN", "OUTPUT", "COST", "DTYPE", "PARAMS",
       "EPOCHS", "VAL_ACC", "STATE"},
      [](const v1::Model& m) -> std::vector<std::string> {
        const v1::ModelSpec& s = m.spec();
        return {m.model_id(),
                LayerSizesText(s),
                ActivationName(s.hidden_activation()),
                ActivationName(s.output_activation()),
                CostName(s.cost()),
                DTypeName(s.dtype()),
                std::to_string(m.parameter_count()),
                std::to_string(m.epochs_trained()),
                m.has_last_metrics()
                    ? Percent(m.last_metrics().validation_accuracy())
                    : "-",
                m.training() ? "training" : "idle"};
      });
}

int RunGet(const GlobalOptions& global, const std::string& id) {
  v1::GetModelRequest request;
  request.set_model_id(id);
  return RunGetCommand(global, &v1::Backprop::Stub::GetModel, request,
                       ModelJson, PrintModel);
}

int RunCreate(const GlobalOptions& global, const CreateFlags& flags) {
  v1::CreateModelRequest request;
  request.set_model_id(flags.id);
  v1::ModelSpec* spec = request.mutable_spec();
  for (uint32_t n : flags.layers) spec->add_layer_sizes(n);
  // The words were checked against these maps while parsing.
  spec->set_hidden_activation(HiddenActivations().at(flags.hidden));
  spec->set_output_activation(OutputActivations().at(flags.output));
  spec->set_cost(Costs().at(flags.cost));
  spec->set_initializer(Initializers().at(flags.init));
  spec->set_seed(flags.seed);
  spec->set_dtype(DTypes().at(flags.dtype));
  Connection connection(global);
  v1::Model model;
  const grpc::Status s =
      connection.Call(&v1::Backprop::Stub::CreateModel, request, &model);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson(ModelJson(model));
  } else {
    std::cout << "created model " << model.model_id() << " ("
              << LayerSizesText(model.spec()) << ", " << model.parameter_count()
              << " parameters)\n";
  }
  return kExitOk;
}

int RunDelete(const GlobalOptions& global, const std::string& id) {
  v1::DeleteModelRequest request;
  request.set_model_id(id);
  return RunDeleteCommand(global, &v1::Backprop::Stub::DeleteModel, request,
                          "model", id);
}

}  // namespace

void AddModelsCommand(CLI::App& app, CommandEnv env) {
  CLI::App* models = app.add_subcommand("models",
                                        "List, show, create and "
                                        "delete models.");
  models->require_subcommand(1);

  CLI::App* list = models->add_subcommand("list", "List every model.");
  list->callback([env] { *env.exit_code = RunList(*env.global); });

  auto get_id = std::make_shared<std::string>();
  CLI::App* get = models->add_subcommand("get", "Show one model.");
  get->add_option("MODEL", *get_id, "model id")->required();
  get->callback(
      [env, get_id] { *env.exit_code = RunGet(*env.global, *get_id); });

  auto flags = std::make_shared<CreateFlags>();
  CLI::App* create = models->add_subcommand(
      "create", "Create a model with freshly initialized weights.");
  create->add_option("--id", flags->id,
                     "model id ([a-z0-9][a-z0-9._-]*; empty: the server "
                     "picks one)");
  create
      ->add_option("--layers", flags->layers,
                   "neurons per layer, input first, e.g. 784,30,10")
      ->required()
      ->delimiter(',')
      ->type_name("N,N,...");
  create->add_option("--hidden", flags->hidden, "hidden-layer activation")
      ->check(CLI::IsMember(Words(HiddenActivations())))
      ->capture_default_str();
  create->add_option("--output", flags->output, "output-layer activation")
      ->check(CLI::IsMember(Words(OutputActivations())))
      ->capture_default_str();
  create->add_option("--cost", flags->cost, "cost function")
      ->check(CLI::IsMember(Words(Costs())))
      ->capture_default_str();
  create->add_option("--init", flags->init, "weight initializer")
      ->check(CLI::IsMember(Words(Initializers())))
      ->capture_default_str();
  create->add_option("--seed", flags->seed, "initializer seed")
      ->capture_default_str();
  create->add_option("--dtype", flags->dtype, "element type of the weights")
      ->check(CLI::IsMember(Words(DTypes())))
      ->capture_default_str();
  create->callback(
      [env, flags] { *env.exit_code = RunCreate(*env.global, *flags); });

  auto delete_id = std::make_shared<std::string>();
  CLI::App* del = models->add_subcommand(
      "delete", "Delete a model from the server's memory and disk.");
  del->add_option("MODEL", *delete_id, "model id")->required();
  del->callback([env, delete_id] {
    *env.exit_code = RunDelete(*env.global, *delete_id);
  });
}

}  // namespace backprop::client
