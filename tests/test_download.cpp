// nanomlp download: mirrors, checksums, atomic writes, skipping valid files, error messages.
// Every test serves files from a local HTTP server on 127.0.0.1 inside this process, with short
// libcurl timeouts, so nothing here touches the network.
#include "nanomlp/app/download.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/data.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::HasSubstr;
using testing::message_of;
using ::testing::Not;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;
namespace fs = std::filesystem;

// A minimal HTTP/1.1 server: one connection at a time, GET only, "Connection: close". Small
// enough to control exactly what goes on the wire (a Content-Length larger than the body, a
// transfer that stalls), which is what the error paths need.
class TestServer {
 public:
  struct Response {
    int status = 200;
    std::string body;
    std::optional<std::size_t> declared_length;  // Content-Length to send instead of body.size()
    bool stall = false;  // after the body, keep the connection open until the server stops
  };
  using Handler = std::function<Response(const std::string& path)>;

  explicit TestServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(listen_fd_, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~TestServer() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    stopped_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(listen_fd_);
  }

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int requests() const { return requests_.load(); }
  std::vector<std::string> paths() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return paths_;
  }

 private:
  void serve() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || (errno != EINTR && errno != ECONNABORTED)) return;
        continue;
      }
      handle(fd);
      ::close(fd);
    }
  }

  void handle(int fd) {
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      request.append(buf, static_cast<std::size_t>(n));
    }
    // "GET /path HTTP/1.1"
    const std::size_t a = request.find(' ');
    const std::size_t b = request.find(' ', a + 1);
    const std::string path = request.substr(a + 1, b - a - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      paths_.push_back(path);
    }
    ++requests_;
    const Response r = handler_(path);
    const std::size_t length = r.declared_length.value_or(r.body.size());
    std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " +
                       (r.status == 200 ? "OK" : "Error") +
                       "\r\nContent-Length: " + std::to_string(length) +
                       "\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
    if (!send_all(fd, head) || !send_all(fd, r.body)) return;
    if (r.stall) {
      std::unique_lock<std::mutex> lock(mutex_);
      stopped_.wait_for(lock, std::chrono::seconds(10), [this] { return stopping_; });
    }
  }

  static bool send_all(int fd, const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> requests_{0};
  mutable std::mutex mutex_;
  std::condition_variable stopped_;
  bool stopping_ = false;
  std::vector<std::string> paths_;
};

// A URL on which nothing listens: bind a port, then close it.
std::string dead_url() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
}

const std::vector<std::string> kNames = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

// Four small synthetic files (name -> bytes) and their specs.
struct Synthetic {
  std::map<std::string, std::string> content;
  std::vector<FileSpec> specs;
};

Synthetic make_synthetic() {
  Synthetic s;
  std::uint32_t x = 12345;
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    std::string bytes(3000 + 1000 * i, '\0');
    for (char& c : bytes) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    s.specs.push_back({kNames[i], md5_hex(bytes.data(), bytes.size()), bytes.size()});
    s.content[kNames[i]] = std::move(bytes);
  }
  return s;
}

// Serves `files` under "/" (any prefix: only the last path component counts); 404 otherwise.
TestServer::Handler serve_files(const std::map<std::string, std::string>& files) {
  return [files](const std::string& path) {
    const std::string name = path.substr(path.rfind('/') + 1);
    auto it = files.find(name);
    if (it == files.end()) return TestServer::Response{404, "not found", {}, false};
    return TestServer::Response{200, it->second, {}, false};
  };
}

DownloadOptions fast_options(std::vector<std::string> mirrors) {
  DownloadOptions o;
  o.mirrors = std::move(mirrors);
  o.connect_timeout_s = 2;
  o.low_speed_bytes_per_s = 100;
  o.low_speed_time_s = 1;
  o.total_timeout_s = 10;
  return o;
}

std::string file_string(const std::string& path) {
  const std::vector<unsigned char> b = read_bytes(path);
  return {b.begin(), b.end()};
}

