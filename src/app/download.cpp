#include "nanomlp/app/download.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <set>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/version.hpp"
#include "nanomlp/io/safetensors.hpp"

namespace nanomlp {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Without a known size, a response larger than this is not an MNIST-format file.
constexpr std::uint64_t kMaxDownloadBytes = std::uint64_t{512} << 20;
constexpr std::size_t kHashChunkBytes = std::size_t{1} << 20;
// Progress events at most this often (plus one at the end of each transfer).
constexpr double kProgressIntervalS = 0.05;

const std::vector<FileSpec> kMnistFiles = {
    {"train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422},
    {"train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881},
    {"t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877},
    {"t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542},
};

const std::vector<FileSpec> kFashionFiles = {
    {"train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880},
    {"train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515},
    {"t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102},
    {"t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148},
};

std::string names_list() {
  std::string list;
  for (const auto& n : download_target_names()) list += (list.empty() ? "" : ", ") + n;
  return list;
}

[[noreturn]] void throw_unknown(const std::string& name) {
  throw UsageError("unknown dataset '" + name + "' (expected one of: " + names_list() + ")");
}

// --- md5 ---

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr) != 1) {
      throw Error("cannot compute md5: OpenSSL has no MD5 digest available");
    }
  }
  void update(const void* data, std::size_t size) {
    if (size > 0 && EVP_DigestUpdate(ctx_.get(), data, size) != 1) {
      throw Error("cannot compute md5: EVP_DigestUpdate failed");
    }
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), digest, &length) != 1) {
      throw Error("cannot compute md5: EVP_DigestFinal_ex failed");
    }
    static const char* const kHex = "0123456789abcdef";
    std::string out;
    out.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
      out += kHex[digest[i] >> 4];
      out += kHex[digest[i] & 0x0f];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx_;
};

// --- libcurl ---

void global_curl_init() {
  static std::once_flag once;
  static CURLcode result = CURLE_OK;
  std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (result != CURLE_OK) {
    throw Error(std::string("cannot initialise libcurl: ") + curl_easy_strerror(result));
  }
}

struct CurlFree {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};

std::string format_seconds(long s) {
  return std::to_string(s) + " s";
}

struct Transfer {
  const DownloadOptions* options = nullptr;
  DownloadEvent progress;   // template for kProgress events
  std::uint64_t limit = 0;  // abort when the body would exceed this many bytes
  std::string body;
  bool too_large = false;
  Clock::time_point start;
  Clock::time_point last_progress;
  std::exception_ptr callback_error;
};

std::size_t on_write(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  if (t->body.size() + n > t->limit) {
    t->too_large = true;
    return 0;  // makes libcurl fail with CURLE_WRITE_ERROR
  }
  try {
    t->body.append(data, n);
  } catch (...) {
    t->callback_error = std::current_exception();
    return 0;
  }
  return n;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->options->on_event) return 0;
  const Clock::time_point now = Clock::now();
  if (std::chrono::duration<double>(now - t->last_progress).count() < kProgressIntervalS) return 0;
  t->last_progress = now;
  DownloadEvent e = t->progress;
  e.received = dlnow > 0 ? static_cast<std::uint64_t>(dlnow) : 0;
  if (dltotal > 0) e.total = static_cast<std::uint64_t>(dltotal);
  e.seconds = std::chrono::duration<double>(now - t->start).count();
  try {
    t->options->on_event(e);
  } catch (...) {
    t->callback_error = std::current_exception();
    return 1;  // aborts the transfer with CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

struct Attempt {
  bool ok = false;
  bool unreachable = false;  // never got a connection: try this mirror last from now on
  std::string error;
  std::string body;
  double seconds = 0.0;
};

std::string lower_first(std::string s) {
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && (s.size() < 2 || !(s[1] >= 'A' && s[1] <= 'Z'))) {
    s[0] = static_cast<char>(s[0] - 'A' + 'a');
  }
  return s;
}

std::string curl_detail(CURLcode code, const char* errbuf) {
  std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
  for (char& c : detail) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return lower_first(detail);
}

std::string truncated(std::uint64_t got, std::uint64_t expected) {
  return "transfer truncated: got " + std::to_string(got) + " of " +
         (expected > 0 ? std::to_string(expected) : std::string("?")) + " bytes";
}

Transfer new_transfer(const FileSpec& spec, const DownloadEvent& progress,
                      const DownloadOptions& options) {
  Transfer t;
  t.options = &options;
  t.progress = progress;
  t.progress.kind = DownloadEvent::Kind::kProgress;
  t.progress.total = spec.size;
  t.limit = spec.size > 0 ? spec.size : kMaxDownloadBytes;
  t.start = t.last_progress = Clock::now();
  if (spec.size > 0 && spec.size <= kMaxDownloadBytes) t.body.reserve(spec.size);
  return t;
}

// `t` and `errbuf` must outlive the transfer: libcurl writes to them while it runs.
void set_transfer_options(CURL* h, const std::string& url, const DownloadOptions& options,
                          Transfer& t, char* errbuf) {
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  // Timeouts must not use signals: the calling program may have threads of its own.
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  // A mirror may be a local folder (file://), but a redirect may not lead to one.
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // An HTTP error status (>= 400, RFC 9110 section 15) fails the transfer instead of delivering
  // the error page as the file.
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, (std::string("nanomlp/") + kVersion).c_str());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, options.low_speed_bytes_per_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, options.low_speed_time_s);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, options.total_timeout_s);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
}

