// A small HTTP/1.1 server made to face hostile clients, on GNU libmicrohttpd (Debian's
// libmicrohttpd-dev): event-driven (epoll) on a few threads, so a slow or idle connection costs a
// socket and a bounded buffer, never a thread. Internal to src/ (server.cpp is its only user).
//
// What it bounds, and how (the figures are HttpLimits' defaults):
//   - connections: at most max_connections at once (1000); more wait in the kernel's listen
//     queue (backlog, 1024) and are accepted when one closes;
//   - the request line and headers: they must fit the connection's memory pool (64 KiB);
//     larger heads are answered 431 by libmicrohttpd;
//   - time: a connection that sends or reads nothing for idle_timeout_s (10 s) is closed, and
//     one whose request is not received whole within request_timeout_s of its first byte (or
//     of the previous answer) is cut (slowloris: one byte every few seconds);
//   - bodies: Content-Length over max_body_bytes is refused with 413 (one read on and thrown
//     away up to 16 times the limit, so the client reads the answer; larger ones are answered at
//     once and the connection closed); a chunked body is cut at the same limit; all the bodies
//     held at once share max_buffered_bytes (64 MiB: beyond it, 503 with Retry-After);
//   - keep-alive: at most max_requests_per_connection requests on one connection (1000), then
//     "Connection: close";
//   - framing: two Content-Length headers, or Content-Length with Transfer-Encoding (request
//     smuggling), or a Transfer-Encoding other than chunked, are 400.
// Pipelined requests are answered one after the other, in order (libmicrohttpd reads the next
// request of a connection only once the answer to the previous one is queued).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nanomlp {

struct HttpLimits {
  std::size_t max_body_bytes = std::size_t{2} << 20;
  unsigned max_connections = 1000;
  unsigned backlog = 1024;
  std::size_t connection_memory = std::size_t{64} << 10;  // libmicrohttpd's pool per connection
  unsigned idle_timeout_s = 10;
  unsigned request_timeout_s = 20;
  unsigned max_requests_per_connection = 1000;
  std::size_t max_buffered_bytes = std::size_t{64} << 20;
  unsigned threads = 4;  // event loops; each answers its connections' requests in turn
};

// What the handlers see of a request.
struct HttpRequest {
  std::string method;
  std::string path;          // decoded, without the query string
  std::string content_type;  // the header as sent ("" when absent)
  bool has_body = false;     // it has Content-Length (even 0) or a chunked body
  std::string body;          // filled for the answer, not for the first look
};

struct HttpReply {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpHandlers {
  // Called once the head has arrived, before any body is read: a reply refuses the request
  // now (unknown path, wrong method, a body that is required and absent), nullopt reads on.
  std::function<std::optional<HttpReply>(const HttpRequest&)> first_look;
  // Called with the whole request; may throw nothing (return an error reply instead).
  std::function<HttpReply(const HttpRequest&)> answer;
  // Called once per request answered (or abandoned, with status 0), with its latency.
  std::function<void(const HttpRequest&, int status, double ms)> log;
};

// A reply for the server's own refusals, built by the handlers' owner (so that every error
// has one shape): status and message.
using HttpErrorReply = std::function<HttpReply(int status, const std::string& message)>;

class HttpServer {
 public:
  HttpServer(HttpLimits limits, HttpHandlers handlers, HttpErrorReply error_reply);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on host:port (any free port for 0); returns the port. Throws Error
  // naming the address and the cause (port in use, permission, not an address of this machine).
  int bind(const std::string& host, int port);
  // Answers requests until stop(), then waits (at most 10 s) for the requests in progress.
  // False if the server could not start.
  bool run();
  // From any thread but a signal handler.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nanomlp
