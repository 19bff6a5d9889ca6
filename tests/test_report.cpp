// The HTML training report: charts, confusion heat map, per-class metrics, misclassified images,
// settings, escaping and self-containment on synthetic inputs; the page in headless Chromium;
// and the `nanomlp report` subcommand (on real MNIST when available).
#include "nanomlp/app/report.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/train/metrics.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using testing::read_bytes;
using testing::real_data_root;
using testing::run_command;
using testing::run_nanomlp;
using testing::TempDir;

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<unsigned char> base64_decode(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::vector<unsigned char> out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const int v = value(c);
    if (v < 0) return {};
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// The text of the <section id="..."> ... </section>.
std::string section(const std::string& html, const std::string& id) {
  const std::size_t begin = html.find("<section class=\"card");
  std::size_t pos = html.find("id=\"" + id + "\"", begin);
  if (pos == std::string::npos) return {};
  const std::size_t end = html.find("</section>", pos);
  return html.substr(pos, end - pos);
}

// Three epochs with training, validation and test values; a setting holding markup.
Json fake_metrics(std::size_t epochs = 3, bool with_val = true, bool with_test = true) {
  Json j;
  j["settings"] = {{"epochs", epochs},     {"batch_size", 64},
                   {"optimizer", "sgd"},   {"lr", 0.05},
                   {"schedule", "cosine"}, {"note", "<script>alert('x')</script> & more"}};
  j["settings"]["architecture"] = {
      {"input_dim", 784}, {"hidden", {128}}, {"num_classes", 10}, {"activation", "relu"}};
  j["settings"]["dataset"] = "mnist";
  j["epochs"] = Json::array();
  for (std::size_t e = 1; e <= epochs; ++e) {
    EpochRecord r;
    r.epoch = e;
    r.lr = 0.05 / static_cast<double>(e);
    r.train_loss = 0.6 / static_cast<double>(e);
    r.train_accuracy = 1.0 - 0.12 / static_cast<double>(e);
    if (with_val) {
      r.val_loss = 0.5 / static_cast<double>(e) + 0.02;
      r.val_accuracy = 0.985 - 0.1 / static_cast<double>(e);
    }
    if (with_test) {
      r.test_loss = 0.52 / static_cast<double>(e) + 0.03;
      r.test_accuracy = 0.982 - 0.1 / static_cast<double>(e);
    }
    r.seconds = 1.5;
    r.samples_per_second = 40000;
    Json rec = r;
    j["epochs"].push_back(rec);
  }
  j["final"] = {{"test_accuracy", 0.9}, {"test_loss", 0.21},      {"test_standard_error", 0.004},
                {"best_epoch", 0},      {"stopped_early", false}, {"train_seconds", 4.5},
                {"load_seconds", 0.3},  {"total_seconds", 5.1}};
  return j;
}

// 50 synthetic 28x28 images (strokes of different angles), labels i % 10; every seventh
// prediction is wrong, with varying confidence.
struct Synthetic {
  Dataset data;
  EvalResult eval;
};

Synthetic make_synthetic(std::size_t count = 50) {
  constexpr std::size_t K = 10;
  Synthetic s;
  Dataset& d = s.data;
  d.count = count;
  d.images.assign(count * kImagePixels, 0);
  d.labels.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t label = i % K;
    d.labels[i] = static_cast<std::uint8_t>(label);
    const double angle = static_cast<double>(label) * 0.314;
    for (int t = -9; t <= 9; ++t) {
      for (int w = -1; w <= 1; ++w) {
        const int x = 14 + static_cast<int>(std::lround(t * std::cos(angle) - w * std::sin(angle)));
        const int y = 14 + static_cast<int>(std::lround(t * std::sin(angle) + w * std::cos(angle)));
        if (x >= 0 && x < 28 && y >= 0 && y < 28) {
          d.images[i * kImagePixels + static_cast<std::size_t>(y) * 28 +
                   static_cast<std::size_t>(x)] = static_cast<std::uint8_t>(200 + (i * 7) % 56);
        }
      }
    }
  }
  EvalResult& r = s.eval;
  r.count = count;
  r.confusion.assign(K, std::vector<std::size_t>(K, 0));
  r.predictions.resize(count);
  r.probabilities.assign(count * K, 0.0f);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t label = d.labels[i];
    const std::size_t pred = i % 7 == 3 ? (label + 3) % K : label;
    r.predictions[i] = static_cast<std::uint8_t>(pred);
    const float top = 0.4f + 0.5f * static_cast<float>((i * 37) % 50) / 50.0f;
    for (std::size_t k = 0; k < K; ++k) {
      r.probabilities[i * K + k] = k == pred ? top : (1.0f - top) / static_cast<float>(K - 1);
    }
    ++r.confusion[label][pred];
    correct += label == pred ? 1 : 0;
  }
  r.accuracy = static_cast<double>(correct) / static_cast<double>(count);
  r.loss = 0.3;
  r.standard_error = std::sqrt(r.accuracy * (1 - r.accuracy) / static_cast<double>(count));
  return s;
}