// A transfer that libcurl reported as failed, with what its error text needs.
struct FailedTransfer {
  CURL* handle = nullptr;
  CURLcode code = CURLE_OK;
  const char* errbuf = "";
  std::uint64_t got = 0;       // body bytes received
  std::uint64_t expected = 0;  // the declared Content-Length, else the spec's size; 0: unknown
  double seconds = 0.0;
};

std::string connect_error(const FailedTransfer& f) {
  long os_errno = 0;
  curl_easy_getinfo(f.handle, CURLINFO_OS_ERRNO, &os_errno);
  if (os_errno == ECONNREFUSED) return "connection refused";
  if (os_errno != 0) {
    return "cannot connect: " + lower_first(std::strerror(static_cast<int>(os_errno)));
  }
  return curl_detail(f.code, f.errbuf);
}

// libcurl reports the connect timeout, the total timeout and the low-speed abort all as
// CURLE_OPERATION_TIMEDOUT: which one it was follows from what the transfer got that far.
std::string timeout_error(const FailedTransfer& f, const DownloadOptions& options,
                          bool& unreachable) {
  curl_off_t connect_us = 0;
  curl_easy_getinfo(f.handle, CURLINFO_CONNECT_TIME_T, &connect_us);
  if (connect_us == 0 && f.got == 0) {
    unreachable = true;
    return "connection timed out after " + format_seconds(options.connect_timeout_s);
  }
  if (options.total_timeout_s > 0 && f.seconds >= static_cast<double>(options.total_timeout_s)) {
    return "timed out after " + format_seconds(options.total_timeout_s) + " (" +
           truncated(f.got, f.expected) + ")";
  }
  return "transfer stalled: less than " + std::to_string(options.low_speed_bytes_per_s) +
         " bytes/s for " + format_seconds(options.low_speed_time_s) + " (" +
         truncated(f.got, f.expected) + ")";
}

