// `nanomlp serve`: the real binary as a child process on a free port (--port 0), talked to with
// httplib's client (and raw sockets for requests httplib's client will not make). With real
// MNIST data the model is trained for one epoch so that its answers mean something; the images
// posted are real test digits, as MNIST pixels (JSON) or rendered on paper as a PNG.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stb/stb_image_write.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "nanomlp/app/server.hpp"
#include "nanomlp/app/training.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/nn/network.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::read_bytes;
using testing::real_data_root;
using testing::run_nanomlp;
using testing::TempDir;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string q(const std::string& s) {
  return "'" + s + "'";
}

// ---- the server as a child process ----------------------------------------------------------

class ServerProcess {
 public:
  // Starts `nanomlp serve --model MODEL --port 0 EXTRA...` and waits for the URL it prints.
  ServerProcess(const std::string& model, const std::string& log_path,
                std::vector<std::string> extra = {})
      : log_path_(log_path) {
    std::vector<std::string> args = {NANOMLP_BINARY, "serve", "--model", model, "--port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (log >= 0) ::dup2(log, STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_fd_ = fds[0];
    // Read stdout until the URL line, for at most 20 s.
    const std::string marker = "listening on http://";
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
      const std::size_t at = out_.find(marker);
      const std::size_t end = at == std::string::npos ? at : out_.find('/', at + marker.size());
      if (end != std::string::npos) {
        url_ = out_.substr(at + marker.size() - 7, end + 1 - (at + marker.size() - 7));
        const std::size_t colon = url_.rfind(':');
        port_ = std::atoi(url_.c_str() + colon + 1);
        return;
      }
      // A slow start (a sanitizer build, a loaded machine) is not an end: only end of file
      // or the deadline stops the wait.
      if (!read_some(200) && eof_) break;
    }
  }

  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& url() const { return url_; }

  // Sends the signal and waits (at most 10 s) for the exit; returns the exit code, or -1 if
  // the process did not exit normally in time.
  int stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (Clock::now() < deadline) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        while (read_some(100)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  const std::string& stdout_text() const { return out_; }
  // Reads whatever more stdout has within timeout_ms.
  void poll_output(int timeout_ms) { read_some(timeout_ms); }
  std::string log() const {
    const auto bytes = read_bytes(log_path_);
    return std::string(bytes.begin(), bytes.end());
  }

 private:
  // Reads what stdout has within timeout_ms; false at end of file or on a timeout.
  bool read_some(int timeout_ms) {
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  std::string log_path_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool eof_ = false;  // stdout closed: the server exited
  std::string out_;
  std::string url_;
  int port_ = 0;
};

// ---- models and images ----------------------------------------------------------------------

// A model trained for one epoch on real MNIST when the data is there, else freshly initialised.
std::string make_model(const TempDir& dir, bool train) {
  const std::string path = dir.file("model.safetensors");
  const std::string root = real_data_root();
  if (train && !root.empty()) {
    const auto r =
        run_nanomlp("train --data " + q(root) + " --epochs 1 --threads 2 --quiet --out " + q(path));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return path;
  }
  Architecture arch;
  Network<float> net(arch);
  Rng rng(7);
  net.init(rng);
  save_model(path, net);
  return path;
}

struct TestImages {
  std::vector<MnistImage> images;
  std::vector<int> labels;  // -1 when the images are synthetic
  bool real = false;
};

// The first n MNIST test images, or n pseudo-random blobs when there is no data.
TestImages test_images(std::size_t n) {
  TestImages t;
  const std::string root = real_data_root();
  if (!root.empty()) {
    const std::string dir = root + "/mnist/";
    const auto pick = [&](const std::string& name) {
      return std::filesystem::exists(dir + name + ".gz") ? dir + name + ".gz" : dir + name;
    };
    const Dataset test =
        read_idx_pair(pick("t10k-images-idx3-ubyte"), pick("t10k-labels-idx1-ubyte"));
    for (std::size_t i = 0; i < n && i < test.count; ++i) {
      MnistImage img;
      std::copy(test.image(i), test.image(i) + kImagePixels, img.begin());
      t.images.push_back(img);
      t.labels.push_back(test.labels[i]);
    }
    t.real = true;
    return t;
  }
  std::uint32_t state = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    MnistImage img{};
    for (std::size_t y = 6; y < 22; ++y) {
      for (std::size_t x = 8; x < 20; ++x) {
        state = state * 1664525u + 1013904223u;
        img[y * 28 + x] = static_cast<std::uint8_t>(state >> 24);
      }
    }
    t.images.push_back(img);
    t.labels.push_back(-1);
  }
  return t;
}

std::string pixels_json(const MnistImage& img) {
  return Json{{"pixels", std::vector<int>(img.begin(), img.end())}}.dump();
}

// A PNG of `img` upscaled `scale` times, dark ink on white paper at (ox, oy) of a w x h page.
std::string paper_png(const MnistImage& img, std::size_t scale, std::size_t ox, std::size_t oy,
                      std::size_t w, std::size_t h) {
  std::vector<std::uint8_t> page(w * h, 255);
  for (std::size_t y = 0; y < 28 * scale; ++y) {
    for (std::size_t x = 0; x < 28 * scale; ++x) {
      page[(oy + y) * w + ox + x] =
          static_cast<std::uint8_t>(255 - img[(y / scale) * 28 + x / scale]);
    }
  }
  std::string png;
  stbi_write_png_to_func(
      [](void* ctx, void* data, int size) {
        static_cast<std::string*>(ctx)->append(static_cast<const char*>(data),
                                               static_cast<std::size_t>(size));
      },
      &png, static_cast<int>(w), static_cast<int>(h), 1, page.data(), static_cast<int>(w));
  return png;
}

// What `nanomlp predict` would answer for these preprocessed images, one at a time as the
// server does.
std::vector<Prediction> local_predictions(const std::string& model,
                                          const std::vector<MnistImage>& images) {
  Network<float> net = load_model(model);
  std::vector<Prediction> out;
  for (const MnistImage& img : images) out.push_back(predict(net, {img}).front());
  return out;
}

std::vector<float> probabilities_of(const Json& answer) {
  std::vector<float> p;
  for (const auto& v : answer.at("probabilities")) p.push_back(static_cast<float>(v.get<double>()));
  return p;
}

std::unique_ptr<httplib::Client> client(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_connection_timeout(5);
  c->set_read_timeout(20);
  c->set_write_timeout(20);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);
  return c;
}