// Every entry of a folder, by name.
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string real_mnist_dir() {
  const std::string root = testing::real_data_root();
  if (root.empty()) return {};
  const fs::path dir = fs::path(root) / "mnist";
  for (const auto& n : kNames) {
    if (!fs::exists(dir / n)) return {};
  }
  return dir.string();
}

std::map<std::string, std::string> real_mnist_files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& n : kNames) files[n] = file_string((fs::path(dir) / n).string());
  return files;
}

// --- names, mirrors, md5 ---

TEST(Download, Md5KnownVectors) {
  EXPECT_EQ(md5_hex("", 0), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("abc", 3), "900150983cd24fb0d6963f7d28e17f72");
  TempDir tmp;
  write_bytes(tmp.file("f"), {'a', 'b', 'c'});
  EXPECT_EQ(md5_file(tmp.file("f")), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_THROW(md5_file(tmp.file("missing")), IoError);
}

TEST(Download, NamesAndMirrors) {
  EXPECT_EQ(resolve_download_targets("all"), (std::vector<std::string>{"mnist", "fashion-mnist"}));
  EXPECT_EQ(resolve_download_targets("fashion-mnist"), (std::vector<std::string>{"fashion-mnist"}));
  try {
    resolve_download_targets("bogus");
    ADD_FAILURE() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("bogus"));
    EXPECT_THAT(e.what(), HasSubstr("mnist, fashion-mnist, all"));
  }
  EXPECT_THROW(dataset_files("all"), UsageError);
  EXPECT_THROW(default_mirrors("emnist"), UsageError);

  for (const std::string name : {"mnist", "fashion-mnist"}) {
    const auto& files = dataset_files(name);
    ASSERT_EQ(files.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(files[i].name, kNames[i]);
      EXPECT_EQ(files[i].md5.size(), 32u);
      EXPECT_GT(files[i].size, 0u);
    }
    for (const auto& m : default_mirrors(name)) EXPECT_EQ(m.back(), '/');
  }
  EXPECT_EQ(dataset_files("mnist")[0].md5, "f68b3c2dcbeaaa9fbdd348bbdeb94873");
  EXPECT_EQ(dataset_files("fashion-mnist")[3].md5, "bb300cfdad3c16e7a12a480ee83cd310");
  EXPECT_EQ(default_mirrors("mnist").size(), 3u);
  EXPECT_EQ(default_mirrors("mnist")[0], "https://ossci-datasets.s3.amazonaws.com/mnist/");
  EXPECT_EQ(default_mirrors("fashion-mnist").size(), 2u);

  EXPECT_EQ(normalize_mirror_url("http://host/x"), "http://host/x/");
  EXPECT_EQ(normalize_mirror_url("https://host/x/"), "https://host/x/");
  EXPECT_EQ(normalize_mirror_url("file:///srv/mnist"), "file:///srv/mnist/");
  EXPECT_THROW(normalize_mirror_url("ftp://host/"), UsageError);
  EXPECT_THROW(normalize_mirror_url("host/mnist/"), UsageError);
  EXPECT_THROW(normalize_mirror_url("http://"), UsageError);
  EXPECT_THROW(normalize_mirror_url("http://host/a b/"), UsageError);
}

// --- success ---

