#include "nanomlp/server.hpp"

#include <httplib.h>  // declarations only: Debian's libcpp-httplib.so holds the code
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "nanomlp/data.hpp"
#include "nanomlp/json_input.hpp"
#include "nanomlp/kernels.hpp"
#include "nanomlp/model_io.hpp"
#include "nanomlp/network.hpp"
#include "nanomlp/safetensors.hpp"
#include "nanomlp/thread_pool.hpp"

namespace nanomlp {
namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char* kJsonType = "application/json";
// The page may load nothing from anywhere else (it needs nothing).
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
// JSON bodies are a flat object holding one flat list: deeper nesting is refused while parsing.
constexpr int kMaxJsonDepth = 4;
// A body over the limit is read on and thrown away, to answer 413 on a connection that stays
// usable, up to this many times the limit (then the connection is dropped).
constexpr std::size_t kMaxDiscardedFactor = 16;

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  // Replace bytes that are not UTF-8 (from a request, echoed in an error) instead of throwing.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kJsonType);
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, Json{{"error", message}});
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

// Text fit for one log line or error message: control characters and spaces become '?'.
std::string printable(const std::string& s) {
  std::string out = s.substr(0, 200);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f) c = '?';
  }
  return out;
}

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

bool strcasecmp_equal(const std::string& a, const char* b) {
  return ::strcasecmp(a.c_str(), b) == 0;
}

