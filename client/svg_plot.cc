#include "client/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace backprop::client {
namespace {

constexpr double kPanelWidth = 480;
constexpr double kPanelHeight = 360;
constexpr double kTitleHeight = 36;
constexpr double kLeft = 70, kRight = 20, kTop = 34, kBottom = 50;

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

std::string TickLabel(double v, double step, bool percent) {
  if (percent) v *= 100, step *= 100;
  const int decimals =
      step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f%s", std::clamp(decimals, 0, 8), v,
                percent ? "%" : "");
  return buf;
}

void DrawPanel(const PlotPanel& panel, double x0, double y0,
               std::ostringstream& svg) {
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  double ymin = xmin, ymax = -xmin;
  for (const PlotSeries& s : panel.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax == xmin) xmin -= 0.5, xmax += 0.5;
  if (ymax == ymin) ymin -= 0.5, ymax += 0.5;
  const std::vector<double> xticks = NiceTicks(xmin, xmax, 6);
  const std::vector<double> yticks = NiceTicks(ymin, ymax, 6);
  xmin = std::min(xmin, xticks.front());
  xmax = std::max(xmax, xticks.back());
  ymin = std::min(ymin, yticks.front());
  ymax = std::max(ymax, yticks.back());

  const double left = x0 + kLeft, right = x0 + kPanelWidth - kRight;
  const double top = y0 + kTop, bottom = y0 + kPanelHeight - kBottom;
  auto px = [&](double x) {
    return left + (x - xmin) / (xmax - xmin) * (right - left);
  };
  auto py = [&](double y) {
    return bottom - (y - ymin) / (ymax - ymin) * (bottom - top);
  };

  svg << "<text x=\"" << Num((left + right) / 2) << "\" y=\"" << Num(y0 + 20)
      << "\" text-anchor=\"middle\" font-size=\"15\" "
      << "font-weight=\"bold\">" << Escape(panel.title) << "</text>\n";
  // Grid and ticks.
  for (double t : yticks) {
    svg << "<line x1=\"" << Num(left) << "\" y1=\"" << Num(py(t)) << "\" x2=\""
        << Num(right) << "\" y2=\"" << Num(py(t)) << "\" stroke=\"#e0e0e0\"/>\n"
        << "<text x=\"" << Num(left - 6) << "\" y=\"" << Num(py(t) + 4)
        << "\" text-anchor=\"end\" font-size=\"11\">"
        << TickLabel(t, yticks.size() > 1 ? yticks[1] - yticks[0] : 1,
                     panel.y_percent)
        << "</text>\n";
  }
  for (double t : xticks) {
    svg << "<line x1=\"" << Num(px(t)) << "\" y1=\"" << Num(bottom)
        << "\" x2=\"" << Num(px(t)) << "\" y2=\"" << Num(bottom + 5)
        << "\" stroke=\"#333\"/>\n"
        << "<text x=\"" << Num(px(t)) << "\" y=\"" << Num(bottom + 18)
        << "\" text-anchor=\"middle\" font-size=\"11\">"
        << TickLabel(t, xticks.size() > 1 ? xticks[1] - xticks[0] : 1, false)
        << "</text>\n";
  }
  // Axes and labels.
  svg << "<polyline points=\"" << Num(left) << "," << Num(top) << " "
      << Num(left) << "," << Num(bottom) << " " << Num(right) << ","
      << Num(bottom) << "\" fill=\"none\" stroke=\"#333\"/>\n"
      << "<text x=\"" << Num((left + right) / 2) << "\" y=\""
      << Num(bottom + 38) << "\" text-anchor=\"middle\" font-size=\"12\">"
      << Escape(panel.x_label) << "</text>\n"
      << "<text transform=\"translate(" << Num(x0 + 16) << ","
      << Num((top + bottom) / 2) << ") rotate(-90)\" text-anchor=\"middle\" "
      << "font-size=\"12\">" << Escape(panel.y_label) << "</text>\n";
  // Lines, points and the legend.
  // The legend goes in the right-hand corner the curves leave free: at the
  // bottom when they end in the upper half (rising accuracy), else at the
  // top (falling cost).
  double end_sum = 0;
  int ends = 0;
  for (const PlotSeries& s : panel.series) {
    for (size_t i = std::min(s.x.size(), s.y.size()); i-- > 0;) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        end_sum += py(s.y[i]);
        ++ends;
        break;
      }
    }
  }
  const bool legend_at_bottom = ends > 0 && end_sum / ends < (top + bottom) / 2;
  int drawn = 0;
  for (const PlotSeries& s : panel.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        ++drawn;
        break;
      }
    }
  }
  const double legend_top =
      legend_at_bottom ? bottom - 10 - 18 * drawn : top + 10;
  int legend_row = 0;
  for (const PlotSeries& s : panel.series) {
    std::string points;
    std::ostringstream dots;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      points += Num(px(s.x[i])) + "," + Num(py(s.y[i])) + " ";
      dots << "<circle cx=\"" << Num(px(s.x[i])) << "\" cy=\""
           << Num(py(s.y[i])) << "\" r=\"3\" fill=\"" << s.color << "\"/>\n";
    }
    if (points.empty()) continue;
    svg << "<polyline points=\"" << points << "\" fill=\"none\" stroke=\""
        << s.color << "\" stroke-width=\"2\"/>\n"
        << dots.str();
    const double ly =
        legend_top + 18 * legend_row++ + (legend_at_bottom ? 9 : 0);
    svg << "<line x1=\"" << Num(right - 150) << "\" y1=\"" << Num(ly)
        << "\" x2=\"" << Num(right - 126) << "\" y2=\"" << Num(ly)
        << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"/>\n"
        << "<text x=\"" << Num(right - 120) << "\" y=\"" << Num(ly + 4)
        << "\" font-size=\"12\">" << Escape(s.name) << "</text>\n";
  }
}

}  // namespace

std::vector<double> NiceTicks(double lo, double hi, int count) {
  if (!(hi > lo) || count < 2) return {lo};
  const double raw = (hi - lo) / (count - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  const double first = std::floor(lo / step) * step;
  for (double t = first; t <= hi + step * 0.999 && ticks.size() < 100;
       t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi) break;
  }
  return ticks;
}

std::string RenderSvg(const std::string& title,
                      const std::vector<PlotPanel>& panels) {
  const double width = kPanelWidth * std::max<size_t>(1, panels.size());
  const double height = kTitleHeight + kPanelHeight;
  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << Num(width)
      << "\" height=\"" << Num(height) << "\" viewBox=\"0 0 " << Num(width)
      << " " << Num(height) << "\" font-family=\"sans-serif\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << Num(width / 2) << "\" y=\"24\" "
      << "text-anchor=\"middle\" font-size=\"17\">" << Escape(title)
      << "</text>\n";
  for (size_t i = 0; i < panels.size(); ++i) {
    DrawPanel(panels[i], kPanelWidth * i, kTitleHeight, svg);
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace backprop::client