// An error answer: the status, a JSON content type and {"error": "<non-empty>"}.
void expect_json_error(const httplib::Result& res, int status, const std::string& what,
                       const std::string& contains = "") {
  ASSERT_TRUE(res) << what << ": no answer (" << httplib::to_string(res.error()) << ")";
  EXPECT_EQ(res->status, status) << what << ": " << res->body;
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("application/json")) << what;
  Json j;
  try {
    j = Json::parse(res->body);
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": the body is not JSON: " << res->body;
    return;
  }
  ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_string())
      << what << ": " << res->body;
  EXPECT_FALSE(j["error"].get<std::string>().empty()) << what;
  if (!contains.empty()) {
    EXPECT_THAT(j["error"].get<std::string>(), HasSubstr(contains)) << what;
  }
}

// Sends raw bytes on a fresh connection and returns what comes back before the server closes it
// or `timeout_ms` pass.
std::string raw_request(int port, const std::string& bytes, int timeout_ms) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        if (answer.find("\r\n\r\n") != std::string::npos) break;  // a full head, then quiet
        continue;
      }
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      answer.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return answer;
}

// A PNG whose header declares w x h grey pixels, with no image data after it.
std::string png_header_only(std::uint32_t w, std::uint32_t h) {
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr = "IHDR";
  for (std::uint32_t v : {w, h}) {
    for (int shift = 24; shift >= 0; shift -= 8) ihdr.push_back(static_cast<char>(v >> shift));
  }
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit grey, deflate, no interlace
  const auto be32 = [](std::uint32_t v) {
    std::string s;
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>(v >> shift));
    return s;
  };
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(ihdr.data()), static_cast<uInt>(ihdr.size())));
  png += be32(13) + ihdr + be32(crc);
  return png;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// ---- tests ----------------------------------------------------------------------------------

TEST(Serve, AnswersEveryEndpointLikePredict) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/true);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << "no URL printed:\n" << server.stdout_text() << server.log();
  EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  auto c = client(server.port());

  // Health.
  auto res = c->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(Json::parse(res->body), Json({{"status", "ok"}}));

  // The page: a canvas, every file served from the binary, nothing from elsewhere.
  res = c->Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(res->body, HasSubstr("<canvas"));
  EXPECT_THAT(res->get_header_value("Content-Security-Policy"), HasSubstr("default-src 'self'"));
  ASSERT_GE(web_assets().size(), 3u);
  for (const WebAsset& asset : web_assets()) {
    std::string path = "/";
    path += asset.name;
    res = c->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->body, asset.bytes) << path;
    EXPECT_THAT(res->body, Not(HasSubstr("http://"))) << path;
    EXPECT_THAT(res->body, Not(HasSubstr("https://"))) << path;
    EXPECT_THAT(res->body, Not(HasSubstr("//cdn"))) << path;
    if (asset.name.ends_with(".js")) {
      EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/javascript")) << path;
    }
    if (asset.name.ends_with(".css")) {
      EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/css")) << path;
    }
  }
  std::string all_files;
  for (const WebAsset& asset : web_assets()) all_files += asset.bytes;
  EXPECT_THAT(all_files, HasSubstr("touch-action: none"));

  // The model.
  res = c->Get("/api/model");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  const Json info = Json::parse(res->body);
  Network<float> net = load_model(model);
  EXPECT_EQ(info.at("parameters").get<std::size_t>(), net.num_params());
  EXPECT_EQ(info.at("description"), net.architecture().describe());
  EXPECT_EQ(info.at("summary"), model_summary(net));
  EXPECT_EQ(info.at("classes").get<std::vector<std::string>>(), class_names("mnist"));
  EXPECT_EQ(info.at("architecture"), Json::parse(net.architecture().to_json()));

  // MNIST pixels as JSON: used as they are, answered exactly as predict answers.
  const TestImages t = test_images(10);
  const std::vector<Prediction> expected = local_predictions(model, t.images);
  int correct = 0;
  for (std::size_t i = 0; i < t.images.size(); ++i) {
    res = c->Post("/api/predict", pixels_json(t.images[i]), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    const Json a = Json::parse(res->body);
    EXPECT_EQ(a.at("class").get<int>(), expected[i].cls) << "image " << i;
    EXPECT_EQ(probabilities_of(a), expected[i].probabilities) << "image " << i;
    EXPECT_EQ(a.at("label"), class_names("mnist")[static_cast<std::size_t>(expected[i].cls)]);
    EXPECT_FALSE(a.contains("pixels"));
    correct += a.at("class").get<int>() == t.labels[i];
  }
  if (t.real) {
    EXPECT_GE(correct, 9) << "a one-epoch model should classify 9 of the first 10 test digits";
  }

  // A test digit drawn on paper, as a PNG: preprocessed on the server as predict does it.
  const std::string png = paper_png(t.images[0], 10, 37, 21, 400, 340);
  const MnistImage seen = preprocess_mnist(
      decode_grey_image({reinterpret_cast<const std::uint8_t*>(png.data()), png.size()}, "png"));
  const Prediction local = local_predictions(model, {seen}).front();
  res = c->Post("/api/predict", png, "image/png");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Json a = Json::parse(res->body);
  EXPECT_EQ(a.at("class").get<int>(), local.cls);
  EXPECT_EQ(probabilities_of(a), local.probabilities);
  EXPECT_EQ(a.at("pixels").get<std::vector<int>>(), std::vector<int>(seen.begin(), seen.end()));
  if (t.real) {
    EXPECT_EQ(a.at("class").get<int>(), t.labels[0]);
  }

  // One log line per request: method, path, status, latency.
  c.reset();
  EXPECT_EQ(server.stop(SIGTERM), 0) << server.log();
  const std::string log = server.log();
  EXPECT_THAT(log, HasSubstr("GET /healthz 200 "));
  // e.g. "POST /api/predict 200 0.41 ms"
  const std::string prefix = "\nPOST /api/predict 200 ";
  const std::size_t at = log.find(prefix);
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line = log.substr(at + 1, log.find('\n', at + 1) - at - 1);
  char* end = nullptr;
  const double ms = std::strtod(line.c_str() + prefix.size() - 1, &end);
  EXPECT_GE(ms, 0.0) << line;
  EXPECT_STREQ(end, " ms") << line;
  EXPECT_THAT(server.stdout_text(), HasSubstr("stopped (SIGTERM)"));
}

