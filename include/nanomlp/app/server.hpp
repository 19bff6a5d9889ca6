// `nanomlp serve`: a model behind a small HTTP server (GNU libmicrohttpd, see src/http_server.hpp
// for what it bounds and how), with a page where one draws a digit and watches the network's
// answer change while drawing.
//
// Endpoints:
//   GET  /              the page (web/index.html, app.js, style.css, compiled into the binary)
//   GET  /healthz       {"status":"ok"}
//   GET  /api/model     {"file", "description", "dataset", "parameters", "summary", "classes",
//                        "architecture": {...}}
//   POST /api/predict   a JSON body {"pixels": [784 integers 0-255, row-major, white ink on
//                       black, i.e. already MNIST's format: used as they are], or an image
//                       (Content-Type image/png, image/jpeg, image/bmp, image/gif or
//                       image/x-portable-graymap) that goes through preprocess_mnist exactly as
//                       in `nanomlp predict`. Answers {"class", "label", "probabilities"}, plus
//                       "pixels", the 28x28 image the network saw, for an image.
// Every error of nanomlp's is a JSON object {"error": "..."} with a 4xx status: 400 malformed
// JSON or pixels (or framing: two Content-Length headers, Content-Length with Transfer-Encoding),
// 404 unknown path, 405 wrong method (with Allow), 411 a POST without a body, 413 body over the
// limit (or an image over kMaxServedImagePixels), 415 unsupported Content-Type, 422 an image that
// does not decode or holds no ink, 503 (with Retry-After) when the bodies held at once reach
// their shared cap. Requests libmicrohttpd refuses itself (a malformed request line, a head over
// its memory pool: 400, 414, 431) get its own short answer.
// Each request is logged on stderr as one line: METHOD PATH STATUS LATENCY ms.
//
// Threads: a few event loops (libmicrohttpd's thread pool, epoll) serve every connection; each
// answers a request whole before it looks at the next. A Network keeps its activations between
// calls, so each request borrows a Network of its own from a pool (one is built from the model's
// bytes, loaded once, whenever every existing one is busy); the kernels run single-threaded
// inside a request, so an answer never depends on the load. At most two images are decoded at
// once (each may take a few bytes per pixel).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/image.hpp"

namespace nanomlp {

// Request bodies larger than this get 413.
inline constexpr std::size_t kMaxRequestBytes = std::size_t{2} << 20;  // 2 MiB
// Images with more pixels than this get 413 before decoding (a small PNG can declare a huge
// image; decoding it would take width * height * 4 bytes).
inline constexpr std::size_t kMaxServedImagePixels = std::size_t{1} << 24;  // 4096 x 4096

struct ServeOptions {
  std::string model;               // model file (.safetensors)
  std::string host = "127.0.0.1";  // address to listen on
  int port = 8080;                 // 0: any free port
  int threads = 0;                 // event loops; < 1: max(4, cores)
  std::size_t max_body_bytes = kMaxRequestBytes;
  unsigned max_connections = 1000;  // open at once; more wait in the listen queue (1024)
  unsigned idle_timeout_s = 10;     // a connection silent (reading or writing) this long closes
  unsigned request_timeout_s = 20;  // a request must arrive whole within this, from its first byte
  bool log_requests = true;         // one line per request on stderr
};

// A request the server refuses: the HTTP status and the message of the JSON error.
class HttpError : public Error {
 public:
  HttpError(int status, const std::string& message) : Error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// Parses a JSON body {"pixels": [784 integers 0-255]}. Throws HttpError 400 saying what is
// wrong: malformed JSON, no "pixels" list, the wrong count, a value that is not an integer
// from 0 to 255 (naming its index).
MnistImage pixels_from_json(std::string_view body);

// One file of the page, compiled in from web/ (the build generates the table).
struct WebAsset {
  std::string_view name;   // file name, e.g. "app.js"; served at "/" + name
  std::string_view bytes;  // contents
};
std::span<const WebAsset> web_assets();

// The server. Construction loads the model (IoError for a missing file, ModelFormatError for a
// corrupt one or one that does not take 28x28 images); bind() takes the port; run() answers
// requests until stop() is called, then waits for the requests in progress.
class ModelServer {
 public:
  explicit ModelServer(ServeOptions options);
  ~ModelServer();
  ModelServer(const ModelServer&) = delete;
  ModelServer& operator=(const ModelServer&) = delete;

  // Binds host:port (any free port for port 0) and returns the port. Throws Error naming the
  // address and the port when it cannot (e.g. "port 8080 is already in use").
  int bind();
  // The page's address once bound, e.g. "http://127.0.0.1:8080/".
  std::string url() const;
  // One line for the console: the model, its architecture and dataset.
  std::string model_description() const;
  // Answers requests until stop(); returns false if the server failed to start listening.
  bool run();
  // Safe from any thread (not from a signal handler): stops accepting, ends run().
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nanomlp
