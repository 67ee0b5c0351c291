// Learning curves as a self-contained SVG (no scripts, no external files):
// one panel per quantity (cost, accuracy), one line per series, with axes,
// ticks and a legend.
#ifndef BACKPROP_CLIENT_SVG_PLOT_H_
#define BACKPROP_CLIENT_SVG_PLOT_H_

#include <string>
#include <vector>

namespace backprop::client {

struct PlotSeries {
  std::string name;   // legend text
  std::string color;  // any SVG colour, e.g. "#1f77b4"
  std::vector<double> x;
  std::vector<double> y;  // same length as x; non-finite points are skipped
};

struct PlotPanel {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool y_percent = false;  // y in [0, 1] shown as percent ticks
  std::vector<PlotSeries> series;
};

// Panels are laid out side by side under the title.
std::string RenderSvg(const std::string& title,
                      const std::vector<PlotPanel>& panels);

// Tick positions covering [lo, hi] at a 1-2-5 step, about `count` of them.
std::vector<double> NiceTicks(double lo, double hi, int count);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_SVG_PLOT_H_
