// nanomlp: one binary, one subcommand per file. Exit codes: 0 success, 2 usage error,
// 1 runtime error; every error is one line on stderr.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/core/version.hpp"
#include "nanomlp/io/safetensors.hpp"

namespace nanomlp::cli {

std::vector<std::string> check_output_path(const std::string& flag, const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) throw UsageError(flag + ": expected a file path, got an empty string");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent)) {
    throw UsageError(flag + ": folder " + parent.string() + " does not exist (for " + path + ")");
  }
  if (fs::is_directory(path))
    throw UsageError(flag + ": " + path + " is a folder, expected a file");
  // Writable: the file is written as a temporary beside it, then renamed, so the folder must
  // take a new file. Probing now reports a read-only folder before training, not after it.
  if (const int err = probe_new_file(path); err != 0) {
    throw IoError(flag + ": cannot write " + path + " (folder " +
                  (parent.empty() ? std::string(".") : parent.string()) +
                  "): " + os_error_text(err));
  }
  return remove_stale_temporaries(path);
}

std::string format_accuracy(double accuracy, double standard_error) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f%% ± %.2f", accuracy * 100.0, standard_error * 100.0);
  return buf;
}

bool stdout_is_terminal() {
  return ::isatty(STDOUT_FILENO) != 0;
}

CLI::Option* add_threads_option(CLI::App& app, int& threads) {
  return app.add_option("--threads", threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, ThreadPool::kMaxThreads));
}

}  // namespace nanomlp::cli

int main(int argc, char** argv) {
  using namespace nanomlp;
  CLI::App app{"nanomlp: train, evaluate and use multilayer perceptrons on MNIST-format data"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("nanomlp ") + kVersion);
  std::vector<std::pair<CLI::App*, cli::Runner>> runners;  // in --help order
  auto add = [&](const char* name, const char* help, cli::Runner (*fn)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    runners.emplace_back(sub, fn(*sub));
  };
  // Subcommands, one file each (apps/nanomlp/cmd_<name>.cpp):
  add("train", "Train a network and write the model file", cli::add_train);
  add("eval", "Evaluate a model file on the test set", cli::add_eval);
  add("serve", "Serve a model over HTTP, with a page to draw digits on", cli::add_serve);
  add("report", "Write a self-contained HTML report of a trained model", cli::add_report);
  add("info", "Print the summary of a model file", cli::add_info);
  add("predict", "Classify image files (PNG, JPEG, PGM) with a model file", cli::add_predict);
  add("download", "Download a dataset into the data folder", cli::add_download);
  add("export", "Export a model file as ONNX or as a plain model file", cli::add_export);

  // CLI11 would only say "a subcommand is required" for a mistyped one; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& [sub, run] : runners) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
      known |= sub->get_name() == argv[1];
    }
    if (!known) {
      std::cerr << "nanomlp: error: unknown subcommand '" << argv[1]
                << "' (expected one of: " << names << ")\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    for (char& c : msg) {
      if (c == '\n') c = ' ';
    }
    std::cerr << "nanomlp: error: " << msg << " (see nanomlp --help)\n";
    return 2;
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "nanomlp: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "nanomlp: error: " << e.what() << "\n";
    return 1;
  }
}
