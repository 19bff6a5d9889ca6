#include "nanomlp/app/server.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <semaphore>
#include <utility>
#include <vector>

#include "http_server.hpp"
#include "nanomlp/core/json_input.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"

namespace nanomlp {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kJsonType = "application/json";
// The page may load nothing from anywhere else (it needs nothing).
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
// JSON bodies are a flat object holding one flat list: deeper nesting is refused while parsing.
constexpr int kMaxJsonDepth = 4;

HttpReply json_reply(int status, const Json& body) {
  HttpReply reply;
  reply.status = status;
  reply.content_type = kJsonType;
  reply.headers.emplace_back("Cache-Control", "no-store");
  // Replace bytes that are not UTF-8 (from a request, echoed in an error) instead of throwing.
  reply.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return reply;
}

HttpReply error_reply(int status, const std::string& message) {
  return json_reply(status, Json{{"error", message}});
}

// The media type of a Content-Type header, lower-case, without parameters.
std::string media_type(const std::string& header) {
  std::string type = header.substr(0, header.find(';'));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) type.pop_back();
  std::size_t start = 0;
  while (start < type.size() && std::isspace(static_cast<unsigned char>(type[start]))) ++start;
  type.erase(0, start);
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return type;
}

bool is_image_type(const std::string& type) {
  static const std::vector<std::string> types = {"image/png",
                                                 "image/jpeg",
                                                 "image/bmp",
                                                 "image/gif",
                                                 "image/x-portable-graymap",
                                                 "image/x-portable-pixmap"};
  return std::find(types.begin(), types.end(), type) != types.end();
}

std::string content_type_for(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

// One of the decodes allowed at once, held for a scope.
class DecodePermit {
 public:
  explicit DecodePermit(std::counting_semaphore<64>& decoders) : decoders_(decoders) {
    decoders_.acquire();
  }
  ~DecodePermit() { decoders_.release(); }
  DecodePermit(const DecodePermit&) = delete;
  DecodePermit& operator=(const DecodePermit&) = delete;

 private:
  std::counting_semaphore<64>& decoders_;
};

// Networks built from one model, lent to one request at a time: a Network keeps its
// activations between calls, so two threads must never share one. A new one is built when all
// are busy, so there are never more than the requests answered at once.
class NetworkPool {
 public:
  NetworkPool(SafeTensors model, std::string source)
      : model_(std::move(model)), source_(std::move(source)) {}

  class Lease {
   public:
    Lease(NetworkPool& pool, std::unique_ptr<Network<float>> net)
        : pool_(pool), net_(std::move(net)) {}
    ~Lease() { pool_.give_back(std::move(net_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Network<float>& net() { return *net_; }

   private:
    NetworkPool& pool_;
    std::unique_ptr<Network<float>> net_;
  };

  std::unique_ptr<Network<float>> take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!idle_.empty()) {
        std::unique_ptr<Network<float>> net = std::move(idle_.back());
        idle_.pop_back();
        return net;
      }
    }
    return std::make_unique<Network<float>>(model_from_safetensors(model_, source_));
  }

 private:
  void give_back(std::unique_ptr<Network<float>> net) {
    if (!net) return;
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.push_back(std::move(net));
  }

  const SafeTensors model_;
  const std::string source_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Network<float>>> idle_;
};

// The method a path answers to ("GET" or "POST"), or "" for an unknown path (404). The page's
// files are the GET paths besides these.
std::string allowed_method(const std::string& path) {
  if (path == "/api/predict") return "POST";
  if (path == "/" || path == "/healthz" || path == "/api/model") return "GET";
  for (const WebAsset& asset : web_assets()) {
    if (path.size() == asset.name.size() + 1 && std::string_view(path).substr(1) == asset.name) {
      return "GET";
    }
  }
  return "";
}

// Decodes and preprocesses an uploaded image exactly as `nanomlp predict` does.
MnistImage image_from_upload(const std::string& body) {
  const auto* data = reinterpret_cast<const std::uint8_t*>(body.data());
  try {
    // The decoder checks the declared size against the served limit before it decodes.
    return preprocess_mnist(decode_grey_image({data, body.size()}, "image", kMaxServedImagePixels));
  } catch (const ImageTooLargeError& e) {
    throw HttpError(413, e.what());
  } catch (const DataError& e) {
    throw HttpError(422, e.what());
  }
}

}  // namespace

// ---- request bodies -------------------------------------------------------------------------

