// Writes the seed corpora of the service fuzz targets into
// <root>/<target>/: small valid requests (serialized with the generated
// classes) that name the fixture's models and data sets
// (service_fixture.h), so that each seed reaches the engine. Run it again
// after a change of the proto or of the fixture:
//   build-fuzz/fuzz/write_service_corpus fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "backprop/v1/backprop.pb.h"
#include "fuzz/service_fixture.h"
#include "server/ids.h"

namespace backprop::fuzz {
namespace {

using F = ServiceFixture;

std::string root;

void Put(const std::string& target, const std::string& name,
         const std::string& bytes) {
  const std::string dir = root + "/" + target;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

void PutMessage(const std::string& target, const std::string& name,
                const google::protobuf::Message& m) {
  Put(target, name, m.SerializeAsString());
}

v1::ModelSpec Spec(std::vector<uint32_t> sizes, v1::Activation hidden,
                   v1::Activation output, v1::Cost cost, v1::DType dtype) {
  v1::ModelSpec s;
  for (uint32_t n : sizes) s.add_layer_sizes(n);
  s.set_hidden_activation(hidden);
  s.set_output_activation(output);
  s.set_cost(cost);
  s.set_dtype(dtype);
  s.set_initializer(v1::STANDARD_NORMAL);
  s.set_seed(3);
  return s;
}

void Matrix(uint64_t rows, uint64_t cols, bool f32, double scale,
            v1::Matrix* m) {
  m->set_rows(rows);
  m->set_cols(cols);
  for (uint64_t i = 0; i < rows * cols; ++i) {
    const double v = scale * static_cast<double>(static_cast<int>(i % 7) - 3);
    if (f32) {
      m->add_float_values(static_cast<float>(v));
    } else {
      m->add_double_values(v);
    }
  }
}

void CreateModelSeeds() {
  const std::string t = "create_model_fuzzer";
  v1::CreateModelRequest r;
  r.set_model_id("seed-a");
  *r.mutable_spec() = Spec({4, 5, 3}, v1::SIGMOID, v1::SOFTMAX,
                           v1::CROSS_ENTROPY, v1::FLOAT64);
  PutMessage(t, "sigmoid_softmax_f64", r);
  *r.mutable_spec() =
      Spec({3, 4, 4, 2}, v1::RELU, v1::IDENTITY, v1::QUADRATIC, v1::FLOAT32);
  PutMessage(t, "relu_identity_f32", r);
  *r.mutable_spec() =
      Spec({2, 3, 1}, v1::TANH, v1::SIGMOID, v1::QUADRATIC, v1::FLOAT64);
  r.mutable_spec()->set_initializer(v1::SCALED_NORMAL);
  PutMessage(t, "tanh_sigmoid", r);
  r.clear_model_id();  // the server picks the id
  *r.mutable_spec() = Spec({4, 2}, v1::ACTIVATION_UNSPECIFIED,
                           v1::ACTIVATION_UNSPECIFIED, v1::COST_UNSPECIFIED,
                           v1::DTYPE_UNSPECIFIED);
  PutMessage(t, "server_picks_id_defaults", r);
  // Explicit parameters, float64 and float32.
  for (bool f32 : {false, true}) {
    v1::CreateModelRequest p;
    p.set_model_id(f32 ? "seed-p32" : "seed-p64");
    *p.mutable_spec() = Spec({2, 3, 2}, v1::SIGMOID, v1::SIGMOID,
                             v1::QUADRATIC,
                             f32 ? v1::FLOAT32 : v1::FLOAT64);
    for (auto [rows, cols] : {std::pair{3, 2}, std::pair{2, 3}}) {
      v1::LayerParameters* l = p.add_parameters();
      Matrix(rows, cols, f32, 0.25, l->mutable_weights());
      Matrix(rows, 1, f32, 0.5, l->mutable_biases());
    }
    PutMessage(t, f32 ? "parameters_f32" : "parameters_f64", p);
  }
  v1::CreateModelRequest dup;
  dup.set_model_id(F::kModel64);
  *dup.mutable_spec() =
      Spec({4, 5, 3}, v1::SIGMOID, v1::SOFTMAX, v1::CROSS_ENTROPY,
           v1::FLOAT64);
  PutMessage(t, "existing_id", dup);
}

void ModelIdSeeds() {
  for (const char* id : {F::kModel64, F::kModel32, "missing", "../x"}) {
    const std::string name = std::string(id) == "../x" ? "invalid_id" : id;
    v1::GetModelRequest g;
    g.set_model_id(id);
    PutMessage("get_model_fuzzer", name, g);
    g.set_include_parameters(true);
    PutMessage("get_model_fuzzer", name + "_parameters", g);
    v1::DeleteModelRequest d;
    d.set_model_id(id);
    PutMessage("delete_model_fuzzer", name, d);
  }
  for (const char* id : {F::kLabels, F::kTargets, "missing", "../x"}) {
    const std::string name = std::string(id) == "../x" ? "invalid_id" : id;
    v1::GetDatasetRequest g;
    g.set_dataset_id(id);
    PutMessage("get_dataset_fuzzer", name, g);
    v1::DeleteDatasetRequest d;
    d.set_dataset_id(id);
    PutMessage("delete_dataset_fuzzer", name, d);
  }
}

void ListSeeds() {
  v1::ListModelsRequest m;
  PutMessage("list_models_fuzzer", "default_page", m);
  m.set_page_size(1);
  PutMessage("list_models_fuzzer", "page_of_one", m);
  m.set_page_token(server::EncodePageToken("m", F::kModel32));
  PutMessage("list_models_fuzzer", "second_page", m);
  m.set_page_token(server::EncodePageToken("d", F::kModel32));
  PutMessage("list_models_fuzzer", "token_of_datasets", m);
  v1::ListDatasetsRequest d;
  PutMessage("list_datasets_fuzzer", "default_page", d);
  d.set_page_size(1);
  PutMessage("list_datasets_fuzzer", "page_of_one", d);
  d.set_page_token(server::EncodePageToken("d", F::kLabels));
  PutMessage("list_datasets_fuzzer", "second_page", d);
  d.set_page_token(server::EncodePageToken("m", F::kLabels));
  PutMessage("list_datasets_fuzzer", "token_of_models", d);
}

// upload_dataset_fuzzer input: messages, each a 2-byte little-endian length
// and the serialized UploadDatasetRequest.
std::string Stream(const std::vector<v1::UploadDatasetRequest>& parts) {
  std::string out;
  for (const v1::UploadDatasetRequest& p : parts) {
    const std::string b = p.SerializeAsString();
    out.push_back(static_cast<char>(b.size() & 0xff));
    out.push_back(static_cast<char>(b.size() >> 8));
    out += b;
  }
  return out;
}

void UploadSeeds() {
  for (bool labels : {true, false}) {
    std::vector<v1::UploadDatasetRequest> parts(1);
    v1::DatasetHeader* h = parts[0].mutable_header();
    h->set_dataset_id(labels ? "seed-labels" : "seed-targets");
    h->set_feature_count(4);
    if (labels) {
      h->set_class_count(3);
    } else {
      h->set_target_size(2);
    }
    h->set_description("a seed");
    for (uint32_t rows : {3, 1, 2}) {
      *parts.emplace_back().mutable_chunk() = FixtureExamples(rows, labels);
    }
    Put("upload_dataset_fuzzer",
        labels ? "labels_3_chunks" : "targets_3_chunks", Stream(parts));
    parts[0].mutable_header()->clear_dataset_id();  // the server picks one
    parts.resize(2);
    Put("upload_dataset_fuzzer",
        labels ? "labels_server_picks_id" : "targets_server_picks_id",
        Stream(parts));
  }
  // float32 inputs.
  std::vector<v1::UploadDatasetRequest> parts(2);
  parts[0].mutable_header()->set_dataset_id("seed-f32");
  parts[0].mutable_header()->set_feature_count(2);
  parts[0].mutable_header()->set_class_count(2);
  v1::Examples* e = parts[1].mutable_chunk();
  Matrix(2, 2, /*f32=*/true, 0.5, e->mutable_inputs());
  e->mutable_labels()->add_values(0);
  e->mutable_labels()->add_values(1);
  Put("upload_dataset_fuzzer", "float32_inputs", Stream(parts));
  parts.resize(1);
  Put("upload_dataset_fuzzer", "header_only", Stream(parts));
}

void TrainSeeds() {
  const std::string t = "train_fuzzer";
  v1::TrainRequest r;
  r.set_model_id(F::kModel64);
  r.set_dataset_id(F::kLabels);
  r.set_epochs(2);
  r.set_mini_batch_size(4);
  r.set_learning_rate(0.5);
  PutMessage(t, "dataset_labels", r);
  r.set_validation_dataset_id(F::kLabels);
  r.set_l2_lambda(0.1);
  r.set_momentum(0.5);
  r.set_monitor_training(true);
  r.set_progress_interval_ms(1);
  r.set_shuffle_seed(9);
  PutMessage(t, "validation_momentum_monitor", r);
  v1::TrainRequest i;
  i.set_model_id(F::kModel32);
  *i.mutable_examples() = FixtureExamples(6, /*labels=*/false);
  *i.mutable_validation_examples() = FixtureExamples(2, /*labels=*/false);
  i.set_epochs(1);
  i.set_mini_batch_size(2);
  i.set_learning_rate(0.1);
  PutMessage(t, "inline_targets_f32", i);
  i.clear_examples();
  i.clear_validation_examples();
  i.set_dataset_id(F::kTargets);
  PutMessage(t, "dataset_targets_f32", i);
  v1::TrainRequest l;
  l.set_model_id(F::kModel64);
  *l.mutable_examples() = FixtureExamples(5, /*labels=*/true);
  l.set_epochs(1);
  l.set_mini_batch_size(5);
  l.set_learning_rate(1.0);
  PutMessage(t, "inline_labels", l);
}

void PredictAndGradientSeeds() {
  v1::PredictRequest p;
  p.set_model_id(F::kModel64);
  *p.mutable_inputs() = FixtureExamples(3, true).inputs();
  PutMessage("predict_fuzzer", "f64_three_rows", p);
  p.set_model_id(F::kModel32);
  p.clear_inputs();
  Matrix(2, 4, /*f32=*/true, 0.25, p.mutable_inputs());
  PutMessage("predict_fuzzer", "f32_float_inputs", p);
  p.set_model_id(F::kModel64);
  PutMessage("predict_fuzzer", "f64_float_inputs", p);
  v1::GetGradientsRequest g;
  g.set_model_id(F::kModel64);
  *g.mutable_examples() = FixtureExamples(4, /*labels=*/true);
  PutMessage("get_gradients_fuzzer", "labels", g);
  g.set_check_epsilon(1e-5);
  g.set_check_samples(10);
  PutMessage("get_gradients_fuzzer", "labels_checked", g);
  g.set_model_id(F::kModel32);
  *g.mutable_examples() = FixtureExamples(3, /*labels=*/false);
  PutMessage("get_gradients_fuzzer", "targets_f32_checked", g);
  g.clear_check_epsilon();
  g.clear_check_samples();
  PutMessage("get_gradients_fuzzer", "targets_f32", g);
}

// service_sequence_fuzzer: op count, op codes, arguments (see its header:
// zero arguments pick valid defaults).
void SequenceSeeds() {
  enum Op : uint8_t {
    kCreate = 0, kCreateWithParameters, kClone, kDeleteModel, kTrain,
    kPredict, kGradients, kUpload, kDeleteDataset, kRestart, kList
  };
  auto seq = [](std::vector<uint8_t> ops, std::vector<uint8_t> args = {}) {
    std::string s(1, static_cast<char>(ops.size()));
    s.append(ops.begin(), ops.end());
    s.append(args.begin(), args.end());
    return s;
  };
  const std::string t = "service_sequence_fuzzer";
  Put(t, "create_train_predict", seq({kCreate, kTrain, kPredict, kGradients}));
  Put(t, "create_restart_delete",
      seq({kCreate, kRestart, kList, kDeleteModel, kRestart}));
  // m0 = [1, 1] with explicit (zero) parameters, cloned into m1.
  Put(t, "parameters_clone",
      seq({kCreateWithParameters, kClone, kPredict},
          {// CreateModel with parameters: id m0, spec as in Create (12),
           // rows of w(1), w(1) (float64, count, value), b(1) (same)
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           // Clone: from m0 to m1
           0, 1}));
  Put(t, "upload_restart_delete",
      seq({kUpload, kRestart, kDeleteDataset, kList}));
  // Upload d0 (1 feature, 2 classes, 2 rows), create m0 = [1, 2], train it
  // 2 epochs on d0 (monitor and progress on), restart, predict, gradients.
  Put(t, "train_on_dataset_restart",
      seq({kUpload, kCreate, kTrain, kRestart, kPredict, kGradients},
          {// Upload: features, outputs, labels, header, id d0, perturb x2,
           // one chunk, 2 rows, float64, perturb, values 1.0 0.5, labels 0 1
           0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 16, 8, 0, 1,
           // Create: id m0, spec, 2 layers, width 1, width 2, enums, seed
           0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
           // Train: m0, dataset d0, no validation, 2 epochs, batch 1,
           // eta 0.5, momentum, l2, seed, monitor, progress
           0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1}));
}

}  // namespace
}  // namespace backprop::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_ROOT (fuzz/corpus)\n", argv[0]);
    return 2;
  }
  backprop::fuzz::root = argv[1];
  backprop::fuzz::CreateModelSeeds();
  backprop::fuzz::ModelIdSeeds();
  backprop::fuzz::ListSeeds();
  backprop::fuzz::UploadSeeds();
  backprop::fuzz::TrainSeeds();
  backprop::fuzz::PredictAndGradientSeeds();
  backprop::fuzz::SequenceSeeds();
  return 0;
}