// Sets a.error, and a.unreachable when the mirror could not be reached at all.
void describe_failure(const FailedTransfer& f, const Transfer& t, const DownloadOptions& options,
                      Attempt& a) {
  switch (f.code) {
    case CURLE_HTTP_RETURNED_ERROR: {
      long status = 0;
      curl_easy_getinfo(f.handle, CURLINFO_RESPONSE_CODE, &status);
      a.error = "HTTP " + std::to_string(status);
      break;
    }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      a.unreachable = true;
      a.error = curl_detail(f.code, f.errbuf);
      break;
    case CURLE_COULDNT_CONNECT:
      a.unreachable = true;
      a.error = connect_error(f);
      break;
    case CURLE_OPERATION_TIMEDOUT:
      a.error = timeout_error(f, options, a.unreachable);
      break;
    case CURLE_PARTIAL_FILE:
      a.error = truncated(f.got, f.expected);
      break;
    case CURLE_WRITE_ERROR:
      a.error = t.too_large
                    ? "the server sent more than the expected " + std::to_string(t.limit) + " bytes"
                    : curl_detail(f.code, f.errbuf);
      break;
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      a.error = f.got > 0
                    ? truncated(f.got, f.expected) + " (" + curl_detail(f.code, f.errbuf) + ")"
                    : curl_detail(f.code, f.errbuf);
      break;
    default:
      a.error = curl_detail(f.code, f.errbuf);
      break;
  }
}

Attempt fetch(const std::string& url, const FileSpec& spec, const DownloadEvent& progress,
              const DownloadOptions& options) {
  global_curl_init();
  Attempt a;
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) throw Error("cannot start a libcurl transfer (out of memory?)");
  CURL* h = curl.get();
  Transfer t = new_transfer(spec, progress, options);
  char errbuf[CURL_ERROR_SIZE];
  errbuf[0] = '\0';
  set_transfer_options(h, url, options, t, errbuf);

  const CURLcode code = curl_easy_perform(h);
  a.seconds = std::chrono::duration<double>(Clock::now() - t.start).count();
  if (t.callback_error) std::rethrow_exception(t.callback_error);

  const std::uint64_t got = t.body.size();
  curl_off_t declared = -1;
  curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &declared);
  const std::uint64_t expected = declared > 0 ? static_cast<std::uint64_t>(declared) : spec.size;
  if (code != CURLE_OK) {
    describe_failure({h, code, errbuf, got, expected, a.seconds}, t, options, a);
    return a;
  }
  if (spec.size > 0 && got != spec.size) {
    // A complete response of the wrong length: the mirror serves some other file.
    a.error =
        "wrong size: got " + std::to_string(got) + " bytes, expected " + std::to_string(spec.size);
    return a;
  }
  if (options.on_event) {
    DownloadEvent e = t.progress;
    e.received = got;
    e.total = expected > 0 ? expected : got;
    e.seconds = a.seconds;
    options.on_event(e);
  }
  a.ok = true;
  a.body = std::move(t.body);
  return a;
}

// Whether `path` holds exactly the bytes `spec` describes.
bool file_is_valid(const std::string& path, const FileSpec& spec, bool& exists) {
  std::error_code ec;
  exists = fs::exists(path, ec);
  if (!exists || !fs::is_regular_file(path, ec)) return false;
  if (spec.size > 0) {
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec || size != spec.size) return false;
  }
  try {
    return md5_file(path) == spec.md5;
  } catch (const IoError&) {
    return false;  // unreadable: download it again (the rename replaces it)
  }
}

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

}  // namespace

const std::vector<std::string>& download_target_names() {
  static const std::vector<std::string> names = {"mnist", "fashion-mnist", "all"};
  return names;
}

std::vector<std::string> resolve_download_targets(const std::string& target) {
  if (target == "all") return {"mnist", "fashion-mnist"};
  if (target == "mnist" || target == "fashion-mnist") return {target};
  throw_unknown(target);
}

const std::vector<FileSpec>& dataset_files(const std::string& name) {
  if (name == "mnist") return kMnistFiles;
  if (name == "fashion-mnist") return kFashionFiles;
  throw_unknown(name);
}

