// nanomlp download: fetch the IDX files of a dataset into the data folder, checking each md5.
// On a terminal each file gets a progress line that updates in place; otherwise one plain
// line per file when it is done (no control characters).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "nanomlp/app/download.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/data.hpp"

namespace nanomlp::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct DownloadFlags {
  std::string target = "mnist";
  std::optional<std::string> data;
  std::string mirror;
};

std::string format_bytes(double bytes) {
  char buf[32];
  if (bytes < 1024.0) {
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  } else if (bytes < 1024.0 * 1024.0) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  }
  return buf;
}

std::string format_speed(std::uint64_t bytes, double seconds) {
  if (seconds <= 0.0) return "";
  return format_bytes(static_cast<double>(bytes) / seconds) + "/s";
}

// Renders download events: a live bar on a terminal, plain lines otherwise.
class Printer {
 public:
  explicit Printer(bool terminal) : terminal_(terminal) {}

  void operator()(const DownloadEvent& e) {
    const std::string& name = e.file->name;
    switch (e.kind) {
      case DownloadEvent::Kind::kAlreadyPresent:
        line("  " + name + "  ok (already present)");
        break;
      case DownloadEvent::Kind::kStarted:
        if (e.corrupt_existing && failures_.empty()) replacing_ = true;
        if (terminal_) draw(e, true);
        break;
      case DownloadEvent::Kind::kProgress:
        if (terminal_) draw(e, false);
        break;
      case DownloadEvent::Kind::kMirrorFailed:
        if (terminal_) {
          line("  " + name + "  " + e.mirror + " failed: " + e.error);
        } else {
          failures_ += "; " + e.mirror + " failed: " + e.error;
        }
        break;
      case DownloadEvent::Kind::kDownloaded: {
        std::string text = "  " + name + "  ok (" +
                           (replacing_ ? "replaced a corrupt file, " : "") +
                           format_bytes(static_cast<double>(e.received)) + " from " + e.mirror;
        char seconds[32];
        std::snprintf(seconds, sizeof seconds, " in %.1f s", e.seconds);
        text += seconds;
        const std::string speed = format_speed(e.received, e.seconds);
        if (!speed.empty()) text += ", " + speed;
        line(text + failures_ + ")");
        failures_.clear();
        replacing_ = false;
        break;
      }
    }
  }

  // Erases a live progress line, e.g. before an error is printed.
  void clear() {
    if (terminal_ && bar_shown_) {
      std::fputs("\r\033[K", stdout);
      std::fflush(stdout);
      bar_shown_ = false;
    }
  }

  void line(const std::string& text) {
    clear();
    std::fputs(text.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

 private:
  void draw(const DownloadEvent& e, bool force) {
    const Clock::time_point now = Clock::now();
    const bool done = e.total > 0 && e.received >= e.total;
    if (!force && !done && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    std::string text = "\r\033[K  " + e.file->name + "  ";
    if (e.total > 0) {
      const double fraction =
          std::min(1.0, static_cast<double>(e.received) / static_cast<double>(e.total));
      const int filled = static_cast<int>(fraction * kWidth);
      text += "[" + std::string(static_cast<std::size_t>(filled), '#') +
              std::string(static_cast<std::size_t>(kWidth - filled), '.') + "]";
      char pct[16];
      std::snprintf(pct, sizeof pct, " %3d%%  ", static_cast<int>(fraction * 100.0));
      text += pct;
      text += format_bytes(static_cast<double>(e.received)) + " / " +
              format_bytes(static_cast<double>(e.total));
    } else {
      text += format_bytes(static_cast<double>(e.received));
    }
    const std::string speed = format_speed(e.received, e.seconds);
    if (!speed.empty()) text += "  " + speed;
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    bar_shown_ = true;
  }

  bool terminal_;
  bool bar_shown_ = false;
  bool replacing_ = false;
  std::string failures_;  // mirrors that failed for the current file (plain mode)
  Clock::time_point last_draw_{};
};

int run_download(const DownloadFlags& f) {
  const std::vector<std::string> datasets = resolve_download_targets(f.target);
  std::string mirror;
  if (!f.mirror.empty()) {
    if (datasets.size() > 1) {
      throw UsageError("--mirror needs one dataset (mnist or fashion-mnist), not '" + f.target +
                       "': both use the same file names, so one base URL cannot serve both");
    }
    mirror = normalize_mirror_url(f.mirror);
  }
  const std::string root = resolve_data_root(f.data);

  Printer printer(stdout_is_terminal());
  for (const std::string& name : datasets) {
    DownloadOptions options;
    if (!mirror.empty()) options.mirrors.push_back(mirror);
    for (const std::string& m : default_mirrors(name)) options.mirrors.push_back(m);
    options.on_event = [&printer](const DownloadEvent& e) { printer(e); };
    printer.line(name + ": " + std::to_string(dataset_files(name).size()) + " files into " +
                 (std::filesystem::path(root) / name).string());
    DownloadReport report;
    try {
      report = download_dataset(root, name, options);
    } catch (...) {
      printer.clear();
      throw;
    }
    const std::size_t downloaded = report.downloaded();
    printer.line(name + ": done (" + std::to_string(downloaded) + " downloaded, " +
                 std::to_string(report.files.size() - downloaded) + " already present)");
  }
  return 0;
}

}  // namespace

Runner add_download(CLI::App& app) {
  auto f = std::make_shared<DownloadFlags>();
  app.add_option("dataset", f->target, "mnist, fashion-mnist or all (default mnist)");
  app.add_option("--data", f->data,
                 "Data folder; files go to DIR/<dataset>/ (default: $NANOMLP_DATA, else ./data)");
  app.add_option("--mirror", f->mirror,
                 "Base URL to try before the standard mirrors (the file names are appended)");
  return [f] { return run_download(*f); };
}

}  // namespace nanomlp::cli
