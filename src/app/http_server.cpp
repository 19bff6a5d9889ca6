#include "http_server.hpp"

#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "nanomlp/core/errors.hpp"

namespace nanomlp {
namespace {

using Clock = std::chrono::steady_clock;

// A body over the limit is read on and thrown away up to this many times the limit, so that
// the client (still sending) reads the 413 instead of a reset; then the connection is dropped.
constexpr std::size_t kDiscardFactor = 4;

// One TCP connection (libmicrohttpd's socket context). Guarded by Impl::mutex.
struct Connection {
  int fd = -1;
  Clock::time_point since;  // start of the request being received (or of the wait for one)
  bool receiving = true;    // false while a received request is answered
  bool cut = false;         // shut down for running past request_timeout_s
  unsigned requests = 0;    // answered on this connection
};

// One request (libmicrohttpd's per-request context).
struct Exchange {
  HttpRequest request;
  Clock::time_point start = Clock::now();
  std::size_t reserved = 0;   // bytes of the shared body budget held
  std::size_t discarded = 0;  // body bytes thrown away (over the limit)
  bool too_large = false;
  bool busy = false;                 // the shared body budget ran out
  bool answering = false;            // received whole, counted in Impl::answering
  std::optional<HttpReply> refusal;  // from first_look, sent once the body is read
  int status = 0;                    // of the reply queued; 0 while none is
};

// The framing headers of a request, counted (libmicrohttpd keeps the first of each).
struct Framing {
  int content_lengths = 0;
  int transfer_encodings = 0;
  std::string content_length;
  std::string transfer_encoding;
};

MHD_Result count_framing(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto& f = *static_cast<Framing*>(cls);
  if (::strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    if (++f.content_lengths == 1) f.content_length = value ? value : "";
  } else if (::strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    if (++f.transfer_encodings == 1) f.transfer_encoding = value ? value : "";
  }
  return MHD_YES;
}

// Decodes %HH escapes of a path in place, except in a path holding an escaped NUL ("%00"): that
// one stays escaped, so it names no file (decoded, the C string would end at the NUL and
// "/index.html%00.js" would be read as "/index.html").
std::size_t unescape_without_nul(void*, MHD_Connection*, char* text) {
  for (const char* p = text; (p = std::strchr(p, '%')) != nullptr; ++p) {
    if (p[1] == '0' && p[2] == '0') return std::strlen(text);
  }
  return MHD_http_unescape(text);
}

Connection* connection_of(MHD_Connection* c) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return info != nullptr ? static_cast<Connection*>(info->socket_context) : nullptr;
}

}  // namespace

struct HttpServer::Impl {
  HttpLimits limits;
  HttpHandlers handlers;
  HttpErrorReply error_reply;
  int listen_fd = -1;
  int family = AF_INET;
  MHD_Daemon* daemon = nullptr;

  std::mutex mutex;  // guards what follows
  std::condition_variable changed;
  std::unordered_set<Connection*> connections;
  bool stopping = false;
  int answering = 0;  // requests received whole and not yet completed

  std::atomic<std::size_t> buffered{0};  // body bytes held, all requests together

  Impl(HttpLimits l, HttpHandlers h, HttpErrorReply e)
      : limits(l), handlers(std::move(h)), error_reply(std::move(e)) {}

  // ---- replies --------------------------------------------------------------------------------

