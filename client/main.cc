// backprop: the command-line client of the backprop service.
#include <iostream>

#include "client/commands.h"
#include "client/connection.h"
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  using namespace backprop::client;
  GlobalOptions global;
  int exit_code = kExitOk;

  CLI::App app{
      "backprop: train and serve fully-connected neural networks on a "
      "backprop server (gRPC backprop.v1).\n"
      "Run `backprop COMMAND --help` for the options of one command."};
  app.name("backprop");
  app.fallthrough();  // global flags may also follow the command
  app.require_subcommand(1);
  app.add_option("--server", global.server, "server address HOST:PORT")
      ->envname("BACKPROP_SERVER")
      ->capture_default_str();
  app.add_option("--deadline", global.deadline_seconds,
                 "deadline in seconds for each call (default: 60 for unary "
                 "calls, none for streams)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", global.json,
               "print machine-readable JSON instead of tables");
  app.add_option("--tls_ca", global.tls_ca,
                 "PEM CA certificate(s) to verify the server with; any TLS "
                 "flag switches to TLS (default roots when this is absent)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls_cert", global.tls_cert,
                 "PEM client certificate for mTLS (with --tls_key)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls_key", global.tls_key, "PEM private key of --tls_cert")
      ->check(CLI::ExistingFile);
  app.add_option("--token", global.token,
                 "bearer token sent with every call (never printed)")
      ->envname("BACKPROP_TOKEN");

  const CommandEnv env{&global, &exit_code};
  AddHealthCommand(app, env);
  AddModelsCommand(app, env);
  AddDatasetsCommand(app, env);
  AddUploadCommand(app, env);
  AddTrainCommand(app, env);
  AddPredictCommand(app, env);
  AddGradientsCommand(app, env);
  AddExportImportCommands(app, env);
  AddBenchCommand(app, env);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // --help and --version exit 0; every other parse error is a usage error.
    return code == 0 ? kExitOk : kExitUsage;
  }
  return exit_code;
}
