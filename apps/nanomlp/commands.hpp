// The subcommands of the nanomlp binary. Each file registers its options on a CLI11
// subcommand and returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace nanomlp::cli {

using Runner = std::function<int()>;

Runner add_train(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_report(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_predict(CLI::App& app);
Runner add_download(CLI::App& app);
Runner add_export(CLI::App& app);

// Shared helpers.
// Throws UsageError if the folder that would hold `path` does not exist, IoError if it takes no
// new file. Removes the temporaries that a killed earlier write of `path` left, and returns
// their paths for the command to mention.
std::vector<std::string> check_output_path(const std::string& flag, const std::string& path);
// "97.94% ± 0.14"
std::string format_accuracy(double accuracy, double standard_error);
bool stdout_is_terminal();
// --threads of train, eval, predict and report: 1 to ThreadPool::kMaxThreads (more would be cut
// to it), checked by CLI11 while parsing, so that 0, a negative or an absurd count is a usage
// error before any file is read. Left out, the option keeps 0: all cores.
CLI::Option* add_threads_option(CLI::App& app, int& threads);

}  // namespace nanomlp::cli
