#include "nanomlp/app/report.hpp"

#include <openssl/evp.h>
#include <stb/stb_image_write.h>  // declarations only: Debian's libstb.so holds the implementation

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/json_input.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/train/metrics.hpp"

namespace nanomlp {
namespace {

using Json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Text helpers

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return std::isnan(v) ? "NaN" : (v > 0 ? "∞" : "−∞");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string percent(double fraction, int decimals = 2) {
  return fixed(fraction * 100.0, decimals) + "%";
}

std::string general(double v) {
  if (!std::isfinite(v)) return fixed(v, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

std::string now_local() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", &tm);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Images: 28x28 grey PNG, base64 data URI

std::string base64(const std::vector<unsigned char>& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) |
                            std::uint32_t{bytes[i + 2]};
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<unsigned char>*>(context);
  const auto* p = static_cast<const unsigned char*>(data);
  out->insert(out->end(), p, p + size);
}

std::string png_data_uri(const std::uint8_t* pixels) {
  std::vector<unsigned char> png;
  const int ok =
      stbi_write_png_to_func(append_bytes, &png, static_cast<int>(kImageCols),
                             static_cast<int>(kImageRows), 1, pixels, static_cast<int>(kImageCols));
  if (ok == 0 || png.empty()) return {};
  return "data:image/png;base64," + base64(png);
}

// ---------------------------------------------------------------------------------------------
// Charts: inline SVG line charts with axes, ticks, a legend and one polyline per series

struct Series {
  std::string name;                               // legend text
  std::string key;                                // CSS class suffix: train, val, test
  std::string color;                              // stroke and marker fill
  std::string dash;                               // stroke-dasharray, empty for solid
  char marker = 'o';                              // 'o' circle, 's' square, 'd' diamond
  std::vector<std::pair<double, double>> points;  // (epoch, value); gaps split the polyline
  std::vector<bool> breaks;                       // breaks[i]: a gap before points[i]
};

double nice_step(double raw) {
  if (!(raw > 0) || !std::isfinite(raw)) return 1.0;
  const double e = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / e;
  const double nice = f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 2.5 ? 2.5 : f <= 5.0 ? 5.0 : 10.0;
  return nice * e;
}

// Decimals needed to print multiples of `step` exactly.
int decimals_for(double step) {
  for (int d = 0; d < 6; ++d) {
    const double scaled = step * std::pow(10.0, d);
    if (std::fabs(scaled - std::round(scaled)) < 1e-6 * std::max(1.0, scaled)) return d;
  }
  return 6;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string marker_svg(char marker, double x, double y, const std::string& color,
                       const std::string& tooltip) {
  std::string m;
  const std::string tip = tooltip.empty() ? "" : "<title>" + escape(tooltip) + "</title>";
  const std::string style = "fill=\"" + color + "\" stroke=\"#fff\" stroke-width=\"1\"";
  if (marker == 's') {
    m = "<rect class=\"pt\" x=\"" + num(x - 3.5) + "\" y=\"" + num(y - 3.5) +
        "\" width=\"7\" height=\"7\" " + style + ">" + tip + "</rect>";
  } else if (marker == 'd') {
    m = "<polygon class=\"pt\" points=\"" + num(x) + "," + num(y - 4.8) + " " + num(x + 4.8) + "," +
        num(y) + " " + num(x) + "," + num(y + 4.8) + " " + num(x - 4.8) + "," + num(y) + "\" " +
        style + ">" + tip + "</polygon>";
  } else {
    m = "<circle class=\"pt\" cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"3.8\" " + style +
        ">" + tip + "</circle>";
  }
  return m;
}

// Chart geometry in SVG user units: the whole image, and the plot area inside its margins (room
// for the legend above, the tick labels and axis labels left and below).
constexpr double kChartWidth = 560, kChartHeight = 340;
constexpr double kPlotLeft = 74, kPlotRight = kChartWidth - 18;
constexpr double kPlotTop = 46, kPlotBottom = kChartHeight - 48;

// The extremes of the finite values of a chart's series.
struct DataRange {
  double xmin = 0, xmax = 0, ymin = 0, ymax = 0;
};

std::optional<DataRange> finite_range(const std::vector<Series>& series) {
  std::optional<DataRange> r;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      if (!r) r = DataRange{x, x, y, y};
      r->xmin = std::min(r->xmin, x);
      r->xmax = std::max(r->xmax, x);
      r->ymin = std::min(r->ymin, y);
      r->ymax = std::max(r->ymax, y);
    }
  }
  return r;
}

// The window of values a chart shows, its tick spacing, and where a value lands in the plot.
struct ChartAxes {
  double x0 = 0, x1 = 1, xstep = 1;
  double y0 = 0, y1 = 1, ystep = 1;