ReportInput synthetic_input(const Synthetic& s, Json metrics) {
  ReportInput in;
  in.metrics = std::move(metrics);
  in.model_path = "models/a&b.safetensors";
  in.test = s.eval;
  in.test_images = &s.data;
  in.dataset = "mnist";
  in.generated_at = "2025-01-02 03:04 UTC";
  return in;
}

TEST(Report, ChartsHaveAPolylineForEachSeries) {
  const Synthetic s = make_synthetic();
  const std::string html = render_report_html(synthetic_input(s, fake_metrics()));
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(count_of(html, "<svg class=\"chart\""), 2u);
  EXPECT_NE(html.find("id=\"chart-loss\""), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-accuracy\""), std::string::npos);
  for (const std::string key : {"train", "val", "test"}) {
    // One group per chart, each with one polyline of 3 points and 3 markers.
    EXPECT_EQ(count_of(html, "<g class=\"series series-" + key + "\"><polyline"), 2u) << key;
  }
  EXPECT_EQ(count_of(html, "<polyline"), 6u);
  const std::regex polyline("<polyline[^>]* points=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), polyline);
       it != std::sregex_iterator(); ++it) {
    EXPECT_EQ(count_of((*it)[1].str(), ","), 3u) << (*it)[1].str();
  }
  // Legends, axis labels and ticks.
  EXPECT_NE(html.find(">validation</text>"), std::string::npos);
  EXPECT_NE(html.find(">epoch</text>"), std::string::npos);
  EXPECT_NE(html.find("%</text>"), std::string::npos);  // accuracy ticks in percent
  // Header facts.
  EXPECT_NE(html.find("2025-01-02 03:04 UTC"), std::string::npos);
  EXPECT_NE(html.find(std::string("nanomlp <b>") + kReportVersion), std::string::npos);
  EXPECT_NE(html.find("<b>mnist</b>"), std::string::npos);
}

TEST(Report, HandlesASingleEpochWithoutValidation) {
  const Synthetic s = make_synthetic();
  // One epoch, no validation, test only at the end: a "test (final)" point.
  const std::string html = render_report_html(synthetic_input(s, fake_metrics(1, false, false)));
  EXPECT_EQ(count_of(html, "<svg class=\"chart\""), 2u);
  EXPECT_EQ(html.find("series-val"), std::string::npos);
  EXPECT_EQ(count_of(html, "<g class=\"series series-train\"><polyline"), 2u);
  EXPECT_NE(html.find(">test (final)</text>"), std::string::npos);
  for (const char* bad : {"NaN", "nan,", ">nan<", "inf<", "∞"}) {
    EXPECT_EQ(html.find(bad), std::string::npos) << bad;
  }

  // No metrics at all: still a valid page, saying so.
  ReportInput bare = synthetic_input(s, Json());
  const std::string html2 = render_report_html(bare);
  EXPECT_NE(html2.find("no per-epoch values recorded"), std::string::npos);
  EXPECT_NE(html2.find("</html>"), std::string::npos);
}

TEST(Report, HeatMapShowsTheCounts) {
  const Synthetic s = make_synthetic();
  const std::string html = render_report_html(synthetic_input(s, fake_metrics()));
  const std::string heat = section(html, "confusion");
  ASSERT_FALSE(heat.empty());
  const std::regex cell(
      "<td class=\"cell[^\"]*\" style=\"background:#[0-9a-f]{6};[^\"]*\"[^>]*>(\\d+)</td>");
  std::vector<std::size_t> cells;
  for (auto it = std::sregex_iterator(heat.begin(), heat.end(), cell); it != std::sregex_iterator();
       ++it) {
    cells.push_back(std::stoul((*it)[1].str()));
  }
  std::vector<std::size_t> expected;
  for (const auto& row : s.eval.confusion) expected.insert(expected.end(), row.begin(), row.end());
  EXPECT_EQ(cells, expected);
  // A full row is the darkest blue; errors are red; an empty cell is white.
  EXPECT_NE(heat.find("background:#1e3a8a"), std::string::npos);
  EXPECT_NE(heat.find("<td class=\"cell\" style=\"background:#f"), std::string::npos);
  EXPECT_NE(heat.find("background:#ffffff"), std::string::npos);
}