std::vector<std::string> default_mirrors(const std::string& name) {
  if (name == "mnist") {
    return {"https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/"};
  }
  if (name == "fashion-mnist") {
    return {"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"};
  }
  throw_unknown(name);
}

std::string normalize_mirror_url(const std::string& url) {
  const std::string bad = "mirror URL '" + url + "'";
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      throw UsageError(bad + " contains a space or control character");
    }
  }
  const std::string l = lower(url);
  std::size_t rest = 0;
  for (const char* scheme : {"http://", "https://", "file://"}) {
    if (l.rfind(scheme, 0) == 0) rest = std::strlen(scheme);
  }
  if (rest == 0) throw UsageError(bad + ": expected an http://, https:// or file:// URL");
  if (l.rfind("file://", 0) != 0 && (rest == url.size() || url[rest] == '/')) {
    throw UsageError(bad + ": expected a host name after the scheme");
  }
  return url.back() == '/' ? url : url + "/";
}

std::string md5_hex(const void* data, std::size_t size) {
  Md5 md5;
  md5.update(data, size);
  return md5.hex();
}

std::string md5_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) throw IoError("cannot read " + path + ": " + std::strerror(errno));
  Md5 md5;
  std::vector<unsigned char> buffer(kHashChunkBytes);
  for (;;) {
    const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    md5.update(buffer.data(), n);
    if (n < buffer.size()) {
      if (std::ferror(file.get()))
        throw IoError("cannot read " + path + ": " + std::strerror(errno));
      break;
    }
  }
  return md5.hex();
}

std::size_t DownloadReport::downloaded() const {
  return static_cast<std::size_t>(std::count_if(
      files.begin(), files.end(), [](const FileReport& f) { return !f.already_present; }));
}