  double px(double x) const { return kPlotLeft + (x - x0) / (x1 - x0) * (kPlotRight - kPlotLeft); }
  double py(double y) const {
    return kPlotBottom - (y - y0) / (y1 - y0) * (kPlotBottom - kPlotTop);
  }
};

// X: epochs, integer ticks. Y: nice range, percentages clamped to [0, 1], losses to >= 0.
ChartAxes chart_axes(const DataRange& r, bool as_percent) {
  ChartAxes a;
  const double xrange = r.xmax - r.xmin;
  const double xpad = xrange > 0 ? std::max(0.25, xrange * 0.04) : 0.5;
  a.x0 = r.xmin - xpad;
  a.x1 = r.xmax + xpad;
  a.xstep = std::max(1.0, nice_step(std::max(1.0, xrange) / 8.0));
  double lo = r.ymin, hi = r.ymax;
  if (hi - lo < 1e-12) {
    const double pad = std::max(std::fabs(hi) * 0.05, as_percent ? 0.01 : 0.05);
    lo -= pad;
    hi += pad;
  }
  a.ystep = nice_step((hi - lo) / 5.0);
  a.y0 = std::floor(lo / a.ystep + 1e-9) * a.ystep;
  a.y1 = std::ceil(hi / a.ystep - 1e-9) * a.ystep;
  if (r.ymin >= 0) a.y0 = std::max(a.y0, 0.0);
  if (as_percent && r.ymax <= 1.0) a.y1 = std::min(a.y1, 1.0);
  if (a.y1 - a.y0 < a.ystep) a.y1 = a.y0 + a.ystep;
  return a;
}

void write_chart_start(std::ostream& o, const std::string& id, const std::string& title) {
  o << "<svg class=\"chart\" id=\"" << id << "\" viewBox=\"0 0 " << kChartWidth << " "
    << kChartHeight << "\" role=\"img\" aria-labelledby=\"" << id
    << "-title\" preserveAspectRatio=\"xMidYMid meet\">"
    << "<title id=\"" << id << "-title\">" << escape(title) << "</title>";
  o << "<rect x=\"" << kPlotLeft << "\" y=\"" << kPlotTop << "\" width=\"" << kPlotRight - kPlotLeft
    << "\" height=\"" << kPlotBottom - kPlotTop << "\" class=\"plot-bg\"/>";
}

// Horizontal grid lines and the y ticks with their labels, one per multiple of ystep.
void write_y_grid_and_ticks(std::ostream& o, const ChartAxes& a, bool as_percent) {
  const int ydec = decimals_for(as_percent ? a.ystep * 100.0 : a.ystep);
  o << "<g class=\"grid\">";
  for (double v = a.y0; v <= a.y1 + a.ystep * 1e-6; v += a.ystep) {
    const double y = a.py(v);
    o << "<line x1=\"" << kPlotLeft << "\" x2=\"" << kPlotRight << "\" y1=\"" << num(y)
      << "\" y2=\"" << num(y) << "\"/>";
  }
  o << "</g>";
  o << "<g class=\"ticks y\">";
  for (double v = a.y0; v <= a.y1 + a.ystep * 1e-6; v += a.ystep) {
    const double y = a.py(v);
    o << "<line x1=\"" << kPlotLeft - 5 << "\" x2=\"" << kPlotLeft << "\" y1=\"" << num(y)
      << "\" y2=\"" << num(y) << "\"/><text x=\"" << kPlotLeft - 8 << "\" y=\"" << num(y + 4)
      << "\" text-anchor=\"end\">"
      << (as_percent ? fixed(v * 100.0, ydec) + "%" : fixed(std::fabs(v) < 1e-12 ? 0.0 : v, ydec))
      << "</text>";
  }
  o << "</g>";
}

// Epochs are 1-based: ticks at 0 or below, within the padding left of the first one, are left out.
void write_x_ticks(std::ostream& o, const ChartAxes& a) {
  o << "<g class=\"ticks x\">";
  for (double e = std::ceil(a.x0 / a.xstep) * a.xstep; e <= a.x1 + 1e-9; e += a.xstep) {
    if (e < 0.5) continue;
    const double x = a.px(e);
    o << "<line x1=\"" << num(x) << "\" x2=\"" << num(x) << "\" y1=\"" << kPlotBottom << "\" y2=\""
      << kPlotBottom + 5 << "\"/><text x=\"" << num(x) << "\" y=\"" << kPlotBottom + 19
      << "\" text-anchor=\"middle\">" << fixed(e, 0) << "</text>";
  }
  o << "</g>";
}

void write_axes(std::ostream& o, const std::string& y_label) {
  o << "<path class=\"axis\" d=\"M" << kPlotLeft << "," << kPlotTop << "V" << kPlotBottom << "H"
    << kPlotRight << "\"/>";
  o << "<text class=\"axis-label\" x=\"" << (kPlotLeft + kPlotRight) / 2 << "\" y=\""
    << kChartHeight - 8 << "\" text-anchor=\"middle\">epoch</text>";
  o << "<text class=\"axis-label\" transform=\"translate(18," << (kPlotTop + kPlotBottom) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape(y_label) << "</text>";
}

std::string dash_attribute(const Series& s) {
  return s.dash.empty() ? "" : " stroke-dasharray=\"" + s.dash + "\"";
}

// One polyline per run of points without a gap, then the points with tooltips.
void write_series(std::ostream& o, const Series& s, const ChartAxes& a, bool as_percent) {
  o << "<g class=\"series series-" << s.key << "\">";
  std::string pts;
  auto flush = [&] {
    if (pts.empty()) return;
    o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2.2\""
      << " stroke-linejoin=\"round\" stroke-linecap=\"round\"" << dash_attribute(s) << " points=\""
      << pts << "\"/>";
    pts.clear();
  };
  for (std::size_t i = 0; i < s.points.size(); ++i) {
    if (i < s.breaks.size() && s.breaks[i]) flush();
    if (!pts.empty()) pts += ' ';
    pts += num(a.px(s.points[i].first)) + "," + num(a.py(s.points[i].second));
  }
  flush();
  for (const auto& [x, y] : s.points) {
    const std::string value = as_percent ? percent(y) : fixed(y, 4);
    o << marker_svg(s.marker, a.px(x), a.py(y), s.color,
                    s.name + ", epoch " + fixed(x, 0) + ": " + value);
  }
  o << "</g>";
}

// Above the plot, left to right; each entry's width estimated from its name's length.
void write_legend(std::ostream& o, const std::vector<Series>& series) {
  o << "<g class=\"legend\">";
  double lx = kPlotLeft;
  for (const Series& s : series) {
    if (s.points.empty()) continue;
    const double ly = 22;
    o << "<line x1=\"" << num(lx) << "\" x2=\"" << num(lx + 26) << "\" y1=\"" << ly << "\" y2=\""
      << ly << "\" stroke=\"" << s.color << "\" stroke-width=\"2.2\"" << dash_attribute(s) << "/>";
    o << marker_svg(s.marker, lx + 13, ly, s.color, "");
    o << "<text x=\"" << num(lx + 33) << "\" y=\"" << ly + 4 << "\">" << escape(s.name)
      << "</text>";
    lx += 33 + 7.2 * static_cast<double>(s.name.size()) + 22;
  }
  o << "</g>";
}

// `as_percent`: values are fractions shown as percentages on the axis and in tooltips.
std::string svg_chart(const std::string& id, const std::string& title, const std::string& y_label,
                      const std::vector<Series>& series, bool as_percent) {
  std::ostringstream o;
  write_chart_start(o, id, title);
  const std::optional<DataRange> range = finite_range(series);
  if (!range) {
    o << "<text class=\"empty\" x=\"" << (kPlotLeft + kPlotRight) / 2 << "\" y=\""
      << (kPlotTop + kPlotBottom) / 2
      << "\" text-anchor=\"middle\">no per-epoch values recorded</text></svg>";
    return o.str();
  }
  const ChartAxes axes = chart_axes(*range, as_percent);
  write_y_grid_and_ticks(o, axes, as_percent);
  write_x_ticks(o, axes);
  write_axes(o, y_label);
  for (const Series& s : series) {
    if (!s.points.empty()) write_series(o, s, axes, as_percent);
  }
  write_legend(o, series);
  o << "</svg>";
  return o.str();
}

// ---------------------------------------------------------------------------------------------
// Data extraction

std::vector<EpochRecord> epochs_of(const Json& metrics) {
  std::vector<EpochRecord> out;
  if (!metrics.is_object() || !metrics.contains("epochs") || !metrics["epochs"].is_array()) {
    return out;
  }
  for (const auto& e : metrics["epochs"]) {
    try {
      out.push_back(e.get<EpochRecord>());
    } catch (const nlohmann::json::exception&) {
      // Not a record: skipped (read_metrics_json rejects such files up front).
    }
  }
  return out;
}

const Json* find_path(const Json& j, std::initializer_list<const char*> keys) {
  const Json* cur = &j;
  for (const char* k : keys) {
    if (!cur->is_object() || !cur->contains(k)) return nullptr;
    cur = &(*cur)[k];
  }
  return cur;
}

std::optional<double> number_at(const Json& j, std::initializer_list<const char*> keys) {
  const Json* v = find_path(j, keys);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::string duration(double seconds) {
  if (seconds < 120) return fixed(seconds, 2) + " s";
  const auto total = static_cast<long long>(std::llround(seconds));
  return std::to_string(total / 60) + " min " + std::to_string(total % 60) + " s";
}

std::string json_value_text(const Json& v) {
  if (v.is_null()) return "—";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number()) return general(v.get<double>());
  if (v.is_array()) {
    bool scalars = true;
    for (const auto& e : v) scalars = scalars && !e.is_structured();
    if (!scalars) return v.dump(-1, ' ', false, Json::error_handler_t::replace);
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ", ") + json_value_text(e);
    return out.empty() ? "(none)" : out;
  }
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void flatten(const Json& j, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>& rows) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it.value().is_object()) {
      flatten(it.value(), key, rows);
    } else {
      rows.emplace_back(key, json_value_text(it.value()));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sections

constexpr const char* kStyle = R"CSS(
:root {
  --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --soft: #f8fafc; --accent: #1d4ed8;
  --bad: #b91c1c; --good: #047857;
}
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  margin: 0; background: #f3f4f6; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        "DejaVu Sans", sans-serif;
}
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 40px; }
header.top { margin-bottom: 18px; }
h1 { font-size: 28px; line-height: 1.2; margin: 0 0 6px; letter-spacing: -0.01em; }
h2 { font-size: 19px; margin: 0 0 4px; }
h3 { font-size: 15px; margin: 0 0 8px; color: var(--muted); font-weight: 600; }
p.note { color: var(--muted); font-size: 13.5px; margin: 0 0 14px; }
.meta { display: flex; flex-wrap: wrap; gap: 6px 22px; color: var(--muted); font-size: 14px;
        margin: 0; padding: 0; list-style: none; }
