// The list, get and delete subcommands that `models` and `datasets` share:
// the same calls, paging and output for either kind of resource.
#ifndef BACKPROP_CLIENT_RESOURCE_COMMANDS_H_
#define BACKPROP_CLIENT_RESOURCE_COMMANDS_H_

#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "client/commands.h"
#include "client/connection.h"
#include "client/output.h"
#include <nlohmann/json.hpp>

namespace backprop::client {

// Every item of a paged List call: asks for page after page (each call with
// its own deadline) until next_page_token comes back empty. items(response)
// is one page's repeated field.
template <typename Request, typename Response, typename Items, typename Item>
grpc::Status ListAll(Connection& connection, UnaryRpc<Request, Response> rpc,
                     Items items, std::vector<Item>* out) {
  Request request;
  do {
    Response response;
    const grpc::Status s = connection.Call(rpc, request, &response);
    if (!s.ok()) return s;
    out->insert(out->end(), items(response).begin(), items(response).end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

// `list`: with --json {"<json_key>": [to_json(item), ...]}; else a table
// with `header` and one row(item) per item.
template <typename Request, typename Response, typename Items, typename Item,
          typename Row>
int RunListCommand(const GlobalOptions& global,
                   UnaryRpc<Request, Response> rpc, Items items,
                   const char* json_key,
                   nlohmann::json (*to_json)(const Item&),
                   std::vector<std::string> header, Row row) {
  Connection connection(global);
  std::vector<Item> all;
  const grpc::Status s = ListAll(connection, rpc, items, &all);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const Item& item : all) j.push_back(to_json(item));
    PrintJson({{json_key, j}});
    return kExitOk;
  }
  Table table(std::move(header));
  for (const Item& item : all) table.AddRow(row(item));
  table.Print(std::cout);
  return kExitOk;
}

// `get`: with --json to_json(resource); else print(resource, std::cout).
template <typename Request, typename Resource>
int RunGetCommand(const GlobalOptions& global,
                  UnaryRpc<Request, Resource> rpc, const Request& request,
                  nlohmann::json (*to_json)(const Resource&),
                  void (*print)(const Resource&, std::ostream&)) {
  Connection connection(global);
  Resource resource;
  const grpc::Status s = connection.Call(rpc, request, &resource);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson(to_json(resource));
  } else {
    print(resource, std::cout);
  }
  return kExitOk;
}

// `delete`: with --json {"deleted": id}; else "deleted <kind> <id>".
template <typename Request, typename Response>
int RunDeleteCommand(const GlobalOptions& global,
                     UnaryRpc<Request, Response> rpc, const Request& request,
                     const std::string& kind, const std::string& id) {
  Connection connection(global);
  Response response;
  const grpc::Status s = connection.Call(rpc, request, &response);
  if (!s.ok()) return ReportRpcError(s);
  if (global.json) {
    PrintJson({{"deleted", id}});
  } else {
    std::cout << "deleted " << kind << " " << id << "\n";
  }
  return kExitOk;
}

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_RESOURCE_COMMANDS_H_
