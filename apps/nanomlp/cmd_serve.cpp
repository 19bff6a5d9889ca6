// nanomlp serve: the model behind an HTTP server, with a page to draw digits on (see
// include/nanomlp/app/server.hpp). Prints the URL, logs one line per request on stderr, and stops
// cleanly (exit 0) on SIGINT or SIGTERM once the requests in progress are answered.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "commands.hpp"
#include "nanomlp/app/server.hpp"

namespace nanomlp::cli {
namespace {

// SIGINT and SIGTERM write their number to this pipe (any thread may take them: OpenBLAS starts
// threads before main); a thread of ours reads it and stops the server.
int stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int sig) {
  const int saved = errno;
  const auto byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(stop_pipe[1], &byte, 1);
  errno = saved;
}

// Anything but a loopback address opens the page and the API to other machines: say which
// address was really bound. Empty for loopback.
std::string exposure_warning(const std::string& host, int port) {
  if (host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0) return "";
  const bool every = host == "0.0.0.0" || host == "::";
  return "warning: bound to " + host + " port " + std::to_string(port) + " (" +
         (every ? "every network address of this machine" : "a network address") +
         "): other machines can reach the page and the API; --host 127.0.0.1 keeps it local";
}

int run_serve(const ServeOptions& options) {
  ModelServer server(options);     // loads the model: IoError, ModelFormatError
  const int port = server.bind();  // Error naming the port

  if (::pipe(stop_pipe) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not end the server

  std::cout << "nanomlp serve: " << server.model_description() << "\n"
            << "nanomlp serve: listening on " << server.url() << " (Ctrl-C to stop)" << std::endl;
  if (const std::string warning = exposure_warning(options.host, port); !warning.empty()) {
    std::cout << "nanomlp serve: " << warning << std::endl;
  }

  std::atomic<int> received{0};  // the signal; -1 when run() ended by itself
  std::atomic<bool> finished{false};
  std::thread waiter([&] {
    unsigned char byte = 0;
    while (::read(stop_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    int none = 0;
    received.compare_exchange_strong(none, byte);
    // A second Ctrl-C ends the process at once.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    // A signal may come before run() listens, when stop() has nothing to stop yet: repeat.
    while (!finished) {
      server.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  const bool ok = server.run();
  finished = true;
  if (int none = 0; received.compare_exchange_strong(none, -1)) {
    const unsigned char wake = 0;  // release the waiting thread
    [[maybe_unused]] const ssize_t n = ::write(stop_pipe[1], &wake, 1);
  }
  waiter.join();
  if (!ok || received < 0) {
    std::cerr << "nanomlp: error: the server on " << server.url() << " stopped unexpectedly\n";
    return 1;
  }
  std::cout << "nanomlp serve: stopped (" << (received == SIGINT ? "SIGINT" : "SIGTERM") << ")"
            << std::endl;
  return 0;
}

}  // namespace

Runner add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  app.add_option("--model", o->model, "Model file or checkpoint (.safetensors)")->required();
  app.add_option("--host", o->host, "Address to listen on")->capture_default_str();
  app.add_option("--port", o->port, "Port to listen on (0: any free port, printed at startup)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--threads", o->threads, "Event loops answering requests (default: max(4, cores))")
      ->check(CLI::Range(1, 256));
  app.add_option("--max-connections", o->max_connections,
                 "Connections open at once; more wait in the listen queue (1024)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--idle-timeout", o->idle_timeout_s,
                 "Seconds a connection may send and read nothing before it is closed")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.add_option("--request-timeout", o->request_timeout_s,
                 "Seconds in which a request must arrive whole (head and body), from its first "
                 "byte or the previous answer on its connection")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.footer(
      "Endpoints: GET / (draw a digit), POST /api/predict ({\"pixels\": [784 values 0-255]} or "
      "an image body: image/png, image/jpeg, image/bmp, image/gif, PNM), GET /api/model, GET "
      "/healthz.\nLimits: request body 2 MiB (413), image 16 megapixels (413), request head 64 "
      "KiB (431), bodies held at once 64 MiB (503), 1000 requests per connection, 2 images "
      "decoded at once.");
  return [o] { return run_serve(*o); };
}

}  // namespace nanomlp::cli
