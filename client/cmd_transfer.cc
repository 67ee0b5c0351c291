// backprop export / import: a model as a file holding one binary-serialized
// backprop.v1.Model with its parameters (GetModel include_parameters=true;
// CreateModel with spec + parameters).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "client/commands.h"
#include "client/views.h"
#include "client/wire.h"

namespace backprop::client {
namespace {

// Generous: a model at the server's parameter cap (1 M doubles) is ~8 MB.
constexpr uint64_t kMaxModelFileBytes = uint64_t{1} << 30;

struct ImportFlags {
  std::string file;
  std::string id;
};

int RunExport(const GlobalOptions& global, const std::string& id,
              const std::string& path) {
  Connection connection(global);
  v1::GetModelRequest request;
  request.set_model_id(id);
  request.set_include_parameters(true);
  v1::Model model;
  const grpc::Status s =
      connection.Call(&v1::Backprop::Stub::GetModel, request, &model);
  if (!s.ok()) return ReportRpcError(s);
  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    return ReportError("cannot serialize model " + id);
  }
  // Written next to the target and renamed, so that a failed export never
  // leaves a half-written file under the requested name.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return ReportError("cannot write " + path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return ReportError("cannot write " + path);
  }
  if (global.json) {
    nlohmann::json j = ModelJson(model);
    j["file"] = path;
    j["bytes"] = bytes.size();
    PrintJson(j);
  } else {
    std::cout << "exported model " << id << " (epoch " << model.epochs_trained()
              << ", " << model.parameter_count() << " parameters) to " << path
              << " (" << bytes.size() << " bytes)\n";
  }
  return kExitOk;
}

int RunImport(const GlobalOptions& global, const ImportFlags& flags) {
  std::ifstream in(flags.file, std::ios::binary);
  if (!in) return ReportError("cannot open " + flags.file);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > kMaxModelFileBytes) {
    return ReportError(flags.file + ": not a model file (size)");
  }
  in.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), size);
  v1::Model model;
  if (!in || !model.ParseFromString(bytes) ||
      model.spec().layer_sizes_size() == 0) {
    return ReportError(flags.file +
                       ": not a model file (expected a serialized "
                       "backprop.v1.Model)");
  }
  if (model.parameters_size() == 0) {
    return ReportError(flags.file + ": the model file holds no parameters");
  }

  v1::CreateModelRequest request;
  request.set_model_id(flags.id.empty() ? model.model_id() : flags.id);
  *request.mutable_spec() = model.spec();
  *request.mutable_parameters() = model.parameters();
  Connection connection(global);
  v1::Model created;
  const grpc::Status s =
      connection.Call(&v1::Backprop::Stub::CreateModel, request, &created);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson(ModelJson(created));
  } else {
    std::cout << "imported model " << created.model_id() << " ("
              << LayerSizesText(created.spec()) << ", "
              << created.parameter_count() << " parameters) from " << flags.file
              << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddExportImportCommands(CLI::App& app, CommandEnv env) {
  auto model = std::make_shared<std::string>();
  auto file = std::make_shared<std::string>();
  CLI::App* exp = app.add_subcommand(
      "export",
      "Save a model with all its weights and biases to a file (a serialized "
      "backprop.v1.Model).");
  exp->add_option("MODEL", *model, "model id")->required();
  exp->add_option("FILE", *file, "file to write")->required();
  exp->callback([env, model, file] {
    *env.exit_code = RunExport(*env.global, *model, *file);
  });

  auto flags = std::make_shared<ImportFlags>();
  CLI::App* imp = app.add_subcommand(
      "import", "Create a model from a file written by `backprop export`.");
  imp->add_option("FILE", flags->file, "file to read")->required();
  imp->add_option("--id", flags->id,
                  "id of the new model (default: the id in the file)");
  imp->callback(
      [env, flags] { *env.exit_code = RunImport(*env.global, *flags); });
}

}  // namespace backprop::client