TEST(Report, PrecisionRecallAndF1OfAHandMadeConfusionMatrix) {
  ReportInput in;
  in.arch.num_classes = 2;
  in.dataset = "mnist";  // 10 names: falls back to "0", "1" for 2 classes
  in.generated_at = "today";
  in.test.confusion = {{8, 2}, {1, 9}};
  const std::string html = render_report_html(in);
  const std::string t = section(html, "per-class");
  ASSERT_FALSE(t.empty());
  // Class 0: precision 8/9, recall 8/10, F1 16/19. Class 1: precision 9/11, recall 9/10,
  // F1 6/7. Macro: (0.8889 + 0.8182) / 2, (0.8 + 0.9) / 2, (0.8421 + 0.8571) / 2.
  EXPECT_NE(t.find("<tr><td>0</td><td>0.8889</td><td>0.8000</td><td>0.8421<"), std::string::npos)
      << t;
  EXPECT_NE(t.find("<tr><td>1</td><td>0.8182</td><td>0.9000</td><td>0.8571<"), std::string::npos);
  EXPECT_NE(t.find("<td>macro average</td><td>0.8535</td><td>0.8500</td><td>0.8496<"),
            std::string::npos);
  EXPECT_NE(t.find("<td>accuracy</td><td></td><td></td><td>0.8500</td><td>20</td>"),
            std::string::npos);
  EXPECT_NE(t.find("<td>10</td></tr>"), std::string::npos);  // support
  // The heat map of the same matrix.
  const std::string heat = section(html, "confusion");
  EXPECT_NE(heat.find(">8</td>"), std::string::npos);
  EXPECT_NE(heat.find(">2</td>"), std::string::npos);
  EXPECT_NE(heat.find(">1</td>"), std::string::npos);
  EXPECT_NE(heat.find(">9</td>"), std::string::npos);

  // A class never predicted: precision undefined, shown as a dash, macro counts it as 0.
  in.test.confusion = {{5, 0}, {5, 0}};
  const std::string t2 = section(render_report_html(in), "per-class");
  EXPECT_NE(t2.find("<tr><td>1</td><td>—</td><td>0.0000</td><td>—</td>"), std::string::npos) << t2;
  EXPECT_NE(t2.find("<td>macro average</td><td>0.2500</td><td>0.5000</td>"), std::string::npos);
}

TEST(Report, MisclassifiedImagesArePngDataUrisMostConfidentFirst) {
  const Synthetic s = make_synthetic();
  const std::string html = render_report_html(synthetic_input(s, fake_metrics()));
  const std::string mis = section(html, "misclassified");
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < s.data.count; ++i) wrong += s.eval.predictions[i] != s.data.labels[i];
  ASSERT_GT(wrong, 0u);
  EXPECT_EQ(count_of(mis, "<figure class=\"mis\">"), std::min<std::size_t>(wrong, 24));
  EXPECT_EQ(count_of(mis, "src=\"data:image/png;base64,"), std::min<std::size_t>(wrong, 24));
  EXPECT_NE(mis.find(std::to_string(wrong) + " of 50 test images are misclassified"),
            std::string::npos);

  // The first image decodes to a 28x28 PNG.
  const std::string prefix = "data:image/png;base64,";
  const std::size_t b = mis.find(prefix) + prefix.size();
  const std::vector<unsigned char> png = base64_decode(mis.substr(b, mis.find('"', b) - b));
  ASSERT_GE(png.size(), 33u);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_TRUE(std::equal(sig, sig + 8, png.begin()));
  EXPECT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  EXPECT_EQ(png[19], 28);  // width, big-endian
  EXPECT_EQ(png[23], 28);  // height

  // Confidences in decreasing order.
  const std::regex conf("<div class=\"c\">([0-9.]+)% confident</div>");
  std::vector<double> values;
  for (auto it = std::sregex_iterator(mis.begin(), mis.end(), conf); it != std::sregex_iterator();
       ++it) {
    values.push_back(std::stod((*it)[1].str()));
  }
  ASSERT_EQ(values.size(), std::min<std::size_t>(wrong, 24));
  EXPECT_TRUE(std::is_sorted(values.rbegin(), values.rend()));
  // Labels: true and predicted class names.
  EXPECT_NE(mis.find("<div class=\"t\">true <b>3</b></div><div class=\"p\">predicted <b>6</b>"),
            std::string::npos);

  // At most max_misclassified.
  ReportInput in = synthetic_input(s, fake_metrics());
  in.max_misclassified = 2;
  EXPECT_EQ(count_of(section(render_report_html(in), "misclassified"), "<figure class=\"mis\">"),
            2u);
}