TEST(Download, RealMnistFilesLandVerifiedAndLoad) {
  const std::string src = real_mnist_dir();
  if (src.empty()) GTEST_SKIP() << "real MNIST .gz files not found";
  TestServer server(serve_files(real_mnist_files(src)));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url("/mnist")});  // no trailing '/': added
  std::vector<DownloadEvent::Kind> kinds;
  std::uint64_t last_received = 0;
  bool progress_monotonic = true;
  options.on_event = [&](const DownloadEvent& e) {
    kinds.push_back(e.kind);
    if (e.kind == DownloadEvent::Kind::kStarted) last_received = 0;
    if (e.kind == DownloadEvent::Kind::kProgress) {
      if (e.received < last_received || (e.total > 0 && e.received > e.total)) {
        progress_monotonic = false;
      }
      last_received = e.received;
    }
  };

  const DownloadReport report = download_dataset(tmp.path().string(), "mnist", options);
  EXPECT_EQ(report.dataset, "mnist");
  EXPECT_EQ(report.dir, (tmp.path() / "mnist").string());
  ASSERT_EQ(report.files.size(), 4u);
  EXPECT_EQ(report.downloaded(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    const FileReport& f = report.files[i];
    EXPECT_EQ(f.file.name, kNames[i]);
    EXPECT_FALSE(f.already_present);
    EXPECT_TRUE(f.failures.empty());
    EXPECT_EQ(f.mirror, server.url("/mnist/"));
    EXPECT_EQ(f.bytes, dataset_files("mnist")[i].size);
    EXPECT_EQ(md5_file(f.path), dataset_files("mnist")[i].md5);
  }
  EXPECT_EQ(server.paths(),
            (std::vector<std::string>{
                "/mnist/train-images-idx3-ubyte.gz", "/mnist/train-labels-idx1-ubyte.gz",
                "/mnist/t10k-images-idx3-ubyte.gz", "/mnist/t10k-labels-idx1-ubyte.gz"}));
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), DownloadEvent::Kind::kStarted), 4);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), DownloadEvent::Kind::kDownloaded), 4);
  EXPECT_GE(std::count(kinds.begin(), kinds.end(), DownloadEvent::Kind::kProgress), 4);
  EXPECT_TRUE(progress_monotonic);
  EXPECT_EQ(listing(tmp.path() / "mnist"),
            (std::vector<std::string>{"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                      "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}));

  const DataSplit data = load_dataset(tmp.path().string(), "mnist");
  EXPECT_EQ(data.train.count, 60000u);
  EXPECT_EQ(data.test.count, 10000u);
}

TEST(Download, CreatesNestedDataFolder) {
  const Synthetic s = make_synthetic();
  TestServer server(serve_files(s.content));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;
  const std::string root = (tmp.path() / "a" / "b").string();
  const DownloadReport report = download_dataset(root, "fashion-mnist", options);
  EXPECT_EQ(report.downloaded(), 4u);
  for (const auto& [name, bytes] : s.content) {
    EXPECT_EQ(file_string((fs::path(root) / "fashion-mnist" / name).string()), bytes);
  }
}

// --- failures ---

TEST(Download, ChecksumMismatchKeepsNothingAndNamesBothMd5s) {
  Synthetic s = make_synthetic();
  std::map<std::string, std::string> served = s.content;
  served["train-images-idx3-ubyte.gz"][100] ^= 0x01;  // same size, different bytes
  const std::string& bad = served["train-images-idx3-ubyte.gz"];
  const std::string bad_md5 = md5_hex(bad.data(), bad.size());
  TestServer server(serve_files(served));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;

  const std::string msg =
      message_of<DataError>([&] { download_dataset(tmp.path().string(), "mnist", options); });
  EXPECT_THAT(msg, HasSubstr("train-images-idx3-ubyte.gz"));
  EXPECT_THAT(msg, HasSubstr(server.url()));
  EXPECT_THAT(msg,
              HasSubstr("checksum mismatch: expected md5 " + s.specs[0].md5 + ", got " + bad_md5));
  EXPECT_THAT(msg, Not(HasSubstr("\n")));
  EXPECT_TRUE(listing(tmp.path() / "mnist").empty());  // no file, no temp file
  EXPECT_EQ(server.requests(), 1);                     // stopped at the first bad file
}