namespace {

// The mirrors to try, normalised, each once, in the order given.
std::vector<std::string> mirror_list(const std::string& name, const DownloadOptions& options) {
  std::vector<std::string> mirrors;
  for (const std::string& m : options.mirrors.empty() ? default_mirrors(name) : options.mirrors) {
    const std::string normalized = normalize_mirror_url(m);
    if (std::find(mirrors.begin(), mirrors.end(), normalized) == mirrors.end()) {
      mirrors.push_back(normalized);
    }
  }
  return mirrors;
}

// Creates `dir` and its parents; whether it did not exist before.
bool create_dataset_folder(const fs::path& dir) {
  std::error_code ec;
  const bool created = !fs::exists(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create folder " + dir.string() + ": " + ec.message());
  if (!fs::is_directory(dir, ec)) {
    throw IoError("cannot create folder " + dir.string() + ": a file of that name exists");
  }
  return created;
}

void emit(const DownloadOptions& options, const DownloadEvent& e) {
  if (options.on_event) options.on_event(e);
}

// A transfer counts as delivered only with the expected md5.
Attempt fetch_verified(const std::string& url, const FileSpec& spec, const DownloadEvent& started,
                       const DownloadOptions& options) {
  Attempt a = fetch(url, spec, started, options);
  if (a.ok) {
    const std::string got = md5_hex(a.body.data(), a.body.size());
    if (got != spec.md5) {
      a.ok = false;
      a.error = "checksum mismatch: expected md5 " + spec.md5 + ", got " + got;
    }
  }
  return a;
}

// Tries the mirrors in order until one delivers the file, which is then written (temp file, then
// rename). Each failure goes into `fr`, each mirror that could not be reached into `unreachable`;
// fr.mirror stays empty when all failed.
void download_file(const std::vector<std::string>& mirrors, const DownloadEvent& base,
                   const DownloadOptions& options, FileReport& fr,
                   std::set<std::string>& unreachable) {
  for (const std::string& mirror : mirrors) {
    DownloadEvent e = base;
    e.mirror = mirror;
    e.kind = DownloadEvent::Kind::kStarted;
    e.corrupt_existing = fr.replaced_corrupt;
    emit(options, e);

    const Attempt a = fetch_verified(mirror + fr.file.name, fr.file, e, options);
    if (!a.ok) {
      if (a.unreachable) unreachable.insert(mirror);
      fr.failures.push_back({mirror, a.error});
      DownloadEvent f = base;
      f.kind = DownloadEvent::Kind::kMirrorFailed;
      f.mirror = mirror;
      f.seconds = a.seconds;
      f.error = a.error;
      emit(options, f);
      continue;
    }
    write_file_atomic(fr.path, a.body);
    fr.mirror = mirror;
    fr.bytes = a.body.size();
    fr.seconds = a.seconds;
    DownloadEvent d = base;
    d.kind = DownloadEvent::Kind::kDownloaded;
    d.mirror = mirror;
    d.received = d.total = fr.bytes;
    d.seconds = a.seconds;
    emit(options, d);
    return;
  }
}

std::string files_list(const std::vector<FileSpec>& files) {
  std::string out;
  for (const FileSpec& f : files) out += (out.empty() ? "" : ", ") + f.name;
  return out;
}

// What each mirror gave for `fr`, and what to do offline.
std::string all_mirrors_failed(const std::string& name, const FileReport& fr,
                               std::size_t mirror_count, const std::vector<FileSpec>& files,
                               const fs::path& dir) {
  std::string msg = "cannot download " + name + " file " + fr.file.name + ": " +
                    (mirror_count == 1 ? std::string("the only mirror")
                                       : "all " + std::to_string(mirror_count) + " mirrors") +
                    " failed: ";
  for (std::size_t i = 0; i < fr.failures.size(); ++i) {
    msg += (i ? "; " : "") + fr.failures[i].mirror + " (" + fr.failures[i].error + ")";
  }
  if (fr.replaced_corrupt) msg += "; the existing " + fr.path + " has the wrong md5";
  msg += ". Offline? Copy the " + std::to_string(files.size()) + " files (" + files_list(files) +
         ") into " + dir.string() + ", point --data (make: DATA=) at a folder that holds " + name +
         "/, or pass --mirror URL";
  return msg;
}

}  // namespace

DownloadReport download_dataset(const std::string& root, const std::string& name,
                                const DownloadOptions& options) {
  const std::vector<FileSpec>& standard = dataset_files(name);  // also validates the name
  const std::vector<FileSpec>& files = options.files ? *options.files : standard;
  std::vector<std::string> mirrors = mirror_list(name, options);

  DownloadReport report;
  report.dataset = name;
  const fs::path dir = fs::path(root) / name;
  report.dir = dir.string();
  const bool created = create_dataset_folder(dir);

  for (const FileSpec& spec : files) {
    FileReport fr;
    fr.file = spec;
    fr.path = (dir / spec.name).string();
    DownloadEvent base;
    base.dataset = name;
    base.file = &spec;
    base.total = spec.size;

    bool exists = false;
    if (file_is_valid(fr.path, spec, exists)) {
      fr.already_present = true;
      DownloadEvent e = base;
      e.kind = DownloadEvent::Kind::kAlreadyPresent;
      emit(options, e);
      report.files.push_back(std::move(fr));
      continue;
    }
    fr.replaced_corrupt = exists;

    std::set<std::string> unreachable;
    download_file(mirrors, base, options, fr, unreachable);
    if (fr.mirror.empty()) {
      const std::string msg = all_mirrors_failed(name, fr, mirrors.size(), files, dir);
      // A folder made for this download and still empty is not left behind.
      std::error_code ec;
      if (created && report.files.empty()) fs::remove(dir, ec);
      throw DataError(msg);
    }
    // Mirrors that could not be reached go last for the remaining files.
    std::stable_partition(mirrors.begin(), mirrors.end(),
                          [&](const std::string& m) { return unreachable.count(m) == 0; });
    report.files.push_back(std::move(fr));
  }
  return report;
}

}  // namespace nanomlp