TEST(Report, IsSelfContainedAndEscapesText) {
  const Synthetic s = make_synthetic();
  ReportInput in = synthetic_input(s, fake_metrics());
  in.title = "Run <b>\"one\"</b>";
  const std::string html = render_report_html(in);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  // Every src is a data URI.
  EXPECT_EQ(count_of(html, "src=\""), count_of(html, "src=\"data:image/png;base64,"));
  // The setting with markup, the model path and the title are escaped.
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"),
            std::string::npos);
  EXPECT_NE(html.find("models/a&amp;b.safetensors"), std::string::npos);
  EXPECT_NE(html.find("<h1>Run &lt;b&gt;&quot;one&quot;&lt;/b&gt;</h1>"), std::string::npos);
  EXPECT_EQ(html.find("<b>\"one\"</b>"), std::string::npos);
  // Exactly one script element: the page's own.
  EXPECT_EQ(count_of(html, "<script>"), 1u);
  // Settings and timings from the metrics file.
  const std::string settings = section(html, "settings");
  EXPECT_NE(settings.find("<code>architecture.hidden</code></th><td>128</td>"), std::string::npos);
  EXPECT_NE(settings.find("<code>optimizer</code></th><td>sgd</td>"), std::string::npos);
  EXPECT_NE(settings.find("<code>train_seconds</code></th><td>4.50 s</td>"), std::string::npos);
  EXPECT_NE(settings.find("<code>test_accuracy</code></th><td>90.00% ± 0.40</td>"),
            std::string::npos);
}

