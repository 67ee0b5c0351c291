// How server messages are shown: as JSON (--json) and as text.
#ifndef BACKPROP_CLIENT_VIEWS_H_
#define BACKPROP_CLIENT_VIEWS_H_

#include <ostream>

#include "backprop/v1/backprop.pb.h"
#include <nlohmann/json.hpp>

namespace backprop::client {

nlohmann::json SpecJson(const backprop::v1::ModelSpec& spec);
nlohmann::json EpochJson(const backprop::v1::EpochMetrics& m);
// Without parameters (export writes those to a file instead).
nlohmann::json ModelJson(const backprop::v1::Model& model);
nlohmann::json DatasetJson(const backprop::v1::Dataset& dataset);

// "key: value" lines describing one model / data set.
void PrintModel(const backprop::v1::Model& model, std::ostream& out);
void PrintDataset(const backprop::v1::Dataset& dataset, std::ostream& out);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_VIEWS_H_