TEST(Download, TruncatedTransferKeepsNothing) {
  const Synthetic s = make_synthetic();
  const std::string& full = s.content.at("train-labels-idx1-ubyte.gz");
  TestServer server([&](const std::string& path) {
    const std::string name = path.substr(path.rfind('/') + 1);
    if (name == "train-labels-idx1-ubyte.gz") {
      // Declares the full length, sends half, closes.
      return TestServer::Response{200, full.substr(0, 1000), full.size(), false};
    }
    return TestServer::Response{200, s.content.at(name), {}, false};
  });
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;

  const std::string msg =
      message_of<DataError>([&] { download_dataset(tmp.path().string(), "mnist", options); });
  EXPECT_THAT(msg, HasSubstr("train-labels-idx1-ubyte.gz"));
  EXPECT_THAT(
      msg, HasSubstr("transfer truncated: got 1000 of " + std::to_string(full.size()) + " bytes"));
  // The first file was fine and stays; the truncated one left nothing behind.
  EXPECT_EQ(listing(tmp.path() / "mnist"),
            (std::vector<std::string>{"train-images-idx3-ubyte.gz"}));
}

TEST(Download, StalledTransferAbortsOnLowSpeedLimit) {
  const Synthetic s = make_synthetic();
  TestServer server([&](const std::string& path) {
    const std::string name = path.substr(path.rfind('/') + 1);
    const std::string& full = s.content.at(name);
    return TestServer::Response{200, full.substr(0, 10), full.size(), true};
  });
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;
  const auto start = std::chrono::steady_clock::now();
  const std::string msg =
      message_of<DataError>([&] { download_dataset(tmp.path().string(), "mnist", options); });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(msg, HasSubstr("transfer stalled"));
  EXPECT_THAT(msg, HasSubstr("got 10 of 3000 bytes"));
  EXPECT_LT(seconds, 5.0);
  EXPECT_TRUE(listing(tmp.path() / "mnist").empty());
}

TEST(Download, OversizedResponseIsRejected) {
  Synthetic s = make_synthetic();
  std::map<std::string, std::string> served = s.content;
  served["train-images-idx3-ubyte.gz"] += "extra";
  TestServer server(serve_files(served));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;
  const std::string msg =
      message_of<DataError>([&] { download_dataset(tmp.path().string(), "mnist", options); });
  EXPECT_THAT(msg, HasSubstr("more than the expected 3000 bytes"));
  EXPECT_TRUE(listing(tmp.path() / "mnist").empty());
}

TEST(Download, ShortBodyWithMatchingContentLengthIsWrongSize) {
  const Synthetic s = make_synthetic();
  std::map<std::string, std::string> served = s.content;
  served["train-images-idx3-ubyte.gz"] = "not the right bytes";
  TestServer server(serve_files(served));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;
  const std::string msg =
      message_of<DataError>([&] { download_dataset(tmp.path().string(), "mnist", options); });
  EXPECT_THAT(msg, HasSubstr("the only mirror failed"));
  EXPECT_THAT(msg, HasSubstr("wrong size: got 19 bytes, expected 3000"));
}

TEST(Download, DeadMirrorThenGoodOne) {
  const Synthetic s = make_synthetic();
  TestServer server(serve_files(s.content));
  TempDir tmp;
  const std::string dead = dead_url();
  DownloadOptions options = fast_options({dead, server.url()});
  options.files = s.specs;
  std::vector<std::string> failed_events;
  options.on_event = [&](const DownloadEvent& e) {
    if (e.kind == DownloadEvent::Kind::kMirrorFailed) failed_events.push_back(e.mirror);
  };

  const DownloadReport report = download_dataset(tmp.path().string(), "mnist", options);
  ASSERT_EQ(report.files.size(), 4u);
  EXPECT_EQ(report.downloaded(), 4u);
  ASSERT_EQ(report.files[0].failures.size(), 1u);
  EXPECT_EQ(report.files[0].failures[0].mirror, dead);
  EXPECT_EQ(report.files[0].failures[0].error, "connection refused");
  EXPECT_EQ(report.files[0].mirror, server.url());
  // An unreachable mirror is tried last for the remaining files.
  for (std::size_t i = 1; i < 4; ++i) EXPECT_TRUE(report.files[i].failures.empty());
  EXPECT_EQ(failed_events, (std::vector<std::string>{dead}));
  for (const auto& [name, bytes] : s.content) {
    EXPECT_EQ(file_string((tmp.path() / "mnist" / name).string()), bytes);
  }
}