// When the request being answered on this thread began (httplib answers one connection per
// worker thread, one request after the other), for the latency in the log line.
thread_local std::optional<Clock::time_point> request_start;

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
  httplib::Server http;
  int port = -1;
  std::mutex log_mutex;

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
    routes();
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

  void predict_route(const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& reader) {
    // The body arrives through a reader so that no body, chunked or compressed ones included,
    // is ever held beyond the limit.
    std::string body;
    bool too_large = false;
    std::size_t discarded = 0;
    const auto receive = [&](const char* data, std::size_t n) {
      if (too_large || body.size() + n > options.max_body_bytes) {
        // Read on (to keep the connection in step) without keeping anything, up to a point.
        too_large = true;
        discarded += n;
        return discarded <= kMaxDiscardedFactor * options.max_body_bytes;
      }
      body.append(data, n);
      return true;
    };
    const bool read = req.is_multipart_form_data()
                          ? reader([](const httplib::MultipartFormData&) { return true; }, receive)
                          : reader(receive);
    if (too_large || (!read && res.status == 413)) {
      send_error(
          res, 413,
          "request body too large: at most " + std::to_string(options.max_body_bytes) + " bytes");
      return;
    }
    if (!read) {
      send_error(res, 400, "could not read the request body");
      return;
    }
    const std::string type = media_type(req.get_header_value("Content-Type"));
    try {
      if (type == "application/json") {
        send_json(res, 200, answer(pixels_from_json(body), false));
      } else if (is_image_type(type)) {
        if (body.empty()) throw HttpError(400, "empty request body: expected an image");
        send_json(res, 200, answer(image_from_upload(body), true));
      } else {
        throw HttpError(415, "unsupported Content-Type '" + printable(type) +
                                 "': expected application/json ({\"pixels\": [784 values]}) "
                                 "or an image (image/png, image/jpeg, ...)");
      }
    } catch (const HttpError& e) {
      send_error(res, e.status(), e.what());
    }
  }

  void routes() {
    http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, Json{{"status", "ok"}});
    });
    http.Get("/api/model", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_header("Cache-Control", "no-store");
      res.set_content(model_json, kJsonType);
    });
    http.Post("/api/predict",
              [this](const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& reader) { predict_route(req, res, reader); });
    // Known paths, wrong method.
    const auto not_allowed = [](const char* allow) {
      return [allow](const httplib::Request& req, httplib::Response& res) {
        res.set_header("Allow", allow);
        send_error(res, 405, "method " + printable(req.method) + " not allowed here, use " + allow);
      };
    };
    http.Get("/api/predict", not_allowed("POST"));
    http.Put("/api/predict", not_allowed("POST"));
    http.Delete("/api/predict", not_allowed("POST"));
    for (const char* path : {"/", "/healthz", "/api/model"}) {
      http.Post(path, not_allowed("GET"));
      http.Put(path, not_allowed("GET"));
      http.Delete(path, not_allowed("GET"));
    }
    // The page, from the binary itself; any other path is 404.
    http.Get("/(.*)", [](const httplib::Request& req, httplib::Response& res) {
      std::string_view name = std::string_view(req.path).substr(1);
      if (name.empty()) name = "index.html";
      for (const WebAsset& asset : web_assets()) {
        if (asset.name != name) continue;
        res.status = 200;
        res.set_header("Cache-Control", "no-cache");
        res.set_header("X-Content-Type-Options", "nosniff");
        if (name.ends_with(".html")) {
          res.set_header("Content-Security-Policy", kContentSecurityPolicy);
        }
        res.set_content(asset.bytes.data(), asset.bytes.size(), content_type_for(name));
        return;
      }
      send_error(res, 404, "not found: " + printable(req.path));
    });

    // What httplib refuses by itself (an unknown path for POST, a body over the limit, a
    // malformed request) gets a JSON error too.
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string message;
          switch (res.status) {
            case 400:
              message = "bad request";
              break;
            case 404:
              message = "not found: " + printable(req.path);
              break;
            case 413:
              message = "request body too large";
              break;
            case 414:
              message = "request URI too long";
              break;
            default:
              message = "HTTP error " + std::to_string(res.status);
              break;
          }
          send_error(res, res.status, message);
          return httplib::Server::HandlerResponse::Handled;
        }));
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string message = "internal error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            message += std::string(": ") + e.what();
          } catch (...) {
          }
          send_error(res, 500, message);
        });
    http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      request_start = Clock::now();
      // httplib would read a body without Content-Length until the client hangs up (or the
      // read timeout), and a chunked body for any handler but /api/predict's without limit:
      // answer those now, before any body is read.
      const bool may_have_body = req.method == "POST" || req.method == "PUT" ||
                                 req.method == "PATCH" || req.method == "DELETE";
      const bool chunked = strcasecmp_equal(req.get_header_value("Transfer-Encoding"), "chunked");
      const bool unframed = may_have_body && !chunked && !req.has_header("Content-Length");
      const bool unbounded =
          may_have_body && chunked && !(req.method == "POST" && req.path == "/api/predict");
      if (unframed || unbounded) {
        const std::string allowed = allowed_method(req.path);
        if (allowed.empty()) {
          send_error(res, 404, "not found: " + printable(req.path));
        } else if (allowed != req.method) {
          res.set_header("Allow", allowed);
          send_error(res, 405,
                     "method " + printable(req.method) + " not allowed here, use " + allowed);
        } else {
          send_error(res, 411, "a request body is required, with a Content-Length header");
        }
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    if (options.log_requests) {
      http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        char ms[32] = "-";
        if (request_start) {
          const std::chrono::duration<double, std::milli> d = Clock::now() - *request_start;
          std::snprintf(ms, sizeof ms, "%.2f", d.count());
        }
        request_start.reset();
        const std::string line = printable(req.method) + " " + printable(req.path) + " " +
                                 std::to_string(res.status) + " " + ms + " ms\n";
        std::lock_guard<std::mutex> lock(log_mutex);
        std::fwrite(line.data(), 1, line.size(), stderr);
        std::fflush(stderr);
      });
    }

    http.set_payload_max_length(options.max_body_bytes);
    http.set_keep_alive_max_count(1000);
    http.set_keep_alive_timeout(5);
    http.set_read_timeout(10);
    http.set_write_timeout(10);
    http.set_tcp_nodelay(true);
    // httplib's default sets SO_REUSEPORT, with which a second server would quietly share the
    // port of the first; SO_REUSEADDR alone lets a restart reuse it without that.
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    const int threads =
        options.threads > 0 ? options.threads : std::max(16, 2 * hardware_threads());
    http.new_task_queue = [threads] {
      return new httplib::ThreadPool(static_cast<std::size_t>(threads));
    };
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
  errno = 0;
  int port = -1;
  if (o.port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
  } else if (impl_->http.bind_to_port(o.host, o.port)) {
    port = o.port;
  }
  if (port <= 0) {
    const int err = errno;
    const std::string where = "cannot listen on " + o.host + " port " + std::to_string(o.port);
    switch (err) {
      case EADDRINUSE:
        throw Error(where + ": port " + std::to_string(o.port) + " is already in use");
      case EACCES:
        throw Error(where + ": permission denied (ports below 1024 need root)");
      case EADDRNOTAVAIL:
        throw Error(where + ": " + o.host + " is not an address of this machine");
      default:
        throw Error(where + ": " +
                    (err != 0 ? std::strerror(err) : "not an address, nor a name that resolves"));
    }
  }
  impl_->port = port;
  return port;
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
  return impl_->http.listen_after_bind();
}

void ModelServer::stop() {
  impl_->http.stop();
}

}  // namespace nanomlp