TEST(Report, WriteReportIsAtomicAndReadMetricsJsonReportsErrors) {
  TempDir dir;
  const Synthetic s = make_synthetic();
  const ReportInput in = synthetic_input(s, fake_metrics());
  write_report(dir.file("r.html"), in);
  const auto bytes = read_bytes(dir.file("r.html"));
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), render_report_html(in));
  EXPECT_THROW(write_report(dir.file("missing/r.html"), in), IoError);
  EXPECT_FALSE(fs::exists(dir.file("missing")));

  // read_metrics_json: round trip, then one-line errors naming the file.
  { std::ofstream(dir.file("m.json")) << fake_metrics().dump(2); }
  EXPECT_EQ(read_metrics_json(dir.file("m.json")), fake_metrics());
  auto message = [](const std::string& path) -> std::string {
    try {
      (void)read_metrics_json(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string missing = message(dir.file("nope.json"));
  EXPECT_NE(missing.find(dir.file("nope.json")), std::string::npos) << missing;
  EXPECT_THROW((void)read_metrics_json(dir.file("nope.json")), IoError);
  { std::ofstream(dir.file("bad.json")) << "{\"epochs\": [\n1,\n"; }
  const std::string bad = message(dir.file("bad.json"));
  EXPECT_NE(bad.find(dir.file("bad.json")), std::string::npos) << bad;
  EXPECT_NE(bad.find("not valid JSON"), std::string::npos) << bad;
  EXPECT_EQ(bad.find('\n'), std::string::npos) << bad;
  EXPECT_THROW((void)read_metrics_json(dir.file("bad.json")), DataError);
  { std::ofstream(dir.file("other.json")) << "{\"epochs\": [{\"epoch\": 1}]}"; }
  EXPECT_THROW((void)read_metrics_json(dir.file("other.json")), DataError);
  { std::ofstream(dir.file("array.json")) << "[1, 2]"; }
  EXPECT_THROW((void)read_metrics_json(dir.file("array.json")), DataError);
}

const char* const kChromium = "/usr/bin/chromium";

struct BrowserRun {
  int exit_code = -1;
  std::string dom;                    // the DOM after load (--dump-dom)
  std::vector<std::string> problems;  // console messages and uncaught errors from the page
  std::string log;                    // everything Chromium wrote on stderr
};

// Loads a file in headless Chromium (a fresh profile, no network services, at most 60 s) and
// returns its DOM and what the page wrote to the console. With --enable-logging=stderr every
// console message and uncaught error appears as a line "...:CONSOLE:<line>] "<message>"...";
// the report itself logs nothing, so any such line is a problem.
BrowserRun load_in_chromium(const TempDir& dir, const std::string& html_path,
                            const std::string& tag) {
  const std::string dom_file = dir.file(tag + ".dom"), err_file = dir.file(tag + ".err");
  BrowserRun run;
  // In a subshell: run_command appends its own 2>&1, which must not undo the 2> below.
  run.exit_code =
      run_command(std::string("(timeout -k 5 60 ") + kChromium +
                  " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                  " --disable-background-networking --disable-component-update --disable-sync"
                  " --disable-dev-shm-usage --enable-logging=stderr --v=0 --user-data-dir=" +
                  quote(dir.file(tag + ".profile")) + " --dump-dom " +
                  quote("file://" + html_path) + " > " + quote(dom_file) + " 2> " +
                  quote(err_file) + ")")
          .exit_code;
  const auto dom = read_bytes(dom_file), err = read_bytes(err_file);
  run.dom.assign(dom.begin(), dom.end());
  run.log.assign(err.begin(), err.end());
  std::istringstream lines(run.log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(":CONSOLE") != std::string::npos || line.find("CONSOLE(") != std::string::npos ||
        line.find("Uncaught") != std::string::npos) {
      run.problems.push_back(line);
    }
  }
  return run;
}

// Opens the report in headless Chromium: it must render without console errors (the page's
// script marks the body data-rendered="ok" and records errors in data-errors), show both charts,
// and give a non-trivial screenshot, saved in the test's temp dir and copied next to the nanomlp
// binary as report-screenshot.png. A copy of the page with a failing script checks that errors
// would be caught.
TEST(ReportBrowser, RendersInHeadlessChromium) {
  if (!fs::exists(kChromium)) {
    GTEST_SKIP() << "NOTE: /usr/bin/chromium not found, browser check skipped (install it with "
                    "scripts/setup-deps.sh test, or apt-get install chromium)";
  }
  TempDir dir;
  const Synthetic s = make_synthetic();
  const ReportInput in = synthetic_input(s, fake_metrics(12));
  const std::string report = dir.file("report.html");
  write_report(report, in);

  // 1. The DOM after load, and the console.
  const BrowserRun ok = load_in_chromium(dir, report, "report");
  ASSERT_EQ(ok.exit_code, 0) << ok.log;
  for (const std::string& line : ok.problems) ADD_FAILURE() << "console: " << line;
  EXPECT_NE(ok.dom.find("data-rendered=\"ok\""), std::string::npos) << ok.dom.substr(0, 2000);
  EXPECT_EQ(ok.dom.find("data-errors=\""), std::string::npos);
  EXPECT_NE(ok.dom.find("data-charts=\"2\""), std::string::npos);
  EXPECT_NE(ok.dom.find("data-images=\"7\""), std::string::npos);
  EXPECT_EQ(count_of(ok.dom, "<svg class=\"chart\""), 2u);
  EXPECT_EQ(count_of(ok.dom, "<polyline"), 6u);
  EXPECT_NE(ok.dom.find("<table class=\"heatmap\">"), std::string::npos);

  // The same page with a script error and a blocked remote image: both must be noticed.
  std::string broken = render_report_html(in);
  broken.insert(broken.rfind("</main>"),
                "<img src=\"https://example.invalid/x.png\"><script>undefinedFunction();</script>");
  std::ofstream(dir.file("broken.html")) << broken;
  const BrowserRun bad = load_in_chromium(dir, dir.file("broken.html"), "broken");
  ASSERT_EQ(bad.exit_code, 0) << bad.log;
  EXPECT_GE(bad.problems.size(), 2u) << bad.log;
  EXPECT_NE(bad.dom.find("data-errors=\""), std::string::npos);
  EXPECT_EQ(bad.dom.find("data-rendered=\"ok\""), std::string::npos);

  // 2. A screenshot.
  const std::string shot = dir.file("report.png");
  const auto shot_run = run_command(
      std::string("timeout -k 5 60 ") + kChromium +
      " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
      " --disable-background-networking --disable-component-update --disable-sync"
      " --disable-dev-shm-usage --hide-scrollbars --user-data-dir=" +
      quote(dir.file("shot.profile")) + " --window-size=1280,2000 --screenshot=" + quote(shot) +
      " " + quote("file://" + report));
  ASSERT_EQ(shot_run.exit_code, 0) << shot_run.output;
  ASSERT_TRUE(fs::exists(shot)) << shot_run.output;
  const auto png = read_bytes(shot);
  EXPECT_GT(png.size(), 10u * 1024u);
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(std::string(png.begin() + 1, png.begin() + 4), "PNG");
  const fs::path copy = fs::path(NANOMLP_BINARY).parent_path() / "report-screenshot.png";
  std::error_code ec;
  fs::copy_file(shot, copy, fs::copy_options::overwrite_existing, ec);
  EXPECT_FALSE(ec) << ec.message();
  std::printf("report screenshot: %s\n", copy.string().c_str());
}

// A small model file (random weights) for the CLI error paths, which need no data.
std::string write_small_model(const TempDir& dir) {
  Architecture arch;
  arch.hidden = {8};
  Network<float> net(arch);
  Rng rng(1);
  net.init(rng);
  const std::string path = dir.file("small.safetensors");
  save_model(path, net);
  return path;
}

std::size_t line_count(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(ReportCli, BadInputs) {
  TempDir dir;
  const std::string model = write_small_model(dir);
  { std::ofstream(dir.file("m.json")) << fake_metrics().dump(); }
  // Missing metrics file: exit 1, one line naming it.
  auto r = run_nanomlp("report --model " + quote(model) + " --metrics-json " +
                       quote(dir.file("absent.json")) + " --out " + quote(dir.file("r.html")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(line_count(r.output), 1u) << r.output;
  EXPECT_EQ(r.output.rfind("nanomlp: error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find(dir.file("absent.json")), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("r.html")));

  // Invalid metrics file: exit 1, one line naming it.
  { std::ofstream(dir.file("bad.json")) << "{ not json\n\n"; }
  r = run_nanomlp("report --model " + quote(model) + " --metrics-json " +
                  quote(dir.file("bad.json")) + " --out " + quote(dir.file("r.html")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(line_count(r.output), 1u) << r.output;
  EXPECT_NE(r.output.find(dir.file("bad.json")), std::string::npos) << r.output;

  // Output folder missing: exit 2, one line naming it.
  r = run_nanomlp("report --model " + quote(model) + " --metrics-json " +
                  quote(dir.file("m.json")) + " --out " + quote(dir.file("no/such/r.html")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(line_count(r.output), 1u) << r.output;
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(dir.file("no/such")), std::string::npos) << r.output;

  // Missing model file: exit 1.
  r = run_nanomlp("report --model " + quote(dir.file("none.safetensors")) + " --metrics-json " +
                  quote(dir.file("m.json")) + " --out " + quote(dir.file("r.html")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(line_count(r.output), 1u) << r.output;

  // --metrics-json is required: usage error.
  r = run_nanomlp("report --model " + quote(model));
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST(ReportCli, TrainThenReportOnRealMnist) {
  const std::string root = real_data_root();
  if (root.empty()) GTEST_SKIP() << "NOTE: real MNIST not found (set NANOMLP_DATA)";
  TempDir dir;
  const std::string model = dir.file("m.safetensors"), metrics = dir.file("m.json"),
                    out = dir.file("r.html");
  auto r = run_nanomlp("train --data " + quote(root) +
                       " --epochs 2 --hidden 32 --threads 2 --quiet --out " + quote(model) +
                       " --metrics-json " + quote(metrics));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_nanomlp("report --model " + quote(model) + " --metrics-json " + quote(metrics) +
                  " --data " + quote(root) + " --threads 2 --out " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("report written to"), std::string::npos) << r.output;
  const auto bytes = read_bytes(out);
  const std::string html(bytes.begin(), bytes.end());
  EXPECT_EQ(count_of(html, "<svg class=\"chart\""), 2u);
  EXPECT_EQ(count_of(html, "<g class=\"series series-train\"><polyline"), 2u);
  EXPECT_EQ(count_of(html, "<g class=\"series series-test\"><polyline"), 2u);
  EXPECT_EQ(count_of(section(html, "misclassified"), "<figure class=\"mis\">"), 24u);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // Per-class table with the ten digits and a total support of 10,000.
  EXPECT_NE(section(html, "per-class").find("<td>macro average</td>"), std::string::npos);
  EXPECT_NE(section(html, "per-class").find("<td>10000</td></tr>"), std::string::npos);
  if (const char* keep = std::getenv("NANOMLP_KEEP_REPORT"); keep != nullptr && *keep != '\0') {
    fs::copy_file(out, keep, fs::copy_options::overwrite_existing);
  }
}

}  // namespace
}  // namespace nanomlp