  MHD_Result queue(MHD_Connection* c, Exchange& ex, const HttpReply& reply) {
    MHD_Response* response = MHD_create_response_from_buffer(
        reply.body.size(), const_cast<char*>(reply.body.data()), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    if (!reply.content_type.empty()) {
      MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type.c_str());
    }
    for (const auto& [name, value] : reply.headers) {
      MHD_add_response_header(response, name.c_str(), value.c_str());
    }
    bool last = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      const Connection* conn = connection_of(c);
      last = conn != nullptr && conn->requests + 1 >= limits.max_requests_per_connection;
    }
    if (last) MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    const MHD_Result queued = MHD_queue_response(c, static_cast<unsigned>(reply.status), response);
    MHD_destroy_response(response);
    ex.status = reply.status;
    return queued;
  }

  MHD_Result refuse(MHD_Connection* c, Exchange& ex, int status, const std::string& message) {
    HttpReply reply = error_reply(status, message);
    if (status == 503) reply.headers.emplace_back("Retry-After", "1");
    return queue(c, ex, reply);
  }

  std::string too_large_message() const {
    return "request body too large: at most " + std::to_string(limits.max_body_bytes) + " bytes";
  }

  // ---- the shared body budget ----------------------------------------------------------------

  bool reserve(Exchange& ex, std::size_t bytes) {
    if (bytes <= ex.reserved) return true;
    const std::size_t more = bytes - ex.reserved;
    if (buffered.fetch_add(more) + more > limits.max_buffered_bytes) {
      buffered.fetch_sub(more);
      return false;
    }
    ex.reserved = bytes;
    ex.request.body.reserve(bytes);
    return true;
  }

  void release(Exchange& ex) {
    buffered.fetch_sub(ex.reserved);
    ex.reserved = 0;
    std::string().swap(ex.request.body);
  }

  // ---- the three moments of a request ---------------------------------------------------------

  // The head has arrived: check the framing, let the handlers refuse, reserve the body.
  MHD_Result begin(MHD_Connection* c, Exchange& ex, const char* url, const char* method) {
    ex.request.method = method;
    ex.request.path = url;
    const char* type =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    ex.request.content_type = type != nullptr ? type : "";
    Framing f;
    MHD_get_connection_values(c, MHD_HEADER_KIND, &count_framing, &f);
    if (f.content_lengths > 1) return refuse(c, ex, 400, "more than one Content-Length header");
    if (f.content_lengths > 0 && f.transfer_encodings > 0) {
      return refuse(c, ex, 400, "Content-Length and Transfer-Encoding in one request");
    }
    if (f.transfer_encodings > 1 ||
        (f.transfer_encodings == 1 && ::strcasecmp(f.transfer_encoding.c_str(), "chunked") != 0)) {
      return refuse(c, ex, 400, "unsupported Transfer-Encoding: only chunked is accepted");
    }
    std::size_t length = 0;
    if (f.content_lengths == 1) {
      char* end = nullptr;
      errno = 0;
      const unsigned long long n = std::strtoull(f.content_length.c_str(), &end, 10);
      if (f.content_length.empty() || *end != '\0' || errno != 0 || f.content_length[0] == '-') {
        return refuse(c, ex, 400, "Content-Length is not a number of bytes");
      }
      length = static_cast<std::size_t>(std::min<unsigned long long>(n, SIZE_MAX));
    }
    ex.request.has_body = f.transfer_encodings == 1 || f.content_lengths == 1;
    if (length > kDiscardFactor * limits.max_body_bytes) {
      return refuse(c, ex, 413, too_large_message());  // answered now, the connection closes
    }
    // A refusal is sent once the body (if any) is read and thrown away: answered before, the
    // connection would have to close, and pipelined requests behind it would be lost.
    ex.refusal = handlers.first_look(ex.request);
    if (ex.refusal) {
      // read on and thrown away (receive)
    } else if (length > limits.max_body_bytes) {
      ex.too_large = true;
    } else if (length > 0 && !reserve(ex, length)) {
      return refuse(c, ex, 503, "server busy: too many request bodies at once, try again");
    }
    return MHD_YES;
  }

  // Part of the body has arrived.
  MHD_Result receive(Exchange& ex, const char* data, std::size_t n) {
    if (ex.refusal) {
      ex.discarded += n;
      return ex.discarded <= kDiscardFactor * limits.max_body_bytes ? MHD_YES : MHD_NO;
    }
    if (!ex.too_large && !ex.busy && ex.request.body.size() + n > limits.max_body_bytes) {
      ex.too_large = true;
      release(ex);
    }
    if (!ex.too_large && !ex.busy) {
      const std::size_t needed = ex.request.body.size() + n;
      if (needed > ex.reserved &&
          !reserve(ex, std::min(limits.max_body_bytes, std::max(needed, 2 * ex.reserved)))) {
        ex.busy = true;
        release(ex);
      }
    }
    if (ex.too_large || ex.busy) {
      ex.discarded += n;
      return ex.discarded <= kDiscardFactor * limits.max_body_bytes ? MHD_YES : MHD_NO;
    }
    ex.request.body.append(data, n);
    return MHD_YES;
  }

  // The whole request has arrived: answer it.
  MHD_Result finish(MHD_Connection* c, Exchange& ex) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (Connection* conn = connection_of(c)) conn->receiving = false;
      ex.answering = true;
      ++answering;
    }
    if (ex.refusal) return queue(c, ex, *ex.refusal);
    if (ex.too_large) return refuse(c, ex, 413, too_large_message());
    if (ex.busy)
      return refuse(c, ex, 503, "server busy: too many request bodies at once, try again");
    const HttpReply reply = handlers.answer(ex.request);
    release(ex);
    return queue(c, ex, reply);
  }

  // ---- libmicrohttpd's callbacks --------------------------------------------------------------

  static MHD_Result on_access(void* cls, MHD_Connection* c, const char* url, const char* method,
                              const char* /*version*/, const char* data, std::size_t* size,
                              void** context) {
    Impl& self = *static_cast<Impl*>(cls);
    auto* ex = static_cast<Exchange*>(*context);
    if (ex == nullptr) {
      ex = new Exchange;
      *context = ex;
      return self.begin(c, *ex, url, method);
    }
    if (ex->status != 0) {  // answered before the body: nothing more to read
      *size = 0;
      return MHD_YES;
    }
    if (*size > 0) {
      const std::size_t n = *size;
      *size = 0;
      return self.receive(*ex, data, n);
    }
    return self.finish(c, *ex);
  }

  static void on_completed(void* cls, MHD_Connection* c, void** context,
                           MHD_RequestTerminationCode /*why*/) {
    Impl& self = *static_cast<Impl*>(cls);
    auto* ex = static_cast<Exchange*>(*context);
    if (ex == nullptr) return;
    *context = nullptr;
    const std::chrono::duration<double, std::milli> ms = Clock::now() - ex->start;
    if (self.handlers.log) self.handlers.log(ex->request, ex->status, ms.count());
    self.release(*ex);
    {
      std::lock_guard<std::mutex> lock(self.mutex);
      if (Connection* conn = connection_of(c)) {
        ++conn->requests;
        conn->since = Clock::now();
        conn->receiving = true;
      }
      if (ex->answering) --self.answering;
    }
    self.changed.notify_all();
    delete ex;
  }

  static void on_connection(void* cls, MHD_Connection* c, void** socket_context,
                            MHD_ConnectionNotificationCode what) {
    Impl& self = *static_cast<Impl*>(cls);
    std::lock_guard<std::mutex> lock(self.mutex);
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
      auto* conn = new Connection;
      const MHD_ConnectionInfo* info =
          MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      conn->fd = info != nullptr ? info->connect_fd : -1;
      conn->since = Clock::now();
      self.connections.insert(conn);
      *socket_context = conn;
    } else if (auto* conn = static_cast<Connection*>(*socket_context)) {
      // libmicrohttpd closes the socket after this call: no shut down can reach another file.
      self.connections.erase(conn);
      delete conn;
      *socket_context = nullptr;
    }
  }

  // Shuts down (the event loop then closes) every connection whose request has taken longer
  // than request_timeout_s to arrive. Called with the mutex held.
  void cut_slow_requests() {
    const auto limit = std::chrono::seconds(limits.request_timeout_s);
    const Clock::time_point now = Clock::now();
    for (Connection* conn : connections) {
      if (conn->receiving && !conn->cut && conn->fd >= 0 && now - conn->since > limit) {
        ::shutdown(conn->fd, SHUT_RDWR);
        conn->cut = true;
      }
    }
  }
};

