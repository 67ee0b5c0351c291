#include "client/views.h"

#include "client/output.h"
#include "client/wire.h"

namespace backprop::client {

nlohmann::json SpecJson(const v1::ModelSpec& spec) {
  return {
      {"layer_sizes", std::vector<uint32_t>(spec.layer_sizes().begin(),
                                            spec.layer_sizes().end())},
      {"hidden_activation", ActivationName(spec.hidden_activation())},
      {"output_activation", ActivationName(spec.output_activation())},
      {"cost", CostName(spec.cost())},
      {"initializer", InitializerName(spec.initializer())},
      {"seed", spec.seed()},
      {"dtype", DTypeName(spec.dtype())},
  };
}

nlohmann::json EpochJson(const v1::EpochMetrics& m) {
  nlohmann::json layers = nlohmann::json::array();
  for (const v1::LayerStats& l : m.layers()) {
    layers.push_back({{"weight_norm", l.weight_norm()},
                      {"gradient_norm", l.gradient_norm()},
                      {"saturated_fraction", l.saturated_fraction()}});
  }
  return {{"epoch", m.epoch()},
          {"epochs_trained", m.epochs_trained()},
          {"training_cost", m.training_cost()},
          {"training_accuracy", m.training_accuracy()},
          {"validation_cost", m.validation_cost()},
          {"validation_accuracy", m.validation_accuracy()},
          {"seconds", m.seconds()},
          {"examples_per_second", m.examples_per_second()},
          {"layers", layers}};
}

nlohmann::json ModelJson(const v1::Model& model) {
  nlohmann::json j = {{"model_id", model.model_id()},
                      {"spec", SpecJson(model.spec())},
                      {"epochs_trained", model.epochs_trained()},
                      {"parameter_count", model.parameter_count()},
                      {"training", model.training()},
                      {"create_time", Timestamp(model.create_time())},
                      {"update_time", Timestamp(model.update_time())}};
  if (model.has_last_metrics()) {
    j["last_metrics"] = EpochJson(model.last_metrics());
  }
  return j;
}

nlohmann::json DatasetJson(const v1::Dataset& d) {
  return {{"dataset_id", d.dataset_id()},
          {"example_count", d.example_count()},
          {"feature_count", d.feature_count()},
          {"class_count", d.class_count()},
          {"target_size", d.target_size()},
          {"description", d.description()},
          {"create_time", Timestamp(d.create_time())}};
}

void PrintModel(const v1::Model& model, std::ostream& out) {
  const v1::ModelSpec& s = model.spec();
  out << "model:        " << model.model_id() << "\n"
      << "layers:       " << LayerSizesText(s) << "\n"
      << "activations:  hidden " << ActivationName(s.hidden_activation())
      << ", output " << ActivationName(s.output_activation()) << "\n"
      << "cost:         " << CostName(s.cost()) << "\n"
      << "initializer:  " << InitializerName(s.initializer()) << " (seed "
      << s.seed() << ")\n"
      << "dtype:        " << DTypeName(s.dtype()) << "\n"
      << "parameters:   " << model.parameter_count() << "\n"
      << "epochs:       " << model.epochs_trained()
      << (model.training() ? " (training now)" : "") << "\n"
      << "created:      " << Timestamp(model.create_time()) << "\n"
      << "updated:      " << Timestamp(model.update_time()) << "\n";
  if (model.has_last_metrics()) {
    const v1::EpochMetrics& m = model.last_metrics();
    out << "last epoch:   training cost " << Fixed(m.training_cost(), 4)
        << ", accuracy " << Percent(m.training_accuracy())
        << "; validation cost " << Fixed(m.validation_cost(), 4)
        << ", accuracy " << Percent(m.validation_accuracy()) << "\n";
  }
}

void PrintDataset(const v1::Dataset& d, std::ostream& out) {
  out << "dataset:      " << d.dataset_id() << "\n"
      << "examples:     " << d.example_count() << "\n"
      << "features:     " << d.feature_count() << "\n";
  if (d.class_count() > 0) out << "classes:      " << d.class_count() << "\n";
  if (d.target_size() > 0) out << "target size:  " << d.target_size() << "\n";
  out << "description:  " << d.description() << "\n"
      << "created:      " << Timestamp(d.create_time()) << "\n";
}

}  // namespace backprop::client