MnistImage pixels_from_json(std::string_view body) {
  const std::string expected =
      "expected a JSON object {\"pixels\": [784 integers from 0 to 255, row-major 28x28, white "
      "digit on black]}";
  nlohmann::json j;
  try {
    j = parse_untrusted_json(body, kMaxJsonDepth);
  } catch (const JsonInputError& e) {
    throw HttpError(400, std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("pixels")) throw HttpError(400, expected);
  const nlohmann::json& pixels = j["pixels"];
  if (!pixels.is_array()) throw HttpError(400, "\"pixels\" is not a list: " + expected);
  if (pixels.size() != kImagePixels) {
    throw HttpError(400, "\"pixels\": expected " + std::to_string(kImagePixels) +
                             " values (28x28, row-major), got " + std::to_string(pixels.size()));
  }
  MnistImage image{};
  for (std::size_t i = 0; i < kImagePixels; ++i) {
    const nlohmann::json& v = pixels[i];
    const auto bad = [&] {
      const std::string shown = describe_json(v);
      return HttpError(400, "\"pixels\"[" + std::to_string(i) +
                                "]: expected an integer from 0 to 255, got " + shown);
    };
    if (v.is_number_integer()) {  // signed or unsigned
      const auto n =
          v.is_number_unsigned()
              ? static_cast<std::int64_t>(std::min<std::uint64_t>(v.get<std::uint64_t>(), 256))
              : v.get<std::int64_t>();
      if (n < 0 || n > 255) throw bad();
      image[i] = static_cast<std::uint8_t>(n);
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      if (!(d >= 0.0 && d <= 255.0) || d != std::floor(d)) throw bad();
      image[i] = static_cast<std::uint8_t>(d);
    } else {
      throw bad();
    }
  }
  return image;
}

// ---- the server -----------------------------------------------------------------------------

struct ModelServer::Impl {
  ServeOptions options;
  std::optional<NetworkPool> pool;
  std::vector<std::string> labels;
  std::string model_json;   // GET /api/model
  std::string description;  // for the console
  std::optional<HttpServer> http;
  int port = -1;
  std::mutex log_mutex;
  // Images decoded at once: each may take a few bytes per pixel of kMaxServedImagePixels.
  std::counting_semaphore<64> decoders{std::clamp(hardware_threads(), 1, 2)};

  explicit Impl(ServeOptions o) : options(std::move(o)) {
    SafeTensors st = read_safetensors_file(options.model);  // IoError, ModelFormatError
    Network<float> net = model_from_safetensors(st, options.model);
    const Architecture& arch = net.architecture();
    if (arch.input_dim != kImagePixels) {
      throw ModelFormatError(options.model + ": the model takes " + std::to_string(arch.input_dim) +
                             " inputs per image, serve needs " + std::to_string(kImagePixels) +
                             " (28x28 pixels)");
    }
    labels = class_labels(arch.dataset, arch.num_classes);
    Json info;
    info["file"] = std::filesystem::path(options.model).filename().string();
    info["description"] = arch.describe();
    info["dataset"] = arch.dataset;
    info["parameters"] = net.num_params();
    info["summary"] = model_summary(net);
    info["classes"] = labels;
    info["architecture"] = Json::parse(arch.to_json());
    info["input"] = {{"width", kImageCols}, {"height", kImageRows}};
    model_json = info.dump();
    description = options.model + " (" + arch.describe() + ", trained on " + arch.dataset + ", " +
                  std::to_string(net.num_params()) + " parameters)";
    pool.emplace(std::move(st), options.model);
    HttpHandlers handlers;
    handlers.first_look = [](const HttpRequest& req) { return first_look(req); };
    handlers.answer = [this](const HttpRequest& req) { return answer_safely(req); };
    if (options.log_requests) {
      handlers.log = [this](const HttpRequest& req, int status, double ms) {
        log(req, status, ms);
      };
    }
    http.emplace(limits(options), std::move(handlers), &error_reply);
  }

  static HttpLimits limits(const ServeOptions& o) {
    HttpLimits l;
    l.max_body_bytes = o.max_body_bytes;
    l.max_connections = o.max_connections;
    l.idle_timeout_s = o.idle_timeout_s;
    l.request_timeout_s = o.request_timeout_s;
    l.threads = static_cast<unsigned>(o.threads > 0 ? o.threads : std::max(4, hardware_threads()));
    return l;
  }

  // Before any body is read: unknown paths, wrong methods and missing bodies are answered now.
  static std::optional<HttpReply> first_look(const HttpRequest& req) {
    const std::string allowed = allowed_method(req.path);
    if (allowed.empty()) return error_reply(404, "not found: " + printable(req.path));
    const bool head_of_get = req.method == "HEAD" && allowed == "GET";
    if (req.method != allowed && !head_of_get) {
      HttpReply reply =
          error_reply(405, "method " + printable(req.method) + " not allowed here, use " + allowed);
      reply.headers.emplace_back("Allow", allowed);
      return reply;
    }
    if (req.method == "POST" && !req.has_body) {
      return error_reply(411, "a request body is required, with a Content-Length header");
    }
    return std::nullopt;
  }

  HttpReply answer_safely(const HttpRequest& req) {
    try {
      return req.method == "POST" ? predict_route(req) : page(req.path);
    } catch (const HttpError& e) {
      return error_reply(e.status(), e.what());
    } catch (const std::exception& e) {
      return error_reply(500, std::string("internal error: ") + e.what());
    }
  }

  Json answer(const MnistImage& image, bool with_pixels) {
    Prediction p;
    {
      NetworkPool::Lease lease(*pool, pool->take());
      p = predict(lease.net(), {image}).front();
    }
    Json j;
    j["class"] = p.cls;
    j["label"] = labels[static_cast<std::size_t>(p.cls)];
    Json probs = Json::array();
    for (float v : p.probabilities) probs.push_back(static_cast<double>(v));
    j["probabilities"] = std::move(probs);
    if (with_pixels) j["pixels"] = std::vector<int>(image.begin(), image.end());
    return j;
  }

  HttpReply predict_route(const HttpRequest& req) {
    const std::string type = media_type(req.content_type);
    if (type == "application/json")
      return json_reply(200, answer(pixels_from_json(req.body), false));
    if (is_image_type(type)) {
      if (req.body.empty()) throw HttpError(400, "empty request body: expected an image");
      std::optional<MnistImage> image;
      {
        DecodePermit permit(decoders);
        image = image_from_upload(req.body);
      }
      return json_reply(200, answer(*image, true));
    }
    throw HttpError(415, "unsupported Content-Type '" + printable(type) +
                             "': expected application/json ({\"pixels\": [784 values]}) "
                             "or an image (image/png, image/jpeg, ...)");
  }

  // The page, from the binary itself (first_look has sent every other path away).
  HttpReply page(const std::string& path) const {
    if (path == "/healthz") return json_reply(200, Json{{"status", "ok"}});
    if (path == "/api/model") {
      HttpReply reply = json_reply(200, Json{});
      reply.body = model_json;
      return reply;
    }
    std::string_view name = std::string_view(path).substr(1);
    if (name.empty()) name = "index.html";
    for (const WebAsset& asset : web_assets()) {
      if (asset.name != name) continue;
      HttpReply reply;
      reply.content_type = content_type_for(name);
      reply.body = asset.bytes;
      reply.headers = {{"Cache-Control", "no-cache"}, {"X-Content-Type-Options", "nosniff"}};
      if (name.ends_with(".html")) {
        reply.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
      }
      return reply;
    }
    return error_reply(404, "not found: " + printable(path));
  }

  // One line per request: METHOD PATH STATUS LATENCY ms (status "abandoned" when the client
  // went away or the request was cut before an answer).
  void log(const HttpRequest& req, int status, double ms) {
    char latency[32];
    std::snprintf(latency, sizeof latency, "%.2f", ms);
    std::string path = printable(req.path);
    std::replace(path.begin(), path.end(), ' ', '?');
    const std::string line = printable(req.method) + " " + path + " " +
                             (status > 0 ? std::to_string(status) : "abandoned") + " " + latency +
                             " ms\n";
    std::lock_guard<std::mutex> lock(log_mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
};

ModelServer::ModelServer(ServeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  // One request, one thread: the kernels must not hand parts to the shared pool (it serves one
  // caller at a time), and single-threaded products keep every answer independent of the load.
  kernels::set_num_threads(1);
}

ModelServer::~ModelServer() = default;

int ModelServer::bind() {
  const ServeOptions& o = impl_->options;
  if (o.port < 0 || o.port > 65535) {
    throw UsageError("--port: expected 0 to 65535, got " + std::to_string(o.port));
  }
  impl_->port = impl_->http->bind(o.host, o.port);
  return impl_->port;
}

std::string ModelServer::url() const {
  std::string host = impl_->options.host;
  if (host == "0.0.0.0") host = "127.0.0.1";  // listening on every address: this one works
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(impl_->port) + "/";
}

std::string ModelServer::model_description() const {
  return impl_->description;
}

bool ModelServer::run() {
  return impl_->http->run();
}

void ModelServer::stop() {
  impl_->http->stop();
}

}  // namespace nanomlp
