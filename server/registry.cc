#include "server/registry.h"

#include <filesystem>
#include <system_error>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"

#include "core/model_file.h"
#include "server/convert.h"
#include "server/ids.h"

namespace backprop::server {
namespace {

absl::Time TimeFromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Ids of the regular files "<id><ext>" in dir, in directory order; names that
// are not valid ids are reported and skipped (they cannot be ours).
std::vector<std::string> ListIds(
    const std::string& dir, absl::string_view ext,
    const std::function<void(const std::string&)>& report) {
  std::vector<std::string> ids;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    report(absl::StrCat("cannot list ", dir, ": ", ec.message()));
    return ids;
  }
  for (const auto& e : it) {
    const std::string name = e.path().filename().string();
    if (name.size() <= ext.size() ||
        name.compare(name.size() - ext.size(), ext.size(), ext.data(),
                     ext.size()) != 0) {
      continue;
    }
    std::string id = name.substr(0, name.size() - ext.size());
    if (!IsValidId(id)) {
      report(absl::StrCat("skipping ", e.path().string(),
                          ": the name is not a valid id"));
      continue;
    }
    ids.push_back(std::move(id));
  }
  return ids;
}

// WriteFileAtomically's temp files are ".<name>.tmp.XXXXXX"; one that is
// still there at startup was left by a crash mid-write (the real file is
// intact), so it is removed.
void RemoveStaleTempFiles(
    const std::string& dir, absl::string_view ext,
    const std::function<void(const std::string&)>& report) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& e : it) {
    const std::string name = e.path().filename().string();
    const size_t mark = name.rfind(".tmp.");
    if (name.size() < 2 || name[0] != '.' || mark == std::string::npos ||
        name.size() - mark != 11) {
      continue;
    }
    const std::string base = name.substr(1, mark - 1);  // "<id><ext>"
    if (base.size() <= ext.size() ||
        base.compare(base.size() - ext.size(), ext.size(), ext.data(),
                     ext.size()) != 0 ||
        !IsValidId(base.substr(0, base.size() - ext.size()))) {
      continue;
    }
    std::error_code rm;
    if (std::filesystem::remove(e.path(), rm)) {
      report(absl::StrCat("removed ", e.path().string(),
                          ", an unfinished write from an earlier run"));
    }
  }
}

absl::Status RemoveFile(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot remove ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

const ModelSpec& SpecOf(const AnyNetwork& net) {
  return std::visit([](const auto& n) -> const ModelSpec& { return n.spec(); },
                    net);
}

ModelEntry::ModelEntry(std::string id, absl::Time create_time,
                       std::shared_ptr<const ModelState> state)
    : id_(std::move(id)),
      create_time_(create_time),
      spec_(SpecOf(state->network)),
      state_(std::move(state)) {}

std::shared_ptr<const ModelState> ModelEntry::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

void ModelEntry::Publish(std::shared_ptr<const ModelState> state) {
  std::lock_guard<std::mutex> lock(mu_);
  // The previous state, now in `state`, is freed (if no reader still holds
  // it) after the lock is released, when the parameter goes out of scope.
  state_.swap(state);
}

bool ModelEntry::training() const {
  std::lock_guard<std::mutex> lock(mu_);
  return training_;
}

absl::Status ModelEntry::TryStartTraining() {
  std::lock_guard<std::mutex> lock(mu_);
  if (deleted_) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", id_, "' is being deleted"));
  }
  if (training_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", id_,
        "' is already training; wait for that Train call to end or cancel "
        "it"));
  }
  training_ = true;
  return absl::OkStatus();
}

void ModelEntry::EndTraining() {
  std::lock_guard<std::mutex> lock(mu_);
  training_ = false;
}

ModelRegistry::ModelRegistry(std::string dir, uint64_t max_models,
                             uint64_t max_parameters)
    : dir_(std::move(dir)),
      max_models_(max_models),
      max_parameters_(max_parameters) {}

std::string ModelRegistry::PathFor(absl::string_view id) const {
  return absl::StrCat(dir_, "/", id, ".model");
}