HttpServer::HttpServer(HttpLimits limits, HttpHandlers handlers, HttpErrorReply error_reply)
    : impl_(std::make_unique<Impl>(limits, std::move(handlers), std::move(error_reply))) {}

HttpServer::~HttpServer() {
  if (impl_->daemon != nullptr) {
    MHD_stop_daemon(impl_->daemon);  // closes the listening socket too
  } else if (impl_->listen_fd >= 0) {
    ::close(impl_->listen_fd);
  }
}

namespace {

[[noreturn]] void throw_bind_error(const std::string& host, int port, int err) {
  const std::string where = "cannot listen on " + host + " port " + std::to_string(port);
  switch (err) {
    case EADDRINUSE:
      throw Error(where + ": port " + std::to_string(port) + " is already in use");
    case EACCES:
      throw Error(where + ": permission denied (ports below 1024 need root)");
    case EADDRNOTAVAIL:
      throw Error(where + ": " + host + " is not an address of this machine");
    default:
      throw Error(where + ": " + std::strerror(err));
  }
}

}  // namespace

int HttpServer::bind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    throw Error("cannot listen on " + host + " port " + service + ": " + host +
                " is not an address, nor a name that resolves (" + ::gai_strerror(rc) + ")");
  }
  int err = 0;
  for (const addrinfo* a = found; a != nullptr && impl_->listen_fd < 0; a = a->ai_next) {
    const int fd =
        ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    // SO_REUSEADDR lets a restart take the port at once; no SO_REUSEPORT, with which a second
    // server would quietly share the port of the first.
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        ::listen(fd, static_cast<int>(impl_->limits.backlog)) == 0) {
      impl_->listen_fd = fd;
      impl_->family = a->ai_family;
    } else {
      err = errno;
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (impl_->listen_fd < 0) throw_bind_error(host, port, err);
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(impl_->listen_fd, reinterpret_cast<sockaddr*>(&bound), &length);
  const auto& in = reinterpret_cast<const sockaddr_in&>(bound);  // the port sits alike in both
  return ntohs(in.sin_port);
}

