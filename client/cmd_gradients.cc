// backprop gradients: ∂C/∂w and ∂C/∂b for labelled examples, as computed by
// the server's backprop, optionally checked by the server against central
// finite differences.
#include <cmath>
#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/output.h"
#include "client/wire.h"

namespace backprop::client {
namespace {

struct GradientsFlags {
  std::string model;
  InputFlags input;
  bool full = false;
  double check = 0;
  uint32_t samples = 0;
};

double FrobeniusNorm(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x * x;
  return std::sqrt(sum);
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

nlohmann::json MatrixJson(const v1::Matrix& m) {
  const std::vector<double> v = MatrixValues(m);
  nlohmann::json rows = nlohmann::json::array();
  for (uint64_t r = 0; r < m.rows() && (r + 1) * m.cols() <= v.size(); ++r) {
    rows.push_back(std::vector<double>(v.begin() + r * m.cols(),
                                       v.begin() + (r + 1) * m.cols()));
  }
  return rows;
}

void PrintMatrix(const std::string& name, const v1::Matrix& m) {
  const std::vector<double> v = MatrixValues(m);
  std::cout << name << " (" << m.rows() << " x " << m.cols() << ")\n";
  for (uint64_t r = 0; r < m.rows() && (r + 1) * m.cols() <= v.size(); ++r) {
    for (uint64_t c = 0; c < m.cols(); ++c) {
      std::cout << (c > 0 ? " " : "  ") << Scientific(v[r * m.cols() + c]);
    }
    std::cout << "\n";
  }
}

int RunGradients(const GlobalOptions& global, const GradientsFlags& flags) {
  absl::StatusOr<ExampleSet> set = LoadInputs(flags.input);
  if (!set.ok()) return ReportError(std::string(set.status().message()));
  if (!set->has_labels()) {
    return ReportError(
        "gradients need labels: give --labels with --images, or "
        "--label-column with --csv",
        kExitUsage);
  }
  const uint64_t max_rows = std::max<uint64_t>(
      1, kRequestByteBudget / (set->cols * sizeof(double) + 4));
  if (set->rows > max_rows) {
    return ReportError(std::to_string(set->rows) +
                           " examples do not fit in one request; use --limit "
                           "(at most " +
                           std::to_string(max_rows) + " for this width)",
                       kExitUsage);
  }

  v1::GetGradientsRequest request;
  request.set_model_id(flags.model);
  v1::Examples* examples = request.mutable_examples();
  FillMatrix(set->rows, set->cols, set->inputs.data(), v1::FLOAT64,
             examples->mutable_inputs());
  examples->mutable_labels()->mutable_values()->Add(set->labels.begin(),
                                                    set->labels.end());
  request.set_check_epsilon(flags.check);
  request.set_check_samples(flags.samples);

  Connection connection(global);
  v1::GetGradientsResponse response;
  const grpc::Status s =
      connection.Call(&v1::Backprop::Stub::GetGradients, request, &response);
  if (!s.ok()) return ReportRpcError(s);

  if (global.json) {
    nlohmann::json layers = nlohmann::json::array();
    for (int i = 0; i < response.gradients_size(); ++i) {
      const v1::LayerParameters& g = response.gradients(i);
      const std::vector<double> w = MatrixValues(g.weights());
      const std::vector<double> b = MatrixValues(g.biases());
      nlohmann::json layer = {{"layer", i + 2},
                              {"rows", g.weights().rows()},
                              {"cols", g.weights().cols()},
                              {"weight_gradient_norm", FrobeniusNorm(w)},
                              {"bias_gradient_norm", FrobeniusNorm(b)},
                              {"weight_gradient_max_abs", MaxAbs(w)}};
      if (flags.full) {
        layer["weights"] = MatrixJson(g.weights());
        layer["biases"] = b;
      }
      layers.push_back(layer);
    }
    nlohmann::json j = {{"model_id", flags.model},
                        {"examples", set->rows},
                        {"cost", response.cost()},
                        {"layers", layers}};
    if (flags.check > 0) {
      j["check"] = {
          {"epsilon", flags.check},
          {"parameters_checked", response.check().parameters_checked()},
          {"max_abs_error", response.check().max_abs_error()},
          {"max_rel_error", response.check().max_rel_error()}};
    }
    PrintJson(j);
    return kExitOk;
  }

  std::cout << "cost C = " << Scientific(response.cost()) << " over "
            << set->rows << " examples\n";
  // Layer numbers as in the seed: the first weight matrix belongs to l = 2.
  Table table({"LAYER", "SHAPE", "|dC/dw|", "|dC/db|", "MAX|dC/dw|"});
  for (int i = 0; i < response.gradients_size(); ++i) {
    const v1::LayerParameters& g = response.gradients(i);
    const std::vector<double> w = MatrixValues(g.weights());
    const std::vector<double> b = MatrixValues(g.biases());
    table.AddRow({std::to_string(i + 2),
                  std::to_string(g.weights().rows()) + "x" +
                      std::to_string(g.weights().cols()),
                  Scientific(FrobeniusNorm(w)), Scientific(FrobeniusNorm(b)),
                  Scientific(MaxAbs(w))});
  }
  table.Print(std::cout);
  if (flags.full) {
    for (int i = 0; i < response.gradients_size(); ++i) {
      const std::string l = std::to_string(i + 2);
      std::cout << "\n";
      PrintMatrix("dC/dw, layer " + l, response.gradients(i).weights());
      PrintMatrix("dC/db, layer " + l, response.gradients(i).biases());
    }
  }
  if (flags.check > 0) {
    std::cout << "\ngradient check (central differences, eps = "
              << Scientific(flags.check)
              << "): " << response.check().parameters_checked()
              << " parameters, max abs error "
              << Scientific(response.check().max_abs_error())
              << ", max rel error "
              << Scientific(response.check().max_rel_error()) << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddGradientsCommand(CLI::App& app, CommandEnv env) {
  auto flags = std::make_shared<GradientsFlags>();
  CLI::App* cmd = app.add_subcommand(
      "gradients",
      "Compute the cost and its gradients (backprop on the server) for "
      "labelled examples; prints per-layer norms, or every entry with "
      "--full. Changes nothing.");
  cmd->add_option("MODEL", flags->model, "model id")->required();
  AddInputFlags(cmd, &flags->input, /*allow_values=*/false);
  cmd->add_flag("--full", flags->full, "print the full gradient matrices");
  cmd->add_option("--check", flags->check,
                  "also compare with central differences of this step ε")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--samples", flags->samples,
                  "parameters to check (0 = the server's default, 100)");
  cmd->callback(
      [env, flags] { *env.exit_code = RunGradients(*env.global, *flags); });
}

}  // namespace backprop::client