TEST(Serve, RefusesBadRequestsWithJsonErrors) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  auto c = client(server.port());

  std::vector<int> ok(784, 0);
  const auto with = [&](std::size_t i, const Json& v) {
    Json j = {{"pixels", ok}};
    j["pixels"][i] = v;
    return j.dump();
  };
  const std::string blank_png = [] {
    MnistImage empty{};
    return paper_png(empty, 2, 0, 0, 60, 60);
  }();
  const std::string good_png = paper_png(test_images(1).images[0], 4, 10, 10, 140, 140);
  struct Case {
    std::string name, type, body;
    int status;
    std::string contains;
  };
  const std::vector<Case> cases = {
      {"malformed JSON", "application/json", "{\"pixels\": [1, 2", 400, "malformed JSON"},
      {"empty JSON body", "application/json", "", 400, "malformed JSON"},
      {"a list, not an object", "application/json", "[1, 2, 3]", 400, "pixels"},
      {"no pixels", "application/json", "{\"image\": []}", 400, "pixels"},
      {"pixels not a list", "application/json", "{\"pixels\": \"abc\"}", 400, "pixels"},
      {"783 pixels", "application/json", Json{{"pixels", std::vector<int>(783, 0)}}.dump(), 400,
       "got 783"},
      {"785 pixels", "application/json", Json{{"pixels", std::vector<int>(785, 0)}}.dump(), 400,
       "got 785"},
      {"28 rows of 28", "application/json",
       Json{{"pixels", std::vector<std::vector<int>>(28, std::vector<int>(28, 0))}}.dump(), 400,
       "got 28"},
      {"256", "application/json", with(5, 256), 400, "[5]"},
      {"-1", "application/json", with(700, -1), 400, "[700]"},
      {"huge", "application/json", with(1, 1e300), 400, "[1]"},
      {"1.5", "application/json", with(3, 1.5), 400, "[3]"},
      {"a string", "application/json", with(0, "12"), 400, "[0]"},
      {"null", "application/json", with(783, nullptr), 400, "[783]"},
      {"true", "application/json", with(2, true), 400, "[2]"},
      // Found by fuzzing: a number out of range (answered 500), and bytes that are not UTF-8
      // (the error echoing them could not be serialised: 500).
      {"1e309", "application/json", "{\"pixels\": [1e309]}", 400, "number overflow"},
      {"not UTF-8", "application/json", "{\"pixels\": \"\xff\xfe\"}", 400, "malformed JSON"},
      {"not UTF-8 key", "application/json", "{\"\xc3\x28\": 1}", 400, "malformed JSON"},
      {"deep nesting", "application/json", "{\"pixels\": " + std::string(200000, '['), 400,
       "nested"},
      {"text/plain", "text/plain", "hello", 415, "Content-Type"},
      {"form", "application/x-www-form-urlencoded", "pixels=1", 415, "Content-Type"},
      {"no Content-Type", "", pixels_json(MnistImage{}), 415, "Content-Type"},
      {"not a PNG", "image/png", "not a png at all", 422, "image"},
      // Found by fuzzing stb_image: an out-of-bounds read, and a picture of uninitialised memory.
      {"9-byte JPEG", "image/jpeg", std::string("\xff\xd8\xff\xc4\xb5\x00\x00\xb6\xb6", 9), 422,
       "cannot decode JPEG"},
      {"JPEG with a size and no data", "image/jpeg",
       std::string("\xff\xd8\xff\xc0\x00\x0b\x08\x00\x1c\x00\x1c\x01\x01\x11\x00\xff\xd9", 17), 422,
       "cannot decode JPEG"},
      {"ASCII PNM of 8192x8192 in 19 bytes", "image/x-portable-pixmap", "P3 8192 8192 255\n", 413,
       "too large"},
      {"truncated PNG", "image/png", good_png.substr(0, good_png.size() / 2), 422, "image"},
      {"blank PNG", "image/png", blank_png, 422, "no ink"},
      {"empty PNG body", "image/png", "", 400, "empty"},
      {"PNG of 20000x20000", "image/png", png_header_only(20000, 20000), 413, "too large"},
      {"3 MB of JSON", "application/json", std::string(3 << 20, ' '), 413, "too large"},
      {"3 MB PNG", "image/png", good_png + std::string(3 << 20, '\0'), 413, "too large"},
  };
  for (const Case& k : cases) {
    expect_json_error(c->Post("/api/predict", k.body, k.type), k.status, k.name, k.contains);
  }

  // Paths and methods.
  expect_json_error(c->Get("/nope"), 404, "GET /nope", "/nope");
  expect_json_error(c->Get("/api/nope"), 404, "GET /api/nope");
  expect_json_error(c->Post("/nope", "{}", "application/json"), 404, "POST /nope");
  auto res = c->Get("/api/predict");
  expect_json_error(res, 405, "GET /api/predict");
  EXPECT_EQ(res->get_header_value("Allow"), "POST");
  expect_json_error(c->Post("/healthz", "{}", "application/json"), 405, "POST /healthz");
  expect_json_error(c->Delete("/api/model"), 405, "DELETE /api/model");

  // What httplib's client never sends: a POST without Content-Length (no body, by HTTP's
  // rules: answered at once), and a chunked body over the limit.
  const auto t0 = Clock::now();
  std::string raw = raw_request(server.port(),
                                "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                "application/json\r\nConnection: close\r\n\r\n",
                                5000);
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 411")) << raw;
  EXPECT_THAT(raw, HasSubstr("{\"error\":"));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  std::string chunked =
      "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  const std::string chunk(1 << 20, ' ');
  for (int i = 0; i < 3; ++i) chunked += "100000\r\n" + chunk + "\r\n";
  chunked += "0\r\n\r\n";
  raw = raw_request(server.port(), chunked, 5000);
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 413")) << raw.substr(0, 300);

  // Still healthy, still answering.
  res = c->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = c->Post("/api/predict", pixels_json(test_images(1).images[0]), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  c.reset();
  EXPECT_EQ(server.stop(SIGINT), 0) << server.log();
  EXPECT_THAT(server.stdout_text(), HasSubstr("stopped (SIGINT)"));
  EXPECT_THAT(server.log(), HasSubstr("POST /api/predict 413 "));
}

