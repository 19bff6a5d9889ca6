// The HTML training report: one self-contained file (inline CSS, SVG charts, base64 PNG images,
// no external resources) with the loss and accuracy curves per epoch, the confusion matrix as a
// heat map, per-class precision / recall / F1, the most confidently misclassified test images,
// and the settings and timings of the run. Written by `nanomlp train --report FILE` and
// `nanomlp report`.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/core/version.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

inline constexpr const char* kReportVersion = kVersion;  // the nanomlp version shown in reports

struct ReportInput {
  // The --metrics-json document of `nanomlp train`: {settings, epochs, final}. Any part may be
  // missing (null: no curves, no settings table); the report says what is not available.
  nlohmann::ordered_json metrics;
  std::string model_path;  // shown in the header; may be empty
  Architecture arch;       // shown in the header (describe(), parameter count)
  // The test-set evaluation: confusion, predictions and, for the misclassified grid,
  // probabilities (evaluate(..., keep_probabilities = true)). An empty confusion falls back to
  // metrics["final"]["confusion"].
  EvalResult test;
  // The images `test` was computed on, row i <-> prediction i (null: no image grid).
  const Dataset* test_images = nullptr;
  std::string dataset;  // "mnist" or "fashion-mnist": class names and the header
  std::string title = "nanomlp training report";
  std::string generated_at;  // shown as the date; empty: the current local time
  std::size_t max_misclassified = 24;
};

// The whole HTML document. Every piece of text from the inputs is HTML-escaped.
std::string render_report_html(const ReportInput& input);

// Renders and writes atomically (temp file + rename); IoError for an unwritable path.
void write_report(const std::string& path, const ReportInput& input);

// Evaluates `net` on `test` with probabilities and fills a ReportInput (arch and dataset taken
// from the network's architecture unless `dataset` is given).
ReportInput make_report_input(Network<float>& net, const Dataset& test,
                              nlohmann::ordered_json metrics, const std::string& model_path,
                              const std::string& dataset = "");

// Reads a --metrics-json document. IoError naming the file when it cannot be read, DataError
// naming it when it is not valid JSON or not an object with an "epochs" array of epoch records.
// Messages are one line.
nlohmann::ordered_json read_metrics_json(const std::string& path);

// SHA-256 (OpenSSL), in lowercase hex, of every tensor's raw little-endian bytes (parameters,
// batch-norm buffers and counters) concatenated in file order, the state_dict order. For a file
// nanomlp wrote that is its data section, the bytes after the header: `tail -c +$((9 + N)) FILE
// | sha256sum`, N the header length, prints the same. Names and shapes are left out: the
// architecture, recorded beside the hash, fixes them.
std::string weights_sha256(const SafeTensors& st);

// The "model" entry of a --metrics-json document: {"architecture": the model file's
// __metadata__ architecture, parsed; "weights_sha256": weights_sha256(model)}, taken from the
// tensors written to --out, so that `nanomlp report` can refuse the metrics of another model.
nlohmann::ordered_json metrics_model_entry(const SafeTensors& model);

// Checks that `metrics` was written for `model`, recomputing the "model" entry from it. Throws
// DataError, one line naming both files, when the architecture or the weights differ or the
// entry is malformed. Returns "" when they match, and a one-line warning when the metrics have
// no entry (written before nanomlp recorded one), so that they cannot be checked.
std::string check_metrics_model(const nlohmann::ordered_json& metrics,
                                const std::string& metrics_path, const SafeTensors& model,
                                const std::string& model_path);

}  // namespace nanomlp