size_t ModelRegistry::LoadAll(
    const std::function<void(const std::string&)>& report) {
  if (dir_.empty()) return 0;
  // A float64 parameter is 8 bytes; the header and metadata are small.
  const uint64_t max_bytes = max_parameters_ > (uint64_t{1} << 59)
                                 ? ~uint64_t{0}
                                 : max_parameters_ * 8 + (1 << 20);
  RemoveStaleTempFiles(dir_, ".model", report);
  size_t loaded = 0;
  for (const std::string& id : ListIds(dir_, ".model", report)) {
    const std::string path = PathFor(id);
    absl::StatusOr<std::string> bytes = ReadFileNoFollow(path, max_bytes);
    if (!bytes.ok()) {
      report(
          absl::StrCat("not loading ", path, ": ", bytes.status().ToString()));
      continue;
    }
    absl::StatusOr<ModelRecord> rec = DecodeModel(*bytes, max_parameters_);
    if (!rec.ok()) {
      report(absl::StrCat("not loading ", path, ": ", rec.status().ToString()));
      continue;
    }
    v1::Model meta;
    if (!meta.ParseFromString(rec->metadata)) {
      report(absl::StrCat(path, ": unreadable metadata, using defaults"));
      meta.Clear();
    }
    auto state = std::make_shared<ModelState>(std::move(rec->network));
    state->epochs_trained = rec->epochs_trained;
    state->has_last_metrics = meta.has_last_metrics();
    state->last_metrics = meta.last_metrics();
    state->update_time = meta.has_update_time()
                             ? TimeFromProto(meta.update_time())
                             : absl::Now();
    const absl::Time created = meta.has_create_time()
                                   ? TimeFromProto(meta.create_time())
                                   : state->update_time;
    std::lock_guard<std::mutex> lock(mu_);
    models_[id] = std::make_shared<ModelEntry>(id, created, std::move(state));
    ++loaded;
  }
  return loaded;
}

absl::StatusOr<std::shared_ptr<ModelEntry>> ModelRegistry::Get(
    absl::string_view id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(id);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("no model '", id, "'"));
  }
  return it->second;
}

bool ModelRegistry::Contains(absl::string_view id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return models_.find(id) != models_.end();
}

absl::StatusOr<std::shared_ptr<ModelEntry>> ModelRegistry::Create(
    const std::string& id, std::shared_ptr<const ModelState> state) {
  std::lock_guard<std::mutex> io_lock(io_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (models_.find(id) != models_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "model '", id, "' already exists; pick another id or delete it"));
    }
    if (models_.size() >= max_models_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("this server already holds ", models_.size(),
                       " models, its limit (--max_models); delete one "
                       "first"));
    }
  }
  auto entry = std::make_shared<ModelEntry>(id, state->update_time, state);
  if (absl::Status s = Persist(*entry, *state); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  models_[id] = entry;
  return entry;
}