TEST(Serve, ConcurrentClientsGetTheSingleThreadedAnswers) {
  constexpr int kClients = 8;
  constexpr int kRequestsEach = 50;
  constexpr std::size_t kImages = 100;
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  const TestImages t = test_images(kImages);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();

  // The answers one client gets, one request at a time; they are predict's answers.
  const std::vector<Prediction> local = local_predictions(model, t.images);
  std::vector<std::string> bodies;
  std::vector<std::vector<float>> reference;
  {
    auto c = client(server.port());
    for (std::size_t i = 0; i < kImages; ++i) {
      bodies.push_back(pixels_json(t.images[i]));
      const auto res = c->Post("/api/predict", bodies.back(), "application/json");
      ASSERT_TRUE(res);
      ASSERT_EQ(res->status, 200);
      reference.push_back(probabilities_of(Json::parse(res->body)));
      ASSERT_EQ(reference.back(), local[i].probabilities) << "image " << i;
    }
  }

  // Now 8 clients at once, 50 requests each, each answer bit-identical to the reference.
  std::vector<std::vector<double>> latencies(kClients);
  std::atomic<int> mismatches{0};
  std::atomic<int> failures{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int k = 0; k < kClients; ++k) {
    threads.emplace_back([&, k] {
      auto c = client(server.port());
      for (int r = 0; r < kRequestsEach; ++r) {
        const std::size_t i = static_cast<std::size_t>(k * 13 + r * 7) % kImages;
        const auto t0 = Clock::now();
        const auto res = c->Post("/api/predict", bodies[i], "application/json");
        const std::chrono::duration<double, std::milli> ms = Clock::now() - t0;
        latencies[static_cast<std::size_t>(k)].push_back(ms.count());
        if (!res || res->status != 200) {
          ++failures;
          continue;
        }
        if (probabilities_of(Json::parse(res->body)) != reference[i]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  const std::chrono::duration<double> wall = Clock::now() - start;
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(mismatches, 0);

  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kClients * kRequestsEach));
  const double median = percentile(all, 0.5);
  const double p99 = percentile(all, 0.99);
  std::printf(
      "[  serve   ] POST /api/predict (JSON pixels, 784-128-10), %d concurrent clients x %d "
      "requests on %u cores: median %.2f ms, p99 %.2f ms, %.0f requests/s\n",
      kClients, kRequestsEach, std::thread::hardware_concurrency(), median, p99,
      static_cast<double>(all.size()) / wall.count());
  ::testing::Test::RecordProperty("latency_median_ms", std::to_string(median));
  ::testing::Test::RecordProperty("latency_p99_ms", std::to_string(p99));

  EXPECT_EQ(server.stop(SIGTERM), 0) << server.log();
  // 100 + 400 predictions, each with its log line.
  const std::string log = server.log();
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), kImages + kClients * kRequestsEach) << log;
}

// Loopback is the default and says nothing more; any other --host names what was really bound
// and that other machines can reach it.
// A checkpoint is served as the model of its epoch: /api/model describes its network, and
// /api/predict answers as that network does (the one the run ended with, here its last epoch).
TEST(Serve, ServesACheckpointAsTheNetworkOfItsEpoch) {
  TempDir dir;
  Architecture arch;
  arch.hidden = {24};
  arch.batch_norm = true;
  DataSplit data;
  data.name = "mnist";
  data.train = testing::blob_digits(256, 1);
  data.test = testing::blob_digits(40, 2);
  TrainOptions options;
  options.epochs = 2;
  options.batch_size = 32;
  options.checkpoint_dir = dir.file("ck");
  Network<float> net(arch);
  run_training(net, data, options);
  const std::string checkpoint = dir.file("ck") + "/checkpoint-epoch-0002.safetensors";
  ServerProcess server(checkpoint, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << "no URL printed:\n" << server.stdout_text() << server.log();
  auto c = client(server.port());
  auto res = c->Get("/api/model");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Json info = Json::parse(res->body);
  EXPECT_EQ(info.at("description"), arch.describe());
  EXPECT_EQ(info.at("parameters").get<std::size_t>(), net.num_params());
  for (std::size_t i = 0; i < 5; ++i) {
    MnistImage img;
    std::copy(data.test.image(i), data.test.image(i) + kImagePixels, img.begin());
    const Prediction expected = predict(net, {img}).front();
    res = c->Post("/api/predict", pixels_json(img), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    const Json a = Json::parse(res->body);
    EXPECT_EQ(a.at("class").get<int>(), expected.cls) << "image " << i;
    EXPECT_EQ(probabilities_of(a), expected.probabilities) << "image " << i;
  }
}

TEST(Serve, ANonLoopbackHostPrintsAWarningNamingTheBoundAddress) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  {
    ServerProcess local(model, dir.file("local.log"));
    ASSERT_GT(local.port(), 0) << local.stdout_text() << local.log();
    EXPECT_THAT(local.stdout_text(), Not(HasSubstr("warning")));
  }
  ServerProcess open(model, dir.file("open.log"), {"--host", "0.0.0.0"});
  ASSERT_GT(open.port(), 0) << open.stdout_text() << open.log();
  // The warning follows the URL line; give it a moment to arrive.
  for (int i = 0; i < 50 && open.stdout_text().find("warning") == std::string::npos; ++i) {
    open.poll_output(100);
  }
  EXPECT_THAT(open.stdout_text(),
              HasSubstr("warning: bound to 0.0.0.0 port " + std::to_string(open.port()) +
                        " (every network address of this machine)"));
  auto c = client(open.port());
  const auto res = c->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(Serve, StartupErrorsAreOneLine) {
  TempDir dir;
  const auto one_line = [](const std::string& out) {
    return std::count(out.begin(), out.end(), '\n') == 1;
  };
  // Missing and corrupt model files.
  auto r = run_nanomlp("serve --model " + q(dir.file("missing.safetensors")) + " --port 0");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(one_line(r.output)) << r.output;
  EXPECT_THAT(r.output, HasSubstr("missing.safetensors"));
  testing::write_bytes(dir.file("corrupt.safetensors"), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  r = run_nanomlp("serve --model " + q(dir.file("corrupt.safetensors")) + " --port 0");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(one_line(r.output)) << r.output;
  EXPECT_THAT(r.output, HasSubstr("corrupt.safetensors"));

  // A port in use: the second server names it.
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess first(model, dir.file("first.log"));
  ASSERT_GT(first.port(), 0) << first.stdout_text() << first.log();
  const std::string port = std::to_string(first.port());
  r = run_nanomlp("serve --model " + q(model) + " --port " + port);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(one_line(r.output)) << r.output;
  EXPECT_THAT(r.output, HasSubstr("port " + port + " is already in use"));
  EXPECT_EQ(first.stop(SIGTERM), 0);

  // Flags.
  r = run_nanomlp("serve --model " + q(model) + " --port 70000");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_nanomlp("serve --port 0");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--model"));
  r = run_nanomlp("serve --model " + q(model) + " --host 203.0.113.7 --port 0");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(one_line(r.output)) << r.output;
  r = run_nanomlp("--help");
  EXPECT_THAT(r.output, HasSubstr("serve"));
}

TEST(Serve, PixelsFromJsonTakesMnistPixelsAsTheyAre) {
  MnistImage img{};
  for (std::size_t i = 0; i < kImagePixels; ++i) img[i] = static_cast<std::uint8_t>(i % 256);
  EXPECT_EQ(pixels_from_json(pixels_json(img)), img);
  std::vector<double> floats(784, 255.0);
  EXPECT_EQ(pixels_from_json(Json{{"pixels", floats}}.dump())[783], 255);
  try {
    pixels_from_json("{\"pixels\": [300]}");
    ADD_FAILURE() << "no error";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_THAT(e.what(), HasSubstr("784"));
  }
}

// ---- hostile clients ------------------------------------------------------------------------
// Each test below spawns its own server and measures what it survives; the figures printed are
// those of the README's Reliability section.

// The bound the tests hold the server's peak resident memory to, in MiB; AddressSanitizer
// (make debug) keeps freed memory in quarantine and shadows all of it, so it gets more.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kMaxServerRssMib = 1024;
#else
constexpr double kMaxServerRssMib = 256;
#endif

// The server's peak resident memory so far, in MiB (VmHWM), or -1 if unreadable.
double peak_rss_mib(pid_t pid) {
  const auto bytes = read_bytes("/proc/" + std::to_string(pid) + "/status");
  const std::string status(bytes.begin(), bytes.end());
  const std::size_t at = status.find("VmHWM:");
  if (at == std::string::npos) return -1;
  return std::strtod(status.c_str() + at + 6, nullptr) / 1024.0;
}

// A connected loopback socket (blocking), or -1.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True when the peer has closed fd (a read gives end of file or an error) within timeout_ms.
bool closed_by_peer(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  char buf[4096];
  return ::recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0;
}

struct Streamed {
  std::size_t sent = 0;  // bytes sent, head included
  std::string answer;    // what the server sent back
  bool closed = false;   // the server closed the connection
  double seconds = 0;
};

// Sends `head`, then `fill` again and again, reading what comes back meanwhile, until the server
// closes the connection, `limit` bytes are sent or `seconds` pass.
Streamed stream_until_closed(int port, const std::string& head, const std::string& fill,
                             std::size_t limit, double seconds) {
  Streamed r;
  const auto start = Clock::now();
  const int fd = connect_to(port);
  if (fd < 0) return r;
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  std::string pending = head;
  std::size_t offset = 0;
  while (!r.closed && std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
    const bool more = r.sent < limit;
    pollfd p{fd, static_cast<short>(POLLIN | (more ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) r.closed = true;
      if (n > 0) r.answer.append(buf, static_cast<std::size_t>(n));
    }
    if (!r.closed && more && (p.revents & POLLOUT)) {
      if (offset == pending.size()) {
        pending = fill;
        offset = 0;
      }
      const ssize_t n = ::send(fd, pending.data() + offset, pending.size() - offset, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN) r.closed = true;
      if (n > 0) {
        offset += static_cast<std::size_t>(n);
        r.sent += static_cast<std::size_t>(n);
      }
    }
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  return r;
}

const std::string kPredictHead =
    "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";

// n sequential good requests from a fresh client; their latencies in ms (failed ones: 1e9).
std::vector<double> good_client(int port, const std::string& body, int n) {
  auto c = client(port);
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    const auto res = c->Post("/api/predict", body, "application/json");
    const std::chrono::duration<double, std::milli> d = Clock::now() - t0;
    ms.push_back(res && res->status == 200 ? d.count() : 1e9);
  }
  return ms;
}

TEST(ServeUnderAbuse, SlowlorisAndIdleConnectionsDoNotHoldUpOthersAndAreCut) {
  constexpr int kSlow = 200;
  constexpr int kIdle = 100;
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"),
                       {"--request-timeout", "4", "--idle-timeout", "3"});
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  std::vector<int> slow, idle;
  for (int i = 0; i < kSlow; ++i) slow.push_back(connect_to(server.port()));
  for (int i = 0; i < kIdle; ++i) idle.push_back(connect_to(server.port()));
  ASSERT_EQ(std::count(slow.begin(), slow.end(), -1) + std::count(idle.begin(), idle.end(), -1), 0);
  // Slowloris: a request head, one byte a second, never finished.
  std::atomic<bool> done{false};
  std::thread drip([&] {
    const std::string head = kPredictHead + "X-Slow: ";
    for (std::size_t i = 0; !done; ++i) {
      for (int fd : slow) ::send(fd, head.data() + i % head.size(), 1, MSG_NOSIGNAL);
      for (int t = 0; t < 10 && !done; ++t)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  // Meanwhile a good client.
  const std::vector<double> ms =
      good_client(server.port(), pixels_json(test_images(1).images[0]), 100);
  const double median = percentile(ms, 0.5), p99 = percentile(ms, 0.99);
  EXPECT_LT(median, 100.0);
  EXPECT_LT(p99, 1e9) << "a good request failed";
  // Within the timeouts (4 s for a whole request, 3 s of silence) every one is cut.
  const auto t0 = Clock::now();
  int slow_cut = 0, idle_cut = 0;
  for (int fd : slow) slow_cut += closed_by_peer(fd, 8000);
  for (int fd : idle) idle_cut += closed_by_peer(fd, 8000);
  const double cut_after = std::chrono::duration<double>(Clock::now() - t0).count();
  done = true;
  drip.join();
  for (int fd : slow) ::close(fd);
  for (int fd : idle) ::close(fd);
  EXPECT_EQ(slow_cut, kSlow);
  EXPECT_EQ(idle_cut, kIdle);
  const double rss = peak_rss_mib(server.pid());
  std::printf(
      "[  abuse   ] %d slowloris + %d idle connections: good client 100/100 answered, "
      "median %.2f ms, p99 %.2f ms; all cut %.1f s later; server peak RSS %.0f MiB\n",
      kSlow, kIdle, median, p99, cut_after, rss);
  EXPECT_LT(rss, kMaxServerRssMib);
  EXPECT_EQ(good_client(server.port(), pixels_json(test_images(1).images[0]), 1)[0] < 1e9, true);
}

TEST(ServeUnderAbuse, FiveHundredSimultaneousRequestsAreAllAnswered) {
  constexpr int kClients = 500;
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &files);
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  const std::string body = pixels_json(test_images(1).images[0]);
  const std::string request =
      kPredictHead + "Connection: close\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  std::vector<pollfd> fds;
  std::vector<std::string> answers(kClients);
  std::vector<double> ms(kClients, 1e9);
  const auto start = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0) << "connection " << i;
    ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    fds.push_back({fd, POLLIN, 0});
  }
  int open = kClients;
  while (open > 0 && Clock::now() - start < std::chrono::seconds(30)) {
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (int i = 0; i < kClients; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, 0);
      if (n > 0) {
        answers[i].append(buf, static_cast<std::size_t>(n));
        continue;
      }
      ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      ::close(fds[i].fd);
      fds[i].fd = -1;
      --open;
    }
  }
  for (auto& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  int ok = 0;
  for (const std::string& a : answers) ok += a.rfind("HTTP/1.1 200", 0) == 0;
  const double rss = peak_rss_mib(server.pid());
  std::printf(
      "[  abuse   ] %d simultaneous requests: %d answered 200, none timed out: %s; "
      "median %.1f ms, p99 %.1f ms (from the first connect); peak RSS %.0f MiB\n",
      kClients, ok, open == 0 ? "yes" : "no", percentile(ms, 0.5), percentile(ms, 0.99), rss);
  EXPECT_EQ(ok, kClients);
  EXPECT_EQ(open, 0);
}

TEST(ServeUnderAbuse, HugeBodiesEndlessChunksAndHeaderFloodsAreCutEarly) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  const std::string block(1 << 16, 'a');
  // 100 MB body: refused from its Content-Length, before it is read.
  Streamed r = stream_until_closed(
      server.port(), kPredictHead + "Content-Length: 104857600\r\n\r\n", block, 100u << 20, 20);
  EXPECT_THAT(r.answer, HasSubstr("HTTP/1.1 413")) << r.answer.substr(0, 200);
  EXPECT_TRUE(r.closed);
  EXPECT_LT(r.sent, std::size_t{16} << 20);
  std::printf("[  abuse   ] 100 MB body: 413 and closed after %.1f MB sent, %.2f s\n",
              static_cast<double>(r.sent) / 1e6, r.seconds);
  // A chunked body that never ends: cut once it is 4 times over the 2 MiB limit.
  const std::string chunk = "10000\r\n" + block + "\r\n";
  r = stream_until_closed(server.port(), kPredictHead + "Transfer-Encoding: chunked\r\n\r\n", chunk,
                          std::size_t{200} << 20, 20);
  EXPECT_TRUE(r.closed);
  EXPECT_LT(r.sent, std::size_t{24} << 20);
  std::printf("[  abuse   ] endless chunked body: closed after %.1f MB sent, %.2f s\n",
              static_cast<double>(r.sent) / 1e6, r.seconds);
  // 200 MB of header lines: refused once the head outgrows the connection's memory.
  r = stream_until_closed(server.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n",
                          "X-Filler: " + std::string(100, 'b') + "\r\n", std::size_t{200} << 20,
                          20);
  // libmicrohttpd answers 431 and closes; the client, still sending, may see the reset before
  // it reads the answer, so only the cut is certain.
  EXPECT_TRUE(r.closed);
  EXPECT_LT(r.sent, std::size_t{4} << 20);
  if (!r.answer.empty()) {
    EXPECT_THAT(r.answer, HasSubstr("HTTP/1.1 431")) << r.answer.substr(0, 200);
  }
  std::printf("[  abuse   ] header flood: %s, closed after %.2f MB sent\n",
              r.answer.empty() ? "reset before the answer was read"
                               : r.answer.substr(0, r.answer.find('\r')).c_str(),
              static_cast<double>(r.sent) / 1e6);
  // 20 of each at once: the memory stays bounded, and the server answers.
  std::vector<std::thread> attackers;
  for (int i = 0; i < 20; ++i) {
    attackers.emplace_back([&] {
      stream_until_closed(server.port(), kPredictHead + "Transfer-Encoding: chunked\r\n\r\n", chunk,
                          std::size_t{200} << 20, 20);
    });
    attackers.emplace_back([&] {
      stream_until_closed(server.port(),
                          kPredictHead + "Content-Length: 2000000\r\nConnection: close\r\n\r\n",
                          block, 2000000, 20);
    });
  }
  for (auto& t : attackers) t.join();
  const double rss = peak_rss_mib(server.pid());
  std::printf(
      "[  abuse   ] + 20 endless chunked and 20 near-limit bodies at once: peak RSS %.0f MiB\n",
      rss);
  EXPECT_LT(rss, kMaxServerRssMib);
  EXPECT_LT(good_client(server.port(), pixels_json(test_images(1).images[0]), 1)[0], 1e9);
}

// The status codes of the HTTP/1.1 answers in `text`, in order.
std::vector<int> statuses(const std::string& text) {
  std::vector<int> out;
  for (std::size_t at = text.find("HTTP/1.1 "); at != std::string::npos;
       at = text.find("HTTP/1.1 ", at + 1)) {
    out.push_back(std::atoi(text.c_str() + at + 9));
  }
  return out;
}

TEST(ServeUnderAbuse, PipelinedRequestsAreAnsweredInOrder) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  const std::string body = pixels_json(test_images(1).images[0]);
  const std::string requests = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + kPredictHead +
                               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                               body +
                               "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                               "PATCH /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                               "GET /api/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string answer = raw_request(server.port(), requests, 5000);
  EXPECT_EQ(statuses(answer), (std::vector<int>{200, 200, 404, 405, 200})) << answer;
  EXPECT_LT(answer.find("{\"status\":\"ok\"}"), answer.find("\"probabilities\""));
  EXPECT_LT(answer.find("\"probabilities\""), answer.find("\"architecture\""));
}

TEST(ServeUnderAbuse, MethodsFramingAndTraversalAreRefused) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  struct Case {
    std::string request;
    int status;
    std::string contains;
  };
  const std::vector<Case> cases = {
      {"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Allow: GET"},
      {"PATCH /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405, "Allow: POST"},
      {"TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, "not allowed"},
      {kPredictHead + "Content-Length: 2\r\nContent-Length: 30\r\n\r\n{}", 400, "Content-Length"},
      {kPredictHead + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}", 400,
       "Transfer-Encoding"},
      {kPredictHead + "Transfer-Encoding: gzip\r\n\r\n", 400, "chunked"},
      {"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n", 411,
       "Content-Length"},
      {"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/html"},
  };
  for (const Case& k : cases) {
    const std::string answer = raw_request(server.port(), k.request, 3000);
    EXPECT_EQ(statuses(answer).empty() ? 0 : statuses(answer)[0], k.status) << k.request << answer;
    EXPECT_THAT(answer, HasSubstr(k.contains)) << k.request;
  }
  for (const char* path :
       {"/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "//etc/passwd", "/index.html/../../../etc/passwd",
        "/..%5c..%5cetc%5cpasswd", "/%252e%252e/etc/passwd", "/./../app.js/../../etc/passwd",
        "/%00/etc/passwd", "/index.html%00.js"}) {
    const std::string answer = raw_request(
        server.port(), std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\n\r\n", 3000);
    const std::vector<int> s = statuses(answer);
    ASSERT_FALSE(s.empty()) << path;
    EXPECT_TRUE(s[0] == 404 || s[0] == 400) << path << ": " << answer.substr(0, 200);
    EXPECT_THAT(answer, Not(HasSubstr("root:"))) << path;
  }
}

// Sends bytes, closes the sending side, and returns what comes back until the server closes the
// connection or stays quiet for 300 ms (a request it still waits the end of).
std::string send_and_half_close(int port, const std::string& bytes) {
  const int fd = connect_to(port);
  if (fd < 0) return "";
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  for (int i = 0; i < 10; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 300) <= 0) break;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

// n inputs from a fixed seed: one in four random bytes, the others a valid request with a few
// bytes changed, inserted or removed.
std::vector<std::string> mutated_requests(const std::vector<std::string>& valid, int n) {
  Rng rng(2026);
  const auto u32 = [&] { return static_cast<std::uint32_t>(rng.next_u64()); };
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string bytes = valid[u32() % valid.size()];
    if (i % 4 == 0) {
      bytes.assign(u32() % 300, '\0');
      for (char& c : bytes) c = static_cast<char>(u32());
    }
    for (unsigned m = 0, count = 1 + u32() % 8; i % 4 != 0 && m < count && !bytes.empty(); ++m) {
      const std::size_t at = u32() % bytes.size();
      const std::uint32_t how = u32() % 3;
      if (how == 0) bytes[at] = static_cast<char>(u32());
      if (how == 1) bytes.insert(at, 1, static_cast<char>(u32()));
      if (how == 2) bytes.erase(at, 1 + u32() % 16);
    }
    out.push_back(std::move(bytes));
  }
  return out;
}

TEST(ServeUnderAbuse, AnyBytesAreAnswered4xxNever5xx) {
  TempDir dir;
  const std::string model = make_model(dir, /*train=*/false);
  ServerProcess server(model, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.stdout_text() << server.log();
  const std::string body = pixels_json(test_images(1).images[0]);
  const std::vector<std::string> inputs = mutated_requests(
      {"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
       kPredictHead + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body,
       std::string("POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                   "Content-Length: 16\r\n\r\n\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                   98),
       kPredictHead + "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"pi\r\n0\r\n\r\n"},
      400);
  // Eight clients at once, each half-closing after its bytes (the server sees the end).
  std::vector<std::string> answers(inputs.size());
  std::vector<std::thread> clients;
  for (std::size_t k = 0; k < 8; ++k) {
    clients.emplace_back([&, k] {
      for (std::size_t i = k; i < inputs.size(); i += 8) {
        answers[i] = send_and_half_close(server.port(), inputs[i]);
      }
    });
  }
  for (auto& t : clients) t.join();
  int answered = 0, fives = 0;
  std::string first_five;
  for (const std::string& answer : answers) {
    for (int status : statuses(answer)) {
      ++answered;
      // 505 (a version other than HTTP/1.0 or 1.1) is the answer RFC 9110 (15.6.6) asks for.
      if (status >= 500 && status != 505 && fives++ == 0) first_five = answer.substr(0, 300);
    }
  }
  const int count = static_cast<int>(inputs.size());
  std::printf("[  abuse   ] %d random and mutated requests: %d answers, %d with a 5xx status\n",
              count, answered, fives);
  EXPECT_EQ(fives, 0) << first_five;
  EXPECT_GT(answered, count / 4);
  EXPECT_LT(good_client(server.port(), body, 1)[0], 1e9);
  EXPECT_THAT(server.log(), Not(HasSubstr(" 500 ")));
}

}  // namespace
}  // namespace nanomlp