TEST(Download, Http404ThenGoodOne) {
  const Synthetic s = make_synthetic();
  TestServer missing(serve_files({}));
  TestServer good(serve_files(s.content));
  TempDir tmp;
  DownloadOptions options = fast_options({missing.url("/nothing/"), good.url("/data/")});
  options.files = s.specs;

  const DownloadReport report = download_dataset(tmp.path().string(), "mnist", options);
  EXPECT_EQ(report.downloaded(), 4u);
  for (const FileReport& f : report.files) {
    ASSERT_EQ(f.failures.size(), 1u);  // a 404 says nothing about the next file: keep order
    EXPECT_EQ(f.failures[0].mirror, missing.url("/nothing/"));
    EXPECT_EQ(f.failures[0].error, "HTTP 404");
    EXPECT_EQ(f.mirror, good.url("/data/"));
  }
  EXPECT_EQ(missing.requests(), 4);
  EXPECT_EQ(good.requests(), 4);
}

TEST(Download, EveryMirrorFailingNamesEachMirrorAndWhatItGave) {
  const Synthetic s = make_synthetic();
  TestServer missing(serve_files({}));
  TempDir tmp;
  const std::string dead = dead_url();
  DownloadOptions options = fast_options({missing.url(), dead});
  options.files = s.specs;
  const std::string msg =
      message_of<DataError>([&] { download_dataset(tmp.path().string(), "mnist", options); });
  EXPECT_THAT(msg, HasSubstr("train-images-idx3-ubyte.gz"));
  EXPECT_THAT(msg, HasSubstr("all 2 mirrors failed"));
  EXPECT_THAT(msg, HasSubstr(missing.url() + " (HTTP 404)"));
  EXPECT_THAT(msg, HasSubstr(dead + " (connection refused)"));
  EXPECT_THAT(msg, Not(HasSubstr("\n")));
  EXPECT_TRUE(listing(tmp.path() / "mnist").empty());
  // Offline, the message says what to do, and the folder made for the download is gone.
  EXPECT_THAT(msg, HasSubstr("Offline? Copy the 4 files (train-images-idx3-ubyte.gz, "));
  EXPECT_THAT(msg, HasSubstr("into " + (tmp.path() / "mnist").string()));
  EXPECT_THAT(msg, HasSubstr("DATA="));
  EXPECT_THAT(msg, HasSubstr("--mirror URL"));
  EXPECT_FALSE(fs::exists(tmp.path() / "mnist"));
}

TEST(Download, CannotCreateFolder) {
  TempDir tmp;
  write_bytes(tmp.file("file"), {'x'});
  DownloadOptions options = fast_options({dead_url()});
  EXPECT_THROW(download_dataset(tmp.file("file"), "mnist", options), IoError);
}

TEST(Download, RejectsUnknownDatasetAndBadMirror) {
  TempDir tmp;
  EXPECT_THROW(download_dataset(tmp.path().string(), "all", fast_options({dead_url()})),
               UsageError);
  EXPECT_THROW(download_dataset(tmp.path().string(), "mnist", fast_options({"gopher://x/"})),
               UsageError);
}

// --- present files ---

TEST(Download, SkipsFilesAlreadyPresentAndValid) {
  const Synthetic s = make_synthetic();
  TestServer server(serve_files(s.content));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;
  EXPECT_EQ(download_dataset(tmp.path().string(), "mnist", options).downloaded(), 4u);
  EXPECT_EQ(server.requests(), 4);

  int present_events = 0;
  options.on_event = [&](const DownloadEvent& e) {
    if (e.kind == DownloadEvent::Kind::kAlreadyPresent) ++present_events;
  };
  const DownloadReport again = download_dataset(tmp.path().string(), "mnist", options);
  EXPECT_EQ(again.downloaded(), 0u);
  for (const FileReport& f : again.files) {
    EXPECT_TRUE(f.already_present);
    EXPECT_TRUE(f.mirror.empty());
  }
  EXPECT_EQ(present_events, 4);
  EXPECT_EQ(server.requests(), 4);  // nothing fetched the second time
}

