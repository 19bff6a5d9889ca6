// Downloading the MNIST-format datasets: the four IDX .gz files of a dataset, fetched with
// libcurl from a list of mirrors tried in order, each file checked against its known md5
// (OpenSSL EVP) and written atomically into ROOT/NAME/ (the layout load_dataset() reads).
// Files already present with the right checksum are kept and not downloaded again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace nanomlp {

// One file of a dataset and what it must hash to.
struct FileSpec {
  std::string name;        // e.g. "train-images-idx3-ubyte.gz"
  std::string md5;         // lower-case hex md5 of the file as served (the .gz bytes)
  std::uint64_t size = 0;  // its size in bytes; 0 = unknown (only used for checks and progress)
};

// The names `nanomlp download` accepts: "mnist", "fashion-mnist", "all".
const std::vector<std::string>& download_target_names();

// "all" -> {"mnist", "fashion-mnist"}; "mnist" -> {"mnist"}; anything else throws UsageError
// listing the valid names.
std::vector<std::string> resolve_download_targets(const std::string& target);

// The four files of a dataset with their published md5s and sizes. Throws UsageError for a
// name other than "mnist" or "fashion-mnist".
const std::vector<FileSpec>& dataset_files(const std::string& name);

// The public mirrors of a dataset, in the order they are tried. Each is a base URL ending in
// '/', under which the standard file names are found. Throws UsageError for an unknown name.
std::vector<std::string> default_mirrors(const std::string& name);

// Checks a mirror base URL (http://, https:// or file://, with a host part for http(s)) and
// returns it with a trailing '/'. Throws UsageError naming the URL otherwise.
std::string normalize_mirror_url(const std::string& url);

// Lower-case hex md5 of a buffer, and of a file's contents (IoError if it cannot be read).
std::string md5_hex(const void* data, std::size_t size);
std::string md5_file(const std::string& path);

// What happens during a download, reported as it happens through DownloadOptions::on_event.
struct DownloadEvent {
  enum class Kind {
    kAlreadyPresent,  // the file is there and its md5 matches: nothing to do
    kStarted,         // starting a transfer from `mirror` (corrupt_existing: replacing a bad file)
    kProgress,        // `received` of `total` bytes so far (total 0 = unknown)
    kMirrorFailed,    // this mirror failed with `error`; the next one is tried next
    kDownloaded,      // verified and written; `received` bytes in `seconds`
  };
  Kind kind = Kind::kProgress;
  std::string dataset;
  const FileSpec* file = nullptr;
  std::string mirror;  // base URL of the mirror in use (empty for kAlreadyPresent)
  std::uint64_t received = 0;
  std::uint64_t total = 0;
  double seconds = 0.0;           // since the start of this transfer
  std::string error;              // kMirrorFailed: what the mirror gave, e.g. "HTTP 404"
  bool corrupt_existing = false;  // kStarted: a file was present but its md5 did not match
};

struct DownloadOptions {
  // Mirror base URLs to try, in order, instead of default_mirrors(name). The CLI's --mirror
  // puts its URL in front of the defaults.
  std::vector<std::string> mirrors;
  // Files and checksums to fetch instead of dataset_files(name) (tests serve synthetic files).
  std::optional<std::vector<FileSpec>> files;
  // libcurl limits: connecting gives up after connect_timeout_s; a transfer slower than
  // low_speed_bytes_per_s for low_speed_time_s is aborted as stalled; total_timeout_s bounds a
  // whole transfer (0 = no bound). All in seconds.
  long connect_timeout_s = 15;
  long low_speed_bytes_per_s = 1024;
  long low_speed_time_s = 30;
  long total_timeout_s = 0;
  // Called on the calling thread for every event; kProgress comes at most every 50 ms per
  // transfer, plus once when it completes. An exception thrown here aborts the download and
  // propagates out of download_dataset().
  std::function<void(const DownloadEvent&)> on_event;
};

// A mirror that failed for one file, and how.
struct MirrorFailure {
  std::string mirror;  // base URL
  std::string error;   // e.g. "connection refused", "HTTP 404", "checksum mismatch: ..."
};

struct FileReport {
  FileSpec file;
  std::string path;                     // where it lies now
  bool already_present = false;         // kept as it was, nothing downloaded
  bool replaced_corrupt = false;        // a file with the wrong md5 was there and was replaced
  std::string mirror;                   // the mirror it came from (empty if already present)
  std::uint64_t bytes = 0;              // bytes downloaded
  double seconds = 0.0;                 // time of the successful transfer
  std::vector<MirrorFailure> failures;  // mirrors that failed before the one that worked
};

struct DownloadReport {
  std::string dataset;
  std::string dir;  // ROOT/NAME
  std::vector<FileReport> files;
  std::size_t downloaded() const;  // files actually transferred
};

// Downloads the files of dataset `name` into ROOT/NAME/, creating the folders as needed.
// For each file: keep it if present with the right md5; otherwise try each mirror in order
// (a mirror that could not be reached at all is tried last for the remaining files) until one
// gives the right bytes, then write them atomically (temp file in the same folder + rename).
// Nothing unverified is ever written. Stops at the first file that no mirror could give and
// throws DataError in one line naming the file and what each mirror gave; a folder or file
// that cannot be created throws IoError; an unknown name or a bad mirror URL UsageError.
DownloadReport download_dataset(const std::string& root, const std::string& name,
                                const DownloadOptions& options = {});

}  // namespace nanomlp
