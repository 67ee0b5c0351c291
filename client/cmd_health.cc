// backprop health: the server's grpc.health.v1 status.
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/health.h"

namespace backprop::client {
namespace {

struct HealthFlags {
  std::string service;
};

int RunHealth(const GlobalOptions& global, const HealthFlags& flags) {
  Connection connection(global);
  grpc::GenericStub stub(connection.channel());
  grpc::ClientContext context;
  connection.PrepareUnary(&context);
  ServingStatus status = ServingStatus::kUnknown;
  const grpc::Status s = CheckHealth(stub, &context, flags.service, &status);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson({{"server", global.server},
               {"service", flags.service},
               {"status", ServingStatusName(status)}});
  } else {
    std::cout << global.server << ": " << ServingStatusName(status) << "\n";
  }
  return status == ServingStatus::kServing ? kExitOk : kExitError;
}

}  // namespace

void AddHealthCommand(CLI::App& app, CommandEnv env) {
  auto flags = std::make_shared<HealthFlags>();
  CLI::App* cmd = app.add_subcommand(
      "health",
      "Ask the server whether it is serving (grpc.health.v1 Check). Exits 0 "
      "only when the answer is SERVING.");
  cmd->add_option("--service", flags->service,
                  "service name to ask about (\"\" = the whole server, or "
                  "backprop.v1.Backprop)");
  cmd->callback(
      [env, flags] { *env.exit_code = RunHealth(*env.global, *flags); });
}

}  // namespace backprop::client