.meta b { color: var(--ink); font-weight: 600; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
                           monospace; font-size: 0.92em; }
section.card { background: #fff; border: 1px solid var(--line); border-radius: 10px;
               padding: 20px 22px; margin: 0 0 18px; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
         margin: 0 0 18px; }
.stat { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
.stat .label { color: var(--muted); font-size: 12.5px; text-transform: uppercase;
               letter-spacing: .04em; }
.stat .value { font-size: 24px; font-weight: 650; line-height: 1.25;
               font-variant-numeric: tabular-nums; }
.stat .sub { color: var(--muted); font-size: 12.5px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 18px; }
figure { margin: 0; }
svg.chart { width: 100%; height: auto; display: block; font-size: 12px; fill: var(--ink); }
svg.chart .plot-bg { fill: #fcfcfd; }
svg.chart .grid line { stroke: #eceef2; stroke-width: 1; }
svg.chart .ticks line, svg.chart .axis { stroke: #9ca3af; stroke-width: 1; fill: none; }
svg.chart .ticks text { fill: var(--muted); font-variant-numeric: tabular-nums; }
svg.chart .axis-label { fill: var(--muted); font-size: 12.5px; }
svg.chart .legend text { font-size: 12.5px; }
svg.chart .empty { fill: var(--muted); font-style: italic; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.data { width: 100%; font-size: 14px; }
table.data th, table.data td { padding: 5px 10px; border-bottom: 1px solid var(--line);
                               text-align: right; }
table.data th:first-child, table.data td:first-child { text-align: left; }
table.data thead th { color: var(--muted); font-weight: 600; font-size: 12.5px;
                      text-transform: uppercase; letter-spacing: .03em;
                      border-bottom: 2px solid var(--line); }
table.data tr.avg td { font-weight: 600; border-top: 2px solid var(--line); }
table.kv { width: 100%; font-size: 13.5px; }
table.kv th, table.kv td { padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line);
                           vertical-align: top; text-align: left; }
table.kv th { font-weight: 500; color: var(--muted); white-space: nowrap; width: 1%; }
table.kv td { word-break: break-word; }
.two { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 24px; }
.scroll { overflow-x: auto; }
table.heatmap { margin: 4px auto 6px; font-size: 13px; }
table.heatmap th, table.heatmap td { padding: 0; text-align: center; }
table.heatmap td.cell { width: 62px; height: 40px; min-width: 48px; border: 1px solid #fff;
                        font-weight: 600; }
table.heatmap td.cell.zero { color: #c2c8d0; font-weight: 400; }
table.heatmap thead th { font-weight: 600; padding: 4px 4px 6px; vertical-align: bottom;
                         max-width: 70px; font-size: 12px; line-height: 1.2; }
table.heatmap tbody th { text-align: right; padding: 0 10px 0 4px; font-weight: 600;
                         font-size: 12px; white-space: nowrap; }
table.heatmap .total { color: var(--muted); font-weight: 400; padding: 0 8px; font-size: 12px; }
table.heatmap th.corner { color: var(--muted); font-weight: 500; text-align: right; }
table.heatmap th.corner span { white-space: nowrap; font-size: 11.5px; }
.heat-legend { display: flex; flex-wrap: wrap; justify-content: center; gap: 8px 28px;
               margin: 0 0 10px; }
.scale { display: inline-flex; align-items: center; gap: 6px; color: var(--muted);
         font-size: 12.5px; }
.scale small { font-size: 11px; }
.scale i { display: inline-block; width: 110px; height: 10px; border-radius: 2px;
           border: 1px solid var(--line); }
.bar { position: relative; display: inline-block; width: 90px; height: 8px; background: #eef2f7;
       border-radius: 4px; vertical-align: middle; margin-left: 8px; overflow: hidden; }
.bar i { position: absolute; left: 0; top: 0; bottom: 0; background: var(--accent);
         border-radius: 4px; }
.grid-mis { display: grid; grid-template-columns: repeat(auto-fill, minmax(124px, 1fr));
            gap: 12px; }
.mis { border: 1px solid var(--line); border-radius: 8px; padding: 8px; text-align: center;
       background: var(--soft); break-inside: avoid; }
.mis img { width: 84px; height: 84px; image-rendering: pixelated; display: block;
           margin: 0 auto 6px; border-radius: 3px; background: #000; }
.mis figcaption { font-size: 12.5px; line-height: 1.35; }
.mis .t { color: var(--good); }
.mis .p { color: var(--bad); }
.mis .c { color: var(--muted); font-variant-numeric: tabular-nums; }
.mis .idx { color: #9ca3af; font-size: 11px; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; margin-top: 8px; }
@media print {
  body { background: #fff; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  section.card, .stat { box-shadow: none; border-color: #d1d5db; }
  section.card { break-inside: avoid; page-break-inside: avoid; }
  section.card.long { break-inside: auto; page-break-inside: auto; }
  .charts { grid-template-columns: 1fr 1fr; }
  .grid-mis { grid-template-columns: repeat(6, 1fr); }
  .scroll { overflow: visible; }
  @page { size: A4; margin: 12mm; }
}
)CSS";

// Records errors and, once the page is parsed, marks it rendered (checked by the browser test).
constexpr const char* kScript = R"JS(
(function () {
  var errors = [];
  function note() { if (document.body) document.body.setAttribute('data-errors', errors.join(' | ')); }
  window.addEventListener('error', function (e) { errors.push(String(e.message || e)); note(); });
  document.addEventListener('DOMContentLoaded', function () {
    var b = document.body;
    b.setAttribute('data-charts', String(document.querySelectorAll('svg.chart').length));
    b.setAttribute('data-images', String(document.querySelectorAll('.mis img').length));
    if (errors.length) note(); else b.setAttribute('data-rendered', 'ok');
  });
})();
)JS";

std::string stat_card(const std::string& label, const std::string& value, const std::string& sub) {
  return "<div class=\"stat\"><div class=\"label\">" + escape(label) +
         "</div><div class=\"value\">" + escape(value) + "</div>" +
         (sub.empty() ? "" : "<div class=\"sub\">" + escape(sub) + "</div>") + "</div>";
}

// By t in [0, 1]: white to deep blue (#1e3a8a) for correct predictions, white to deep red
// (#991b1b) for errors.
std::string heat_colour(double t, bool error = false) {
  t = std::clamp(t, 0.0, 1.0);
  const double a[3] = {255, 255, 255};
  const double m[3] = {error ? 252.0 : 96.0, error ? 165.0 : 165.0, error ? 165.0 : 250.0};
  const double b[3] = {error ? 153.0 : 30.0, error ? 27.0 : 58.0, error ? 27.0 : 138.0};
  double c[3];
  for (int i = 0; i < 3; ++i) {
    c[i] = t < 0.5 ? a[i] + (m[i] - a[i]) * (t / 0.5) : m[i] + (b[i] - m[i]) * ((t - 0.5) / 0.5);
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::lround(c[0])),
                static_cast<int>(std::lround(c[1])), static_cast<int>(std::lround(c[2])));
  return buf;
}

std::string curves_section(const std::vector<EpochRecord>& epochs, const ReportInput& in,
                           const Json& metrics) {
  Series tl{"training", "train", "#2563eb", "", 'o', {}, {}};
  Series vl{"validation", "val", "#d97706", "7 4", 's', {}, {}};
  Series sl{"test", "test", "#059669", "2 4", 'd', {}, {}};
  Series ta = tl, va = vl, sa = sl;
  auto add = [](Series& s, double x, const std::optional<double>& v, bool& gap) {
    if (!v || !std::isfinite(*v)) {
      gap = !s.points.empty();
      return;
    }
    s.points.emplace_back(x, *v);
    s.breaks.push_back(gap);
    gap = false;
  };
  bool g[6] = {false, false, false, false, false, false};
  for (const EpochRecord& r : epochs) {
    const auto x = static_cast<double>(r.epoch);
    add(tl, x, r.train_loss, g[0]);
    add(ta, x, r.train_accuracy, g[1]);
    add(vl, x, r.val_loss, g[2]);
    add(va, x, r.val_accuracy, g[3]);
    add(sl, x, r.test_loss, g[4]);
    add(sa, x, r.test_accuracy, g[5]);
  }
  // Test measured only at the end (with a validation split): one point at the kept epoch.
  if (sa.points.empty() && !epochs.empty()) {
    std::optional<double> acc = number_at(metrics, {"final", "test_accuracy"});
    std::optional<double> loss = number_at(metrics, {"final", "test_loss"});
    if (in.test.count > 0) {
      acc = in.test.accuracy;
      loss = in.test.loss;
    }
    const auto best = number_at(metrics, {"final", "best_epoch"});
    const double x = best && *best > 0 ? *best : static_cast<double>(epochs.back().epoch);
    for (Series* s : {&sl, &sa}) s->name = "test (final)";
    if (acc) add(sa, x, acc, g[5]);
    if (loss) add(sl, x, loss, g[4]);
  }
  std::ostringstream o;
  o << "<section class=\"card\" id=\"curves\"><h2>Training curves</h2>"
    << "<p class=\"note\">Per epoch. Training values are running averages over the epoch's "
       "mini-batches; validation and test values are measured after the epoch.</p>";
  o << "<div class=\"charts\"><figure>"
    << "<h3>Loss (cross-entropy)</h3>"
    << svg_chart("chart-loss", "Loss per epoch", "loss", {tl, vl, sl}, false)
    << "</figure><figure><h3>Accuracy</h3>"
    << svg_chart("chart-accuracy", "Accuracy per epoch", "accuracy", {ta, va, sa}, true)
    << "</figure></div></section>";
  return o.str();
}

std::string confusion_section(const std::vector<std::vector<std::size_t>>& cm,
                              const std::vector<std::string>& names) {
  const std::size_t K = cm.size();
  std::ostringstream o;
  o << "<section class=\"card\" id=\"confusion\"><h2>Confusion matrix</h2>"
    << "<p class=\"note\">Test set. Rows: true class; columns: predicted class. Cells show "
       "counts; the colour is the cell's share of its row (the images of the true class), on a "
       "square-root scale: blue for correct predictions, red for errors.</p>";
  auto scale = [](const char* label, bool error) {
    return std::string("<span class=\"scale\">") + label +
           " <small>0%</small><i style=\"background:linear-gradient(90deg," +
           heat_colour(0, error) + "," + heat_colour(0.5, error) + "," + heat_colour(1, error) +
           ")\"></i><small>100%</small></span>";
  };
  o << "<div class=\"heat-legend\">" << scale("correct", false) << scale("errors", true)
    << "</div>";
  o << "<div class=\"scroll\"><table class=\"heatmap\"><thead><tr><th class=\"corner\">"
       "<span>predicted →</span><br><span>true ↓</span></th>";
  for (std::size_t p = 0; p < K; ++p) o << "<th scope=\"col\">" << escape(names[p]) << "</th>";
  o << "<th class=\"total\">total</th></tr></thead><tbody>";
  for (std::size_t t = 0; t < K; ++t) {
    std::size_t row = 0;
    for (std::size_t v : cm[t]) row += v;
    o << "<tr><th scope=\"row\">" << escape(names[t]) << "</th>";
    for (std::size_t p = 0; p < K; ++p) {
      const std::size_t v = p < cm[t].size() ? cm[t][p] : 0;
      const double share = row > 0 ? static_cast<double>(v) / static_cast<double>(row) : 0.0;
      const double shade = std::sqrt(share);
      o << "<td class=\"cell" << (t == p ? " diag" : "") << (v == 0 ? " zero" : "")
        << "\" style=\"background:" << heat_colour(shade, t != p)
        << ";color:" << (shade > 0.62 ? "#ffffff" : "#111827") << "\" title=\"true "
        << escape(names[t]) << ", predicted " << escape(names[p]) << ": " << v << " ("
        << percent(share, 1) << " of the row)\">" << v << "</td>";
    }
    o << "<td class=\"total\">" << row << "</td></tr>";
  }
  o << "</tbody></table></div></section>";
  return o.str();
}

std::string per_class_section(const std::vector<std::vector<std::size_t>>& cm,
                              const std::vector<std::string>& names) {
  const std::size_t K = cm.size();
  std::vector<std::size_t> col(K, 0), row(K, 0);
  std::size_t total = 0, correct = 0;
  for (std::size_t t = 0; t < K; ++t) {
    for (std::size_t p = 0; p < K && p < cm[t].size(); ++p) {
      row[t] += cm[t][p];
      col[p] += cm[t][p];
      total += cm[t][p];
      if (t == p) correct += cm[t][p];
    }
  }
  auto cell = [](std::optional<double> v, bool bar) {
    if (!v) return std::string("<td>—</td>");
    std::string s = "<td>" + fixed(*v, 4);
    if (bar)
      s += "<span class=\"bar\"><i style=\"width:" + fixed(*v * 100.0, 1) + "%\"></i></span>";
    return s + "</td>";
  };
  double sum_p = 0, sum_r = 0, sum_f = 0;
  bool undefined = false;
  std::ostringstream body;
  for (std::size_t k = 0; k < K; ++k) {
    const std::size_t tp = k < cm[k].size() ? cm[k][k] : 0;
    std::optional<double> p, r, f;
    if (col[k] > 0) p = static_cast<double>(tp) / static_cast<double>(col[k]);
    if (row[k] > 0) r = static_cast<double>(tp) / static_cast<double>(row[k]);
    if (p && r) f = (*p + *r) > 0 ? 2 * *p * *r / (*p + *r) : 0.0;
    undefined = undefined || !p || !r;
    sum_p += p.value_or(0);
    sum_r += r.value_or(0);
    sum_f += f.value_or(0);
    body << "<tr><td>" << escape(names[k]) << "</td>" << cell(p, false) << cell(r, false)
         << cell(f, true) << "<td>" << row[k] << "</td></tr>";
  }
  const double kk = K > 0 ? static_cast<double>(K) : 1.0;
  std::ostringstream o;
  o << "<section class=\"card\" id=\"per-class\"><h2>Per-class precision, recall and F1</h2>"
    << "<p class=\"note\">Test set. Precision: correct among the images predicted as the class; "
       "recall: correct among the images of the class; F1: their harmonic mean. Macro average: "
       "the unweighted mean over classes"
    << (undefined ? " (a value that is undefined, shown as —, counts as 0)" : "") << ".</p>";
  o << "<div class=\"scroll\"><table class=\"data\"><thead><tr><th>class</th><th>precision</th>"
       "<th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>"
    << body.str();
  o << "<tr class=\"avg\"><td>macro average</td>" << cell(sum_p / kk, false)
    << cell(sum_r / kk, false) << cell(sum_f / kk, true) << "<td>" << total << "</td></tr>";
  o << "<tr><td>accuracy</td><td></td><td></td>"
    << cell(total > 0
                ? std::optional<double>(static_cast<double>(correct) / static_cast<double>(total))
                : std::nullopt,
            false)
    << "<td>" << total << "</td></tr>";
  o << "</tbody></table></div></section>";
  return o.str();
}

std::string misclassified_section(const ReportInput& in, const std::vector<std::string>& names) {
  const EvalResult& r = in.test;
  const Dataset* d = in.test_images;
  std::ostringstream o;
  o << "<section class=\"card\" id=\"misclassified\"><h2>Most confident mistakes</h2>";
  if (d == nullptr || d->count != r.count || r.predictions.size() != r.count ||
      d->labels.size() < r.count || d->images.size() < r.count * kImagePixels) {
    o << "<p class=\"note\">Test images not available.</p></section>";
    return o.str();
  }
  const std::size_t K = names.size();
  const bool have_probs = K > 0 && r.probabilities.size() == r.count * K;
  std::vector<std::pair<float, std::size_t>> wrong;
  for (std::size_t i = 0; i < r.count; ++i) {
    const std::size_t pred = r.predictions[i];
    if (pred == d->labels[i]) continue;
    const float conf = have_probs && pred < K ? r.probabilities[i * K + pred] : 0.0f;
    wrong.emplace_back(conf, i);
  }
  std::stable_sort(wrong.begin(), wrong.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  const std::size_t shown = std::min(wrong.size(), in.max_misclassified);
  o << "<p class=\"note\">" << wrong.size() << " of " << r.count
    << " test images are misclassified. ";
  if (shown > 0) {
    o << (have_probs ? "These are the " + std::to_string(shown) +
                           " the network was most confident about, with the probability it gave "
                           "its (wrong) prediction."
                     : "The first " + std::to_string(shown) + " (probabilities not recorded).");
  }
  o << "</p>";
  if (shown == 0) {
    o << "</section>";
    return o.str();
  }
  o << "<div class=\"grid-mis\">";
  for (std::size_t j = 0; j < shown; ++j) {
    const std::size_t i = wrong[j].second;
    const std::size_t t = d->labels[i], p = r.predictions[i];
    const std::string tn = t < K ? names[t] : std::to_string(t);
    const std::string pn = p < K ? names[p] : std::to_string(p);
    o << "<figure class=\"mis\"><img src=\"" << png_data_uri(d->image(i)) << "\" width=\"28\" "
      << "height=\"28\" alt=\""
      << escape("test image " + std::to_string(i) + ": true " + tn + ", predicted " + pn)
      << "\"><figcaption><div class=\"t\">true <b>" << escape(tn) << "</b></div>"
      << "<div class=\"p\">predicted <b>" << escape(pn) << "</b></div>";
    if (have_probs) {
      o << "<div class=\"c\">" << percent(static_cast<double>(wrong[j].first), 1)
        << " confident</div>";
    }
    o << "<div class=\"idx\">#" << i << "</div></figcaption></figure>";
  }
  o << "</div></section>";
  return o.str();
}

std::string settings_section(const Json& metrics, const std::vector<EpochRecord>& epochs,
                             const ReportInput& in) {
  std::vector<std::pair<std::string, std::string>> settings;
  if (const Json* s = find_path(metrics, {"settings"}); s != nullptr && s->is_object()) {
    flatten(*s, "", settings);
  }
  std::vector<std::pair<std::string, std::string>> fin;
  if (const Json* f = find_path(metrics, {"final"}); f != nullptr && f->is_object()) {
    const auto se = number_at(metrics, {"final", "test_standard_error"});
    for (auto it = f->begin(); it != f->end(); ++it) {
      const std::string& k = it.key();
      const Json& v = it.value();
      if (k == "confusion") continue;
      std::string text = json_value_text(v);
      if (v.is_number()) {
        const double x = v.get<double>();
        if (k == "test_accuracy") {
          text = percent(x) + (se ? " ± " + fixed(*se * 100.0, 2) : "");
        } else if (k == "test_standard_error") {
          text = fixed(x * 100.0, 2) + " percentage points";
        } else if (k.size() > 8 && k.compare(k.size() - 8, 8, "_seconds") == 0) {
          text = duration(x);
        } else if (k == "test_loss") {
          text = fixed(x, 4);
        }
      }
      fin.emplace_back(k, text);
    }
  }
  if (!epochs.empty()) {
    double sps = 0, secs = 0;
    for (const auto& e : epochs) {
      sps += e.samples_per_second;
      secs += e.seconds;
    }
    fin.emplace_back("epochs_run", std::to_string(epochs.size()));
    fin.emplace_back("mean_epoch_seconds", duration(secs / static_cast<double>(epochs.size())));
    fin.emplace_back("mean_samples_per_second",
                     with_thousands(static_cast<std::size_t>(
                         std::llround(sps / static_cast<double>(epochs.size())))));
  }
  if (in.test.count > 0) {
    fin.emplace_back("report_test_accuracy", percent(in.test.accuracy) + " (" +
                                                 std::to_string(in.test.count) +
                                                 " images, evaluated for this report)");
  }
  auto table = [](const std::vector<std::pair<std::string, std::string>>& rows) {
    if (rows.empty()) return std::string("<p class=\"note\">Not recorded.</p>");
    std::string s = "<table class=\"kv\"><tbody>";
    for (const auto& [k, v] : rows) {
      s += "<tr><th><code>" + escape(k) + "</code></th><td>" + escape(v) + "</td></tr>";
    }
    return s + "</tbody></table>";
  };
  std::ostringstream o;
  o << "<section class=\"card\" id=\"settings\"><h2>Settings and timings</h2>"
    << "<p class=\"note\">From the metrics file of the training run.</p><div class=\"two\">"
    << "<div><h3>Settings</h3>" << table(settings) << "</div><div><h3>Result and timings</h3>"
    << table(fin) << "</div></div></section>";
  return o.str();
}

std::string epochs_section(const std::vector<EpochRecord>& epochs) {
  if (epochs.empty()) return {};
  bool val = false, test = false;
  for (const auto& e : epochs) {
    val = val || e.val_loss || e.val_accuracy;
    test = test || e.test_loss || e.test_accuracy;
  }
  auto opt4 = [](const std::optional<double>& v) { return v ? fixed(*v, 4) : std::string("—"); };
  auto optp = [](const std::optional<double>& v) { return v ? percent(*v) : std::string("—"); };
  std::ostringstream o;
  o << "<section class=\"card long\" id=\"epochs\"><h2>Per-epoch metrics</h2><div "
       "class=\"scroll\"><table class=\"data\"><thead><tr><th>epoch</th><th>lr</th>"
       "<th>train loss</th><th>train acc</th>";
  if (val) o << "<th>val loss</th><th>val acc</th>";
  if (test) o << "<th>test loss</th><th>test acc</th>";
  o << "<th>seconds</th><th>samples/s</th></tr></thead><tbody>";
  for (const auto& e : epochs) {
    o << "<tr><td>" << e.epoch << "</td><td>" << general(e.lr) << "</td><td>"
      << fixed(e.train_loss, 4) << "</td><td>" << percent(e.train_accuracy) << "</td>";
    if (val) o << "<td>" << opt4(e.val_loss) << "</td><td>" << optp(e.val_accuracy) << "</td>";
    if (test) o << "<td>" << opt4(e.test_loss) << "</td><td>" << optp(e.test_accuracy) << "</td>";
    o << "<td>" << fixed(e.seconds, 2) << "</td><td>"
      << with_thousands(static_cast<std::size_t>(std::llround(std::max(0.0, e.samples_per_second))))
      << "</td></tr>";
  }
  o << "</tbody></table></div></section>";
  return o.str();
}

// The confusion matrix: from the evaluation, else from the metrics file.
std::vector<std::vector<std::size_t>> confusion_of(const ReportInput& in) {
  std::vector<std::vector<std::size_t>> cm = in.test.confusion;
  if (cm.empty()) {
    if (const Json* c = find_path(in.metrics, {"final", "confusion"});
        c != nullptr && c->is_array()) {
      try {
        cm = c->get<std::vector<std::vector<std::size_t>>>();
      } catch (const nlohmann::json::exception&) {
        cm.clear();
      }
    }
  }
  return cm;
}

// The dataset named by the caller, else by the metrics' settings, else by the architecture.
std::string dataset_of(const ReportInput& in) {
  if (!in.dataset.empty()) return in.dataset;
  if (const Json* d = find_path(in.metrics, {"settings", "dataset"});
      d != nullptr && d->is_string()) {
    return d->get<std::string>();
  }
  return in.arch.dataset;
}

// Up to <body><main>. The policy lets the page load nothing: everything is inline or a data URI.
std::string page_head(const std::string& title, const std::string& dataset) {
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
    << "<meta name=\"generator\" content=\"nanomlp " << kReportVersion << "\">"
    << "<title>" << escape(title) << " — " << escape(dataset) << "</title>"
    << "<style>" << kStyle << "</style><script>" << kScript << "</script></head>\n<body><main>";
  return o.str();
}

std::string page_header(const ReportInput& in, const std::string& dataset,
                        const std::string& date) {
  std::ostringstream o;
  o << "<header class=\"top\"><h1>" << escape(in.title) << "</h1><ul class=\"meta\">"
    << "<li>dataset <b>" << escape(dataset) << "</b></li>";
  if (!in.model_path.empty()) {
    o << "<li>model <b class=\"mono\">" << escape(in.model_path) << "</b></li>";
  }
  o << "<li>network <b>" << escape(in.arch.describe()) << "</b></li>"
    << "<li>generated <b>" << escape(date) << "</b></li>"
    << "<li>nanomlp <b>" << kReportVersion << "</b></li></ul></header>\n";
  return o.str();
}

// Headline numbers: the report's own evaluation if any, else the metrics file.
std::string headline_cards(const ReportInput& in, const std::vector<EpochRecord>& epochs) {
  const Json& metrics = in.metrics;
  std::optional<double> acc = number_at(metrics, {"final", "test_accuracy"});
  std::optional<double> loss = number_at(metrics, {"final", "test_loss"});
  std::optional<double> se = number_at(metrics, {"final", "test_standard_error"});
  if (in.test.count > 0) {
    acc = in.test.accuracy;
    loss = in.test.loss;
    se = in.test.standard_error;
  }
  const auto train_seconds = number_at(metrics, {"final", "train_seconds"});
  const auto best_epoch = number_at(metrics, {"final", "best_epoch"});
  const Json* stopped = find_path(metrics, {"final", "stopped_early"});

  std::ostringstream o;
  o << "<div class=\"cards\">"
    << stat_card("Test accuracy", acc ? percent(*acc) : "—",
                 se ? "± " + fixed(*se * 100.0, 2) + " (standard error)" : "")
    << stat_card("Test loss", loss ? fixed(*loss, 4) : "—", "mean cross-entropy")
    << stat_card("Epochs", std::to_string(epochs.size()),
                 stopped != nullptr && stopped->is_boolean() && stopped->get<bool>()
                     ? "stopped early; kept epoch " + fixed(best_epoch.value_or(0), 0)
                     : (best_epoch && *best_epoch > 0 ? "kept epoch " + fixed(*best_epoch, 0) : ""))
    << stat_card("Training time", train_seconds ? duration(*train_seconds) : "—",
                 epochs.empty() ? "" : "epoch loop incl. evaluation")
    << stat_card("Parameters", with_thousands(Network<float>(in.arch).num_params()),
                 std::to_string(in.arch.hidden.size()) + " hidden layer" +
                     (in.arch.hidden.size() == 1 ? "" : "s"))
    << "</div>\n";
  return o.str();
}

}  // namespace

std::string render_report_html(const ReportInput& in) {
  const std::vector<EpochRecord> epochs = epochs_of(in.metrics);
  const std::vector<std::vector<std::size_t>> cm = confusion_of(in);
  const std::string dataset = dataset_of(in);
  const std::size_t K = !cm.empty() ? cm.size() : in.arch.num_classes;
  const std::vector<std::string> names = class_labels(dataset, K);
  const std::string date = in.generated_at.empty() ? now_local() : in.generated_at;

  std::ostringstream o;
  o << page_head(in.title, dataset) << page_header(in, dataset, date) << headline_cards(in, epochs);
  o << curves_section(epochs, in, in.metrics) << "\n";
  if (!cm.empty()) {
    o << confusion_section(cm, names) << "\n" << per_class_section(cm, names) << "\n";
  } else {
    o << "<section class=\"card\" id=\"confusion\"><h2>Confusion matrix</h2><p class=\"note\">"
         "Not available.</p></section>\n";
  }
  o << misclassified_section(in, names) << "\n";
  o << settings_section(in.metrics, epochs, in) << "\n";
  o << epochs_section(epochs) << "\n";
  o << "<footer>Generated by nanomlp " << kReportVersion << " on " << escape(date)
    << ". This file is self-contained: it loads nothing from the network.</footer>";
  o << "</main></body></html>\n";
  return o.str();
}

void write_report(const std::string& path, const ReportInput& input) {
  write_file_atomic(path, render_report_html(input));
}

ReportInput make_report_input(Network<float>& net, const Dataset& test,
                              nlohmann::ordered_json metrics, const std::string& model_path,
                              const std::string& dataset) {
  ReportInput in;
  in.metrics = std::move(metrics);
  in.model_path = model_path;
  in.arch = net.architecture();
  in.dataset = dataset.empty() ? in.arch.dataset : dataset;
  const auto input = plan_input(in.arch, test);
  in.test = evaluate(net, test, nullptr, /*keep_probabilities=*/true, input.get());
  in.test_images = &test;
  return in;
}

nlohmann::ordered_json read_metrics_json(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw IoError("cannot read metrics file " + path + ": " + std::strerror(errno));
  }
  const std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  Json j;
  try {
    j = parse_untrusted_json<Json>(text);
  } catch (const JsonInputError& e) {
    throw DataError(one_line("metrics file " + path + " is not valid JSON: " + e.what()));
  }
  if (!j.is_object() || !j.contains("epochs") || !j["epochs"].is_array()) {
    throw DataError("metrics file " + path +
                    ": expected the --metrics-json document of nanomlp train (an object with an "
                    "\"epochs\" array)");
  }
  for (std::size_t i = 0; i < j["epochs"].size(); ++i) {
    try {
      (void)j["epochs"][i].get<EpochRecord>();
    } catch (const nlohmann::json::exception& e) {
      throw DataError(one_line("metrics file " + path + ": epochs[" + std::to_string(i) +
                               "] is not an epoch record: " + e.what()));
    }
  }
  return j;
}

namespace {

// "784-16-10, relu" for an architecture entry, or what it is when it is not one.
std::string describe_architecture(const nlohmann::json& arch) {
  try {
    return Architecture::from_json(arch.dump(), "").describe();
  } catch (const std::exception&) {
    return describe_json(arch);
  }
}

// What differs between the architecture the metrics recorded and the model's: the networks'
// descriptions, or else the keys whose values differ (dataset, normalisation).
std::string architecture_difference(const nlohmann::json& recorded, const nlohmann::json& model) {
  const std::string was = describe_architecture(recorded), is = describe_architecture(model);
  if (was != is) {
    return "architecture differs: the metrics were written for " + was + " (model has " + is + ")";
  }
  std::set<std::string> keys;
  for (const auto& item : recorded.items()) keys.insert(item.key());
  for (const auto& item : model.items()) keys.insert(item.key());
  std::string out;
  for (const std::string& key : keys) {
    if (recorded.contains(key) && model.contains(key) && recorded[key] == model[key]) continue;
    const auto text = [&key](const nlohmann::json& arch) {
      return arch.contains(key) ? printable(arch[key].dump(), 80) : std::string("nothing");
    };
    out += (out.empty() ? "" : "; ") + key + ": the metrics have " + text(recorded) +
           ", the model has " + text(model);
  }
  return "architecture differs (" + is + ") in " + out;
}

bool is_sha256_hex(const Json& v) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

std::string weights_sha256(const SafeTensors& st) {
  const auto free_ctx = [](EVP_MD_CTX* ctx) { EVP_MD_CTX_free(ctx); };
  const std::unique_ptr<EVP_MD_CTX, decltype(free_ctx)> ctx(EVP_MD_CTX_new(), free_ctx);
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  for (const TensorEntry& t : st.tensors) {
    ok = ok && (t.data.empty() || EVP_DigestUpdate(ctx.get(), t.data.data(), t.data.size()) == 1);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  ok = ok && EVP_DigestFinal_ex(ctx.get(), digest, &length) == 1;
  if (!ok) throw Error("cannot compute the SHA-256 of the model's weights: OpenSSL failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0x0f];
  }
  return hex;
}

nlohmann::ordered_json metrics_model_entry(const SafeTensors& model) {
  const auto arch = model.metadata.find("architecture");
  if (arch == model.metadata.end()) {
    throw std::logic_error("metrics_model_entry: the model's __metadata__ has no architecture");
  }
  Json entry;
  entry["architecture"] = parse_untrusted_json<Json>(arch->second);
  entry["weights_sha256"] = weights_sha256(model);
  return entry;
}

std::string check_metrics_model(const nlohmann::ordered_json& metrics,
                                const std::string& metrics_path, const SafeTensors& model,
                                const std::string& model_path) {
  if (!metrics.contains("model")) {
    return "metrics file " + metrics_path +
           " records no architecture or weights hash (written by an older nanomlp), so it cannot "
           "be checked against model file " +
           model_path;
  }
  const Json& recorded = metrics["model"];
  if (!recorded.is_object() || !recorded.contains("architecture") ||
      !recorded["architecture"].is_object() || !recorded.contains("weights_sha256") ||
      !is_sha256_hex(recorded["weights_sha256"])) {
    throw DataError("metrics file " + metrics_path +
                    ": \"model\" should be an object with \"architecture\" (an object) and "
                    "\"weights_sha256\" (64 lowercase hex digits), found " +
                    describe_json(nlohmann::json::parse(recorded.dump())));
  }
  const Json actual = metrics_model_entry(model);
  const std::string prefix =
      "metrics file " + metrics_path + " does not match model file " + model_path + ": ";
  // Compared as nlohmann::json, whose objects are unordered: keys in another order still match.
  const auto recorded_arch = nlohmann::json::parse(recorded["architecture"].dump());
  const auto model_arch = nlohmann::json::parse(actual["architecture"].dump());
  if (recorded_arch != model_arch) {
    throw DataError(prefix + architecture_difference(recorded_arch, model_arch));
  }
  const std::string& was = recorded["weights_sha256"].get_ref<const std::string&>();
  const std::string& is = actual["weights_sha256"].get_ref<const std::string&>();
  if (was != is) {
    throw DataError(prefix + "weights differ: the metrics were written for another model (hash " +
                    was + ", model has " + is + ")");
  }
  return {};
}

}  // namespace nanomlp