bool HttpServer::run() {
  Impl& s = *impl_;
  // Every connection is a file: take the whole allowance, and no more connections than it holds.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
    if (files.rlim_cur < s.limits.max_connections + 64u) {
      s.limits.max_connections =
          static_cast<unsigned>(files.rlim_cur > 128 ? files.rlim_cur - 64 : 64);
    }
  }
  const unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
                         (s.family == AF_INET6 ? static_cast<unsigned>(MHD_USE_IPv6) : 0u);
  s.daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Impl::on_access, &s, MHD_OPTION_LISTEN_SOCKET,
      static_cast<MHD_socket>(s.listen_fd), MHD_OPTION_THREAD_POOL_SIZE,
      std::max(1u, s.limits.threads), MHD_OPTION_CONNECTION_LIMIT, s.limits.max_connections,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, s.limits.connection_memory, MHD_OPTION_CONNECTION_TIMEOUT,
      s.limits.idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, &s,
      MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection, &s, MHD_OPTION_UNESCAPE_CALLBACK,
      &unescape_without_nul, nullptr, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
  if (s.daemon == nullptr) return false;
  std::unique_lock<std::mutex> lock(s.mutex);
  while (!s.stopping) {
    s.changed.wait_for(lock, std::chrono::milliseconds(250));
    s.cut_slow_requests();
  }
  lock.unlock();
  // Stop accepting (the listening socket stays ours), let the answers in progress go out, then
  // close everything.
  MHD_quiesce_daemon(s.daemon);
  lock.lock();
  s.changed.wait_for(lock, std::chrono::seconds(10), [&] { return s.answering == 0; });
  lock.unlock();
  MHD_stop_daemon(s.daemon);
  s.daemon = nullptr;
  return true;
}

void HttpServer::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->changed.notify_all();
}

}  // namespace nanomlp
