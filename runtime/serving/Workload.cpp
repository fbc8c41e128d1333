//===- Workload.cpp - Request arrivals for serving replays ----------------===//

#include "runtime/serving/Workload.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

namespace crosspool::runtime {

namespace {

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
int64_t daysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool parseInt(absl::string_view s, int64_t lo, int64_t hi, int64_t *out) {
  return !s.empty() && std::all_of(s.begin(), s.end(), absl::ascii_isdigit) &&
         absl::SimpleAtoi(s, out) && *out >= lo && *out <= hi;
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]` or plain (non-negative) seconds.
bool parseTimestamp(absl::string_view s, double *seconds) {
  if (absl::SimpleAtod(s, seconds))
    return std::isfinite(*seconds) && *seconds >= 0;
  std::vector<absl::string_view> dt = absl::StrSplit(s, ' ');
  if (dt.size() != 2)
    return false;
  std::vector<absl::string_view> date = absl::StrSplit(dt[0], '-');
  std::vector<absl::string_view> time = absl::StrSplit(dt[1], ':');
  int64_t y, mo, d, h, mi;
  if (date.size() != 3 || time.size() != 3 || !parseInt(date[0], 1, 9999, &y) ||
      !parseInt(date[1], 1, 12, &mo) || !parseInt(date[2], 1, 31, &d) ||
      !parseInt(time[0], 0, 23, &h) || !parseInt(time[1], 0, 59, &mi))
    return false;
  double sec;
  if (time[2].empty() || !absl::ascii_isdigit(time[2][0]) ||
      !absl::SimpleAtod(time[2], &sec) || !(sec >= 0 && sec < 61))
    return false;
  *seconds = double(daysFromCivil(y, mo, d)) * 86400.0 + double(h) * 3600.0 +
             double(mi) * 60.0 + sec;
  return true;
}

} // namespace

absl::StatusOr<std::vector<TraceEntry>> parseTraceCsv(absl::string_view text,
                                                      const std::string &name) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  auto fail = [&](size_t line, const std::string &what) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", line, ": ", what));
  };
  const char *kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens";
  std::vector<TraceEntry> out;
  double first = 0, previous = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = absl::StripSuffix(lines[i], "\r");
    if (i == 0) {
      if (line != kHeader)
        return fail(1, absl::StrCat("expects the header '", kHeader,
                                    "' but got '", line, "'"));
      continue;
    }
    if (line.empty() && i + 1 == lines.size())
      break; // final newline
    std::vector<absl::string_view> f = absl::StrSplit(line, ',');
    if (f.size() != 3)
      return fail(i + 1, absl::StrCat("expects 3 fields but got ", f.size()));
    double t;
    if (!parseTimestamp(f[0], &t))
      return fail(i + 1,
                  absl::StrCat("TIMESTAMP expects 'YYYY-MM-DD HH:MM:SS.f' or "
                               "seconds >= 0 but got '",
                               f[0], "'"));
    int64_t lens[2];
    const char *cols[2] = {"ContextTokens", "GeneratedTokens"};
    for (int c = 0; c < 2; ++c) {
      absl::string_view v = absl::StripAsciiWhitespace(f[c + 1]);
      if (!absl::SimpleAtoi(v, &lens[c]))
        return fail(i + 1,
                    absl::StrCat(cols[c], " expects an integer but got '",
                                 f[c + 1], "'"));
      if (lens[c] < 1)
        return fail(i + 1,
                    absl::StrCat(cols[c], " expects >= 1 but got ", lens[c]));
    }
    if (out.empty())
      first = t;
    else if (t < previous)
      return fail(i + 1, absl::StrCat("timestamps must not go back in time: ",
                                      f[0], " is before the previous row"));
    previous = t;
    out.push_back({t - first, lens[0], lens[1]});
  }
  if (out.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the trace has no requests"));
  return out;
}

absl::StatusOr<std::vector<TraceEntry>> loadTraceCsv(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read trace '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parseTraceCsv(buffer.str(), path);
}

void scaleToRate(std::vector<TraceEntry> &trace, double rate) {
  if (trace.size() < 2 || !(rate > 0))
    return;
  double span = trace.back().arrival - trace.front().arrival;
  if (!(span > 0))
    return;
  // n requests over the span: mean rate (n - 1) / span gaps per second.
  double factor = double(trace.size() - 1) / (rate * span);
  for (TraceEntry &e : trace)
    e.arrival = (e.arrival - trace.front().arrival) * factor;
}

std::vector<int64_t> capLengthsPerModel(std::vector<TraceEntry> &trace,
                                        const std::vector<int> &model,
                                        const std::vector<int64_t> &maxPrompt,
                                        int64_t maxOutput,
                                        int64_t *outputsCut) {
  std::vector<int64_t> cut(maxPrompt.size(), 0);
  *outputsCut = 0;
  for (size_t i = 0; i < trace.size() && i < model.size(); ++i) {
    TraceEntry &e = trace[i];
    int64_t cap = maxPrompt[model[i]];
    if (cap > 0 && e.promptTokens > cap) {
      e.promptTokens = cap;
      ++cut[model[i]];
    }
    if (maxOutput > 0 && e.outputTokens > maxOutput) {
      e.outputTokens = maxOutput;
      ++*outputsCut;
    }
  }
  return cut;
}

std::pair<int64_t, int64_t> capLengths(std::vector<TraceEntry> &trace,
                                       int64_t maxPrompt, int64_t maxOutput) {
  int64_t prompts = 0, outputs = 0;
  for (TraceEntry &e : trace) {
    if (maxPrompt > 0 && e.promptTokens > maxPrompt) {
      e.promptTokens = maxPrompt;
      ++prompts;
    }
    if (maxOutput > 0 && e.outputTokens > maxOutput) {
      e.outputTokens = maxOutput;
      ++outputs;
    }
  }
  return {prompts, outputs};
}

uint64_t WorkloadRng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double WorkloadRng::uniform() {
  return double(next() >> 11) * (1.0 / 9007199254740992.0);
}

int64_t WorkloadRng::uniformInt(int64_t lo, int64_t hi) {
  if (hi <= lo)
    return lo;
  uint64_t span = uint64_t(hi - lo) + 1;
  return lo + int64_t(next() % span);
}

double WorkloadRng::normal() {
  double u1 = 1.0 - uniform(), u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

double WorkloadRng::gamma(double shape, double scale) {
  if (shape < 1.0) {
    // Boost: Gamma(a) = Gamma(a + 1) * U^(1/a).
    double u = 1.0 - uniform();
    return gamma(shape + 1.0, scale) * std::pow(u, 1.0 / shape);
  }
  double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x = normal(), v = 1.0 + c * x;
    if (v <= 0)
      continue;
    v = v * v * v;
    double u = 1.0 - uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v))
      return d * v * scale;
  }
}

std::vector<double> gammaArrivals(int64_t n, double rate, double cv,
                                  uint64_t seed) {
  WorkloadRng rng(seed);
  double shape = 1.0 / (cv * cv), scale = 1.0 / (rate * shape);
  std::vector<double> t;
  double now = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (i > 0)
      now += rng.gamma(shape, scale);
    t.push_back(now);
  }
  return t;
}

absl::StatusOr<Popularity> parsePopularity(absl::string_view text) {
  Popularity p;
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad popularity '", text,
        "' (expects zipf:S with S >= 0, cold:F with 0 < F < 1, or uniform)"));
  };
  if (text == "uniform") {
    p.kind = Popularity::Uniform;
    return p;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2 || !absl::SimpleAtod(parts[1], &p.param))
    return bad();
  if (parts[0] == "zipf" && p.param >= 0 && std::isfinite(p.param))
    p.kind = Popularity::Zipf;
  else if (parts[0] == "cold" && p.param > 0 && p.param < 1)
    p.kind = Popularity::Cold;
  else
    return bad();
  return p;
}

std::vector<double> popularityShares(const Popularity &p, int numModels) {
  std::vector<double> w(numModels, 1.0);
  for (int i = 0; i < numModels; ++i) {
    if (p.kind == Popularity::Zipf)
      w[i] = 1.0 / std::pow(double(i + 1), p.param);
    else if (p.kind == Popularity::Cold)
      w[i] = numModels == 1 ? 1.0
             : i == 0       ? p.param
                            : (1.0 - p.param) / (numModels - 1);
  }
  double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (double &x : w)
    x /= sum;
  return w;
}

std::vector<int> assignModels(int64_t n, const std::vector<double> &shares,
                              uint64_t seed) {
  WorkloadRng rng(seed);
  std::vector<int> out;
  for (int64_t i = 0; i < n; ++i) {
    double u = rng.uniform(), acc = 0;
    int m = static_cast<int>(shares.size()) - 1;
    for (size_t k = 0; k < shares.size(); ++k) {
      acc += shares[k];
      if (u < acc) {
        m = static_cast<int>(k);
        break;
      }
    }
    out.push_back(m);
  }
  return out;
}

std::vector<int32_t> randomPrompt(WorkloadRng &rng, int64_t length,
                                  int64_t vocab) {
  std::vector<int32_t> ids(length);
  for (int32_t &id : ids)
    id = static_cast<int32_t>(rng.uniformInt(0, vocab - 1));
  return ids;
}

} // namespace crosspool::runtime