TEST(Download, CorruptPresentFileIsDownloadedAgain) {
  const Synthetic s = make_synthetic();
  TestServer server(serve_files(s.content));
  TempDir tmp;
  DownloadOptions options = fast_options({server.url()});
  options.files = s.specs;
  download_dataset(tmp.path().string(), "mnist", options);
  const std::string path = (tmp.path() / "mnist" / "t10k-images-idx3-ubyte.gz").string();
  std::vector<unsigned char> corrupt = read_bytes(path);
  corrupt[7] ^= 0xff;  // same size, wrong md5
  write_bytes(path, corrupt);
  const std::string short_path = (tmp.path() / "mnist" / "t10k-labels-idx1-ubyte.gz").string();
  write_bytes(short_path, {1, 2, 3});  // wrong size

  const DownloadReport again = download_dataset(tmp.path().string(), "mnist", options);
  EXPECT_EQ(again.downloaded(), 2u);
  EXPECT_TRUE(again.files[0].already_present);
  EXPECT_TRUE(again.files[1].already_present);
  EXPECT_TRUE(again.files[2].replaced_corrupt);
  EXPECT_TRUE(again.files[3].replaced_corrupt);
  EXPECT_EQ(server.requests(), 6);
  EXPECT_EQ(file_string(path), s.content.at("t10k-images-idx3-ubyte.gz"));
  EXPECT_EQ(file_string(short_path), s.content.at("t10k-labels-idx1-ubyte.gz"));
  EXPECT_EQ(listing(tmp.path() / "mnist").size(), 4u);
}

// --- CLI ---

bool has_control_chars(const std::string& s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n') || u == 0x7f) return true;
  }
  return false;
}

TEST(DownloadCli, UnknownDatasetIsUsageError) {
  const auto r = testing::run_nanomlp("download bogus");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("bogus"));
  EXPECT_THAT(r.output, HasSubstr("mnist, fashion-mnist, all"));
}

TEST(DownloadCli, MirrorWithAllOrBadUrlIsUsageError) {
  TempDir tmp;
  auto r = testing::run_nanomlp("download all --data " + tmp.path().string() +
                                " --mirror http://127.0.0.1:1/");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--mirror"));
  r = testing::run_nanomlp("download mnist --data " + tmp.path().string() +
                           " --mirror ftp://example.org/");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ftp://example.org/"));
}

TEST(DownloadCli, DownloadsFromLocalMirrorWithPlainOutput) {
  const std::string src = real_mnist_dir();
  if (src.empty()) GTEST_SKIP() << "real MNIST .gz files not found";
  TestServer server(serve_files(real_mnist_files(src)));
  TempDir tmp;
  const std::string data = (tmp.path() / "data").string();
  const std::string args =
      "download mnist --data " + data + " --mirror " + server.url() + " < /dev/null";

  auto r = testing::run_nanomlp(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(has_control_chars(r.output)) << r.output;
  EXPECT_EQ(server.requests(), 4);
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    EXPECT_THAT(r.output, HasSubstr(kNames[i] + "  ok ("));
    EXPECT_EQ(md5_file((fs::path(data) / "mnist" / kNames[i]).string()),
              dataset_files("mnist")[i].md5);
  }
  EXPECT_THAT(r.output, HasSubstr("4 downloaded"));

  r = testing::run_nanomlp(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(server.requests(), 4);
  for (const auto& n : kNames) EXPECT_THAT(r.output, HasSubstr(n + "  ok (already present)"));
  EXPECT_THAT(r.output, HasSubstr("0 downloaded, 4 already present"));
  EXPECT_FALSE(has_control_chars(r.output)) << r.output;
}

}  // namespace
}  // namespace nanomlp