absl::Status ModelRegistry::Delete(absl::string_view id) {
  std::lock_guard<std::mutex> io_lock(io_mu_);
  std::shared_ptr<ModelEntry> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(id);
    if (it == models_.end()) {
      return absl::NotFoundError(absl::StrCat("no model '", id, "'"));
    }
    entry = it->second;
    std::lock_guard<std::mutex> entry_lock(entry->mu_);
    if (entry->training_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", id, "' is training; cancel the Train call first"));
    }
    entry->deleted_ = true;  // no Train may start from here on
  }
  if (!dir_.empty()) {
    if (absl::Status s = RemoveFile(PathFor(id)); !s.ok()) {
      std::lock_guard<std::mutex> entry_lock(entry->mu_);
      entry->deleted_ = false;
      return s;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  models_.erase(std::string(id));
  return absl::OkStatus();
}

std::vector<std::shared_ptr<ModelEntry>> ModelRegistry::List(
    absl::string_view after, size_t limit) const {
  std::vector<std::shared_ptr<ModelEntry>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = models_.upper_bound(after);
       it != models_.end() && out.size() < limit; ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::Status ModelRegistry::Persist(const ModelEntry& entry,
                                    const ModelState& state) const {
  if (dir_.empty()) return absl::OkStatus();
  v1::Model meta;
  TimeToProto(entry.create_time(), meta.mutable_create_time());
  TimeToProto(state.update_time, meta.mutable_update_time());
  if (state.has_last_metrics) *meta.mutable_last_metrics() = state.last_metrics;
  ModelRecord rec{state.network, state.epochs_trained,
                  meta.SerializeAsString()};
  return WriteFileAtomically(PathFor(entry.id()), EncodeModel(rec));
}

DatasetStore::DatasetStore(std::string dir, uint64_t max_datasets,
                           uint64_t max_bytes)
    : dir_(std::move(dir)),
      max_datasets_(max_datasets),
      max_bytes_(max_bytes) {}

std::string DatasetStore::PathFor(absl::string_view id) const {
  return absl::StrCat(dir_, "/", id, ".dataset");
}

size_t DatasetStore::LoadAll(
    const std::function<void(const std::string&)>& report) {
  if (dir_.empty()) return 0;
  RemoveStaleTempFiles(dir_, ".dataset", report);
  size_t loaded = 0;
  for (const std::string& id : ListIds(dir_, ".dataset", report)) {
    const std::string path = PathFor(id);
    // Values were counted against max_bytes at upload; allow for the file's
    // header, metadata and checksum.
    absl::StatusOr<std::string> bytes =
        ReadFileNoFollow(path, max_bytes_ + (64 << 20));
    if (!bytes.ok()) {
      report(
          absl::StrCat("not loading ", path, ": ", bytes.status().ToString()));
      continue;
    }
    std::string metadata;
    absl::StatusOr<Dataset> d = DecodeDataset(*bytes, &metadata);
    if (!d.ok()) {
      report(absl::StrCat("not loading ", path, ": ", d.status().ToString()));
      continue;
    }
    v1::Dataset meta;
    if (!meta.ParseFromString(metadata)) {
      report(absl::StrCat(path, ": unreadable metadata, using defaults"));
      meta.Clear();
    }
    auto stored = std::make_shared<StoredDataset>();
    stored->id = id;
    stored->data = *std::move(d);
    stored->description = meta.description();
    stored->create_time = meta.has_create_time()
                              ? TimeFromProto(meta.create_time())
                              : absl::Now();
    std::lock_guard<std::mutex> lock(mu_);
    datasets_[id] = std::move(stored);
    ++loaded;
  }
  return loaded;
}

absl::StatusOr<std::shared_ptr<const StoredDataset>> DatasetStore::Get(
    absl::string_view id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = datasets_.find(id);
  if (it == datasets_.end()) {
    return absl::NotFoundError(absl::StrCat("no dataset '", id, "'"));
  }
  return it->second;
}

bool DatasetStore::Contains(absl::string_view id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return datasets_.find(id) != datasets_.end();
}

absl::Status DatasetStore::Add(std::shared_ptr<const StoredDataset> d) {
  std::lock_guard<std::mutex> io_lock(io_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (datasets_.find(d->id) != datasets_.end()) {
      return absl::AlreadyExistsError(
          absl::StrCat("dataset '", d->id,
                       "' already exists; pick another id or delete it"));
    }
    if (datasets_.size() >= max_datasets_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("this server already holds ", datasets_.size(),
                       " datasets, its limit (--max_datasets); delete one "
                       "first"));
    }
  }
  if (!d->read_only && !dir_.empty()) {
    v1::Dataset meta;
    meta.set_description(d->description);
    TimeToProto(d->create_time, meta.mutable_create_time());
    if (absl::Status s = WriteFileAtomically(
            PathFor(d->id), EncodeDataset(d->data, meta.SerializeAsString()));
        !s.ok()) {
      return s;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  datasets_[d->id] = std::move(d);
  return absl::OkStatus();
}

absl::Status DatasetStore::Delete(absl::string_view id) {
  std::lock_guard<std::mutex> io_lock(io_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = datasets_.find(id);
    if (it == datasets_.end()) {
      return absl::NotFoundError(absl::StrCat("no dataset '", id, "'"));
    }
    if (it->second->read_only) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dataset '", id,
          "' is preloaded by the server (--preload_fashion_mnist) and cannot "
          "be deleted"));
    }
  }
  if (!dir_.empty()) {
    if (absl::Status s = RemoveFile(PathFor(id)); !s.ok()) return s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  datasets_.erase(std::string(id));
  return absl::OkStatus();
}

std::vector<std::shared_ptr<const StoredDataset>> DatasetStore::List(
    absl::string_view after, size_t limit) const {
  std::vector<std::shared_ptr<const StoredDataset>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = datasets_.upper_bound(after);
       it != datasets_.end() && out.size() < limit; ++it) {
    out.push_back(it->second);
  }
  return out;
}

}  // namespace backprop::server
