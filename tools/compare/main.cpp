// pagedkv — the side-by-side comparison tool.
//
//   pagedkv list [--json]
//   pagedkv compare <op>...|--all [--workload W1|W4|W5|W6|W7|W9] [--quick] [--size N] [--variant V]
//                   [--slots random|contiguous] [--json FILE] [--seed N] [--commit SHA]
//                   [--repeats N]
//
// For every workload point of the chosen ops it runs the CPU reference, the naive and the
// optimized CUDA kernels, checks that both kernels agree with the CPU reference under the op's
// rule (bit-exact ops: bit for bit over the whole output; reductions: norm-wise relative error
// within the tolerance), and times them next to a size-matched copy (and a Thrust call where the
// op is a plain scatter), all in the same run. Without a GPU it runs the CPU rows and says why
// the GPU rows were skipped.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <nvtx3/nvToolsExt.h>

#include "copy_kernel.h"
#include "library_rows.h"
#include "neighbour.h"
#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "profile.h"
#include "report.h"
#include "timing.h"

namespace pagedkv::compare {

namespace {

constexpr const char* kUsage = R"(usage:
  pagedkv list [--json]
      The op registry: every op, its family, sources, byte model and workloads.
  pagedkv compare <op>... | --all [options]
      Runs the CPU reference, the naive and the optimized kernels of each op on its standard
      workloads, checks agreement with the CPU reference (bit-exact ops: bit for bit;
      reductions: norm-wise relative error within the tolerance) and prints one table.
options:
  --workload W     only this workload (W1, W2, W3, W4, W5, W6, W7, W9)
  --quick          small sizes only (the default without a GPU, unless --size is given)
  --size N         only points of N tokens / blocks
  --variant V      only this variant (e.g. "NHD bf16", "fp8_e4m3", "H2D", "hidden 4096 bf16")
  --slots S        only this slot pattern (random, contiguous)
  --json FILE      also write the rows as JSON (schema: results/README.md)
  --seed N         seed of the random inputs (default 1)
  --commit SHA     commit recorded in the JSON (default: $PAGEDKV_COMMIT, else git rev-parse HEAD)
  --repeats N      timed repeats per GPU row (default 20, at least 10)
  --device-memory M  behave as a GPU with M of free memory (e.g. 8G, 512M): the rest is held by
                   one allocation for the whole run. A point that does not fit is halved until it
                   does (at most 6 times; the notes say from what to what), else skipped.
  --profile        no timing table: one launch of the naive and the optimized kernel (and the
                   copy kernel, for ops on device memory) per point, each inside an NVTX range
                   "pagedkv"; where Nsight Compute's ncu is on the PATH, each launch runs under
                   it and a table of its metrics is printed. Without --size, the largest point
                   of each variant.
)";

struct Options {
  std::string command;
  bool list_json = false;
  bool all = false;
  std::vector<std::string> ops;
  std::string workload, variant, slots, json_path, commit;
  bool quick = false;
  std::optional<std::int64_t> size;
  std::uint64_t seed = 1;
  int repeats = 20;
  std::optional<std::int64_t> device_memory;  // --device-memory, in bytes
  bool profile = false;
  // "IMPL:INDEX": set by --profile for the copy of the tool it runs under ncu, which launches
  // only that implementation of the INDEX-th profiled point (not in the usage text).
  std::string profile_child;
};

std::int64_t parse_integer(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  PAGEDKV_CHECK(!text.empty() && end && *end == '\0' && value >= 0, flag,
                ": expected a non-negative integer, got \"", text, "\"");
  return value;
}

// "8G", "512M", "1024K" or a byte count, as bytes.
std::int64_t parse_bytes(const std::string& flag, const std::string& text) {
  std::string digits = text;
  std::int64_t unit = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'G': case 'g': unit = std::int64_t{1} << 30; break;
      case 'M': case 'm': unit = std::int64_t{1} << 20; break;
      case 'K': case 'k': unit = std::int64_t{1} << 10; break;
      default: unit = 1;
    }
    if (unit != 1) digits.pop_back();
  }
  char* end = nullptr;
  const long long value = std::strtoll(digits.c_str(), &end, 10);
  PAGEDKV_CHECK(!digits.empty() && end && *end == '\0' && value > 0 &&
                    value <= (std::int64_t{1} << 50) / unit,
                flag, ": expected a size such as 8G, 512M or a byte count, got \"", text, "\"");
  return value * unit;
}

Options parse(int argc, char** argv) {
  Options options;
  PAGEDKV_CHECK(argc >= 2, "expected a command (list or compare)");
  options.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      PAGEDKV_CHECK(i + 1 < argc, arg, ": expected a value");
      return argv[++i];
    };
    if (arg == "--json") {
      if (options.command == "list") {
        options.list_json = true;
      } else {
        options.json_path = value();
      }
    } else if (arg == "--all") {
      options.all = true;
    } else if (arg == "--workload") {
      options.workload = value();
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--size") {
      options.size = parse_integer(arg, value());
    } else if (arg == "--variant") {
      options.variant = value();
    } else if (arg == "--slots") {
      options.slots = value();
    } else if (arg == "--seed") {
      options.seed = static_cast<std::uint64_t>(parse_integer(arg, value()));
    } else if (arg == "--commit") {
      options.commit = value();
    } else if (arg == "--repeats") {
      options.repeats = static_cast<int>(parse_integer(arg, value()));
      PAGEDKV_CHECK(options.repeats >= 10, "--repeats: expected at least 10, got ",
                    options.repeats);
    } else if (arg == "--device-memory") {
      options.device_memory = parse_bytes(arg, value());
    } else if (arg == "--profile") {
      options.profile = true;
    } else if (arg == "--profile-child") {
      options.profile_child = value();
    } else if (!arg.empty() && arg[0] == '-') {
      reject("unknown option \"", arg, "\"");
    } else {
      find_op(arg);  // rejects unknown names with the list of known ones
      options.ops.push_back(arg);
    }
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// pagedkv list

std::string json_string_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json_string(items[i]);
  return out + "]";
}

int run_list(const Options& options) {
  const auto& ops = op_registry();
  if (options.list_json) {
    std::cout << "{\"ops\": [";
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const OpEntry& e = ops[i];
      std::cout << (i ? ",\n  {" : "\n  {") << "\"name\": " << json_string(e.name)
                << ", \"family\": " << json_string(e.family)
                << ", \"role\": " << json_string(e.role)
                << ", \"upstream\": " << json_string(e.upstream)
                << ", \"cpu_source\": " << json_string(e.cpu_source)
                << ", \"naive_source\": " << json_string(e.naive_source)
                << ", \"optimized_source\": " << json_string(e.optimized_source)
                << ", \"byte_model\": " << json_string(e.byte_model)
                << ", \"agreement_rule\": " << json_string(e.agreement_rule)
                << ", \"workloads\": " << json_string_list(e.workloads)
                << ", \"workload_notes\": " << json_string(e.workload_notes)
                << ", \"arguments\": [";
      for (std::size_t j = 0; j < e.arguments.size(); ++j) {
        const ArgInfo& arg = e.arguments[j];
        std::cout << (j ? ", " : "") << "{\"name\": " << json_string(arg.name)
                  << ", \"kind\": " << json_string(kind_name(arg.kind))
                  << ", \"schema_type\": " << json_string(schema_type(arg.kind))
                  << ", \"doc\": " << json_string(arg.doc);
        if (!arg.default_value.empty())
          std::cout << ", \"default\": " << json_string(arg.default_value);
        std::cout << "}";
      }
      std::cout << "]}";
    }
    std::cout << "\n]}\n";
    return 0;
  }
  for (const OpEntry& e : ops) {
    std::cout << e.name << "  (" << e.family << "; workloads";
    for (const auto& w : e.workloads) std::cout << " " << w;
    std::cout << ")\n  " << e.role << "\n"
              << "  cpu:        " << e.cpu_source << "\n"
              << "  naive:      " << e.naive_source << "\n"
              << "  optimized:  " << e.optimized_source << "\n"
              << "  upstream:   " << e.upstream << "\n"
              << "  byte model: " << e.byte_model << "\n"
              << "  agreement:  " << e.agreement_rule << "\n\n";
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Where the run happens

// Everything `command` prints (stdout and, when the command says 2>&1, stderr); `succeeded`,
// when given, receives whether it exited with status 0.
std::string command_all_output(const std::string& command, bool* succeeded = nullptr) {
  std::string out;
  int status = -1;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
    status = pclose(pipe);
  }
  if (succeeded != nullptr) *succeeded = status == 0;
  return out;
}

// The first line a successful command prints, trimmed ("" when it fails).
std::string command_output(const char* command) {
  bool succeeded = false;
  std::string out = command_all_output(command, &succeeded);
  if (!succeeded) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' '))
    out.pop_back();
  const auto newline = out.find('\n');  // one line (the first GPU's driver)
  return newline == std::string::npos ? out : out.substr(0, newline);
}

// `text` as one single-quoted shell word.
std::string shell_word(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// Why no GPU rows can run, or "" when a device is there.
std::string gpu_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device (cudaGetDeviceCount: ") + cudaGetErrorName(status) +
           ", " + cudaGetErrorString(status) + ")";
  }
  if (count == 0) return "no CUDA device found (cudaGetDeviceCount returned 0)";
  return pagedkv::cuda_device_available() ? "" : "no usable CUDA device";
}

RunInfo describe_run(const Options& options, bool gpu, const std::string& reason) {
  RunInfo info;
  info.seed = options.seed;
  info.date = utc_now();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  info.host = host;
  info.commit = options.commit;
  if (info.commit.empty()) {
    if (const char* env = std::getenv("PAGEDKV_COMMIT")) info.commit = env;
  }
  if (info.commit.empty()) info.commit = command_output("git rev-parse HEAD 2>/dev/null");
  if (info.commit.empty()) info.commit = "unknown";
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  info.cuda = "runtime " + version_text(runtime) + ", built with " + version_text(CUDART_VERSION);
  if (!gpu) {
    info.gpu_rows_skipped = reason;
    return info;
  }
  cudaDeviceProp properties{};
  PAGEDKV_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  info.gpu = properties.name;
  info.l2_bytes = properties.l2CacheSize;
  int driver = 0;
  cudaDriverGetVersion(&driver);
  const std::string smi =
      command_output("nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null");
  info.driver =
      (smi.empty() ? std::string("?") : smi) + " (CUDA " + version_text(driver) + " driver API)";
  return info;
}

// ---------------------------------------------------------------------------------------------
// The size-matched copy

// Fills a buffer of any kind with non-zero pseudo-random bytes (a copy's speed does not depend
// on the data, but a constant pattern is never what an op moves).
void fill_pattern(Buffer& buffer, std::uint64_t seed) {
  std::vector<std::uint64_t> pattern(std::min<std::size_t>(buffer.size() / 8 + 1, (8u << 20) / 8));
  for (auto& word : pattern) {
    seed += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = (seed ^ (seed >> 30)) * 0xBF58476D1CE4E5B9ull;
    word = (z ^ (z >> 27)) | 0x0101010101010101ull;
  }
  const std::size_t chunk = pattern.size() * 8;
  for (std::size_t at = 0; at < buffer.size(); at += chunk) {
    const std::size_t n = std::min(chunk, buffer.size() - at);
    if (buffer.memory() == Memory::device) {
      PAGEDKV_CUDA_CHECK(cudaMemcpy(buffer.data() + at, pattern.data(), n, cudaMemcpyHostToDevice));
    } else {
      std::memcpy(buffer.data() + at, pattern.data(), n);
    }
  }
}

// Buffers for `sets` copies of `bytes` bytes of the given kind.
struct CopyBaseline {
  Buffer src, dst;
  std::size_t bytes = 0;
  int sets = 1;
  cudaMemcpyKind kind = cudaMemcpyDeviceToDevice;

  CopyBaseline(CopyKind copy, std::int64_t bytes_moved, std::int64_t l2_bytes) {
    // A D2D copy of N bytes reads N and writes N: it matches an op that moves 2N bytes.
    bytes = static_cast<std::size_t>(copy == CopyKind::device_to_device ? bytes_moved / 2
                                                                        : bytes_moved);
    sets = buffer_sets_for(bytes_moved, l2_bytes);
    kind = copy == CopyKind::device_to_device ? cudaMemcpyDeviceToDevice
           : copy == CopyKind::host_to_device ? cudaMemcpyHostToDevice
                                              : cudaMemcpyDeviceToHost;
    src = Buffer(copy == CopyKind::host_to_device ? Memory::pinned : Memory::device, bytes * sets);
    dst = Buffer(copy == CopyKind::device_to_host ? Memory::pinned : Memory::device, bytes * sets);
    fill_pattern(src, 0xC0FFEEull);
  }
  void launch(int set, cudaStream_t stream) const {
    const std::size_t offset = bytes * static_cast<std::size_t>(set);
    PAGEDKV_CUDA_CHECK(
        cudaMemcpyAsync(dst.data() + offset, src.data() + offset, bytes, kind, stream));
  }
  // The same copy by pagedkv's plain copy kernel (device to device only).
  void launch_kernel(int set, cudaStream_t stream) const {
    const std::size_t offset = bytes * static_cast<std::size_t>(set);
    launch_copy_kernel(dst.data() + offset, src.data() + offset, bytes, stream);
  }
};

// Device copy bandwidth (read + write) of one large cudaMemcpyAsync, for the run's header.
double measure_copy_bandwidth(cudaStream_t stream, const GpuTimingOptions& timing) {
  const std::int64_t bytes = std::int64_t{512} << 20;  // 256 MiB copied: 512 MiB moved
  CopyBaseline copy(CopyKind::device_to_device, bytes, 0);
  const Timing t =
      time_gpu([&](int set, cudaStream_t s) { copy.launch(set, s); }, 1, stream, timing);
  return static_cast<double>(bytes) / (t.median_us * 1e3);
}

// ---------------------------------------------------------------------------------------------
// pagedkv compare

Row base_row(const OpEntry& op, const WorkloadPoint& point, const std::string& impl,
             std::int64_t bytes) {
  Row row;
  row.op = op.name;
  row.workload = point.workload;
  row.variant = point.variant;
  row.slots = point.slots;
  row.impl = impl;
  row.size = point.size;
  row.size_unit = point.size_unit;
  row.bytes = bytes;
  return row;
}

void set_time(Row& row, const Timing& timing, int sets) {
  row.median_us = timing.median_us;
  row.gbps = timing.median_us > 0 ? static_cast<double>(row.bytes) / (timing.median_us * 1e3) : 0.0;
  row.method = timing.method;
  row.repeats = timing.repeats;
  row.launches_per_repeat = timing.launches_per_repeat;
  row.buffer_sets = sets;
}

void set_agreement(Row& row, const Agreement& agreement) {
  row.bit_exact = agreement.bit_exact;
  row.max_abs_err = agreement.max_abs_err;
  row.bytes_differing = agreement.bytes_differing;
  if (agreement.is_reduction()) {
    row.rel_err = agreement.rel_err;
    row.tolerance = agreement.tolerance;
  }
  if (agreement.is_ulp_bounded()) {
    row.max_ulp = agreement.max_ulp;
    row.ulp_bound = agreement.ulp_bound;
  }
  row.agrees = agreement.agrees();
}

// Runs one GPU row: agreement check, then timing; a failure becomes the row's error.
void gpu_row(Row& row, const std::function<Agreement()>& check,
             const std::function<void(int, cudaStream_t)>& launch, int sets, cudaStream_t stream,
             const GpuTimingOptions& timing) {
  try {
    if (check) set_agreement(row, check());
    set_time(row, time_gpu(launch, sets, stream, timing), sets);
  } catch (const std::exception& e) {
    row.error = e.what();
  }
}

std::vector<std::string> run_notes(const RunInfo& info, const std::vector<const OpEntry*>& ops,
                                   bool gpu, bool quick, int repeats) {
  std::vector<std::string> notes;
  if (gpu) {
    notes.push_back(
        "naive and optimized rows time launch_<op>() on an already validated plan: argument "
        "validation (for cache writes, the synchronizing slot-range check too) is never inside "
        "the timed region.");
    notes.push_back(
        "GPU timing: warm-up, then CUDA events around CUDA-graph replays of many launches "
        "(falling back to plain launches where a row cannot be captured: method \"stream\"), "
        "median of " +
        std::to_string(repeats) +
        " repeats, per launch. Launches rotate over "
        "buffer sets (up to " +
        std::to_string(kMaxBufferSets) +
        ") so that one replay touches "
        "more than 2 x L2 (" +
        std::to_string(info.l2_bytes.value_or(0) >> 20) +
        " MiB); the "
        "smallest points stay L2-resident and launch-bound: judge them by % of copy, not GB/s.");
    notes.push_back(
        "copy: size-matched baseline measured in the same run. For ops on device memory "
        "(cache writes, norms, D2D swaps) a copy of bytes/2 (read + write = bytes), timed twice: "
        "one cudaMemcpyAsync D2D (row copy) and pagedkv's plain 16-byte copy kernel (row "
        "copy_kernel); the faster of the two is the baseline (cudaMemcpyAsync is ~20 % slower "
        "at some sizes). For H2D / D2H swaps one bulk pinned cudaMemcpyAsync of the same bytes. "
        "% of copy = baseline time / op time at the same byte count (= the ratio of GB/s).");
    notes.push_back(
        "strategy:<name> rows (ops that offer alternatives, OpCase::alternatives()): the "
        "optimized version run with one fixed strategy instead of the one it chooses, checked "
        "and timed like the optimized row. beside_compute:<impl> rows (transfers between host "
        "and device): the same launches issued back to back for about 5 ms while a "
        "compute-bound kernel (register-only FMAs in many short CTAs) keeps every SM busy on "
        "another stream, as a model does while an engine swaps; median of 5 repeats, and "
        "\"neighbour slowed\" = the neighbour's time beside the transfers minus its time "
        "alone, as a % of the transfers' window (target: <= 5 %).");
    notes.push_back(
        "optimized_eager, checked_eager, checked_graph: the bare optimized kernel launched from "
        "its validated plan, and the checked entry point that pagedkv.vllm_ops calls (argument "
        "validation on the host, the index checks deferred: a check kernel on the stream whose "
        "fault makes the op's kernels write nothing), each issued from the host call by call "
        "(method \"stream\": the host's share of a call is timed, as in an eager engine step); "
        "checked_graph replays the checked call from a CUDA graph (a captured decode step; "
        "compare it with the optimized row). Target: checked_eager within 10 % or 3 us of "
        "optimized_eager.");
    notes.push_back(
        "optimized_warm: the optimized kernel on one buffer set launched back to back, so that "
        "a point small enough for L2 reads its inputs from L2, as a decode-size op does inside "
        "an engine step; the other rows rotate buffer sets (cold). Only for points that rotate "
        "(more than one buffer set); no % of copy, since the copy baseline is cold.");
    notes.push_back(
        "device memory: a point whose buffers do not fit the device's free memory is skipped "
        "(its rows say so, and the run is not failed for it): the largest point that ran is the "
        "largest this device holds.");
    notes.push_back(
        "thrust: the op written as one thrust::scatter per tensor of 16-byte units (2-byte units "
        "for the transposed legacy value cache), only where the op is a plain scatter (no "
        "quantization, no reduction): what a library call gives you.");
    notes.push_back(
        "agreement: each GPU version runs once through its checked entry point on outputs "
        "filled with 0xFF bytes (NaN in every float format; tensors an op reads and overwrites "
        "get the CPU reference's input back instead). Bit-exact ops: the whole output, "
        "untouched bytes included, is compared byte for byte with the CPU reference; max_abs_err "
        "is over differing elements, decoded as the cache element type (fp8 without its scale). "
        "Reductions: norm-wise relative error vs the float64 CPU reference within the tolerance "
        "(rel_err <= tolerance), and any element-wise part (e.g. a fused residual sum) "
        "bit-exact. Element-wise ops with transcendentals (silu, gelu): the largest distance of "
        "an output element from the CPU reference's, in ulps of the dtype, within the op's "
        "bound (max_ulp <= ulp_bound).");
  }
  notes.push_back(
      "cpu rows: host wall clock of the checked CPU reference (validation included), median of "
      "up to 9 runs (3 above 20 ms, 1 above 0.2 s).");
  // What each op's workload points are, from its card: each distinct text once.
  std::vector<std::string> workload_notes;
  for (const OpEntry* op : ops)
    if (!op->workload_notes.empty() &&
        std::find(workload_notes.begin(), workload_notes.end(), op->workload_notes) ==
            workload_notes.end())
      workload_notes.push_back(op->workload_notes);
  notes.push_back("inputs: random, never zeros.");
  notes.insert(notes.end(), workload_notes.begin(), workload_notes.end());
  if (quick) notes.push_back("quick run: small sizes only (see the workload notes above).");
  return notes;
}

// ---------------------------------------------------------------------------------------------
// pagedkv compare --profile (profile.h)

using ProfiledPoint = std::pair<const OpEntry*, WorkloadPoint>;

// The copy of the tool that ncu runs: one implementation of one point, launched once outside
// the NVTX range (module loading, first-touch of the buffers) and once inside it, which is the
// launch ncu measures.
int profile_child(const Options& options, const std::vector<ProfiledPoint>& points,
                  std::int64_t l2) {
  const std::size_t colon = options.profile_child.find(':');
  PAGEDKV_CHECK(colon != std::string::npos, "--profile-child: expected IMPL:INDEX, got \"",
                options.profile_child, "\"");
  const std::string impl = options.profile_child.substr(0, colon);
  const auto index = static_cast<std::size_t>(
      parse_integer("--profile-child", options.profile_child.substr(colon + 1)));
  PAGEDKV_CHECK(index < points.size(), "--profile-child: point ", index, " of ", points.size());
  PAGEDKV_CHECK(impl == "naive" || impl == "optimized" || impl == "copy_kernel",
                "--profile-child: expected naive, optimized or copy_kernel, got \"", impl, "\"");
  const auto& [op, point] = points[index];
  std::unique_ptr<OpCase> c = op->make_case(point, options.seed);
  if (impl == "copy_kernel" && c->copy_kind() != CopyKind::device_to_device) return 0;
  c->prepare_device(l2);
  cudaStream_t stream = nullptr;
  PAGEDKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::unique_ptr<CopyBaseline> baseline;
  if (impl == "copy_kernel")
    baseline = std::make_unique<CopyBaseline>(c->copy_kind(), c->bytes_moved(), 0);
  const auto launch = [&] {
    if (baseline) {
      baseline->launch_kernel(0, stream);
    } else {
      c->launch(impl == "naive" ? Impl::naive : Impl::optimized, 0, stream);
    }
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  };
  launch();
  nvtxRangePushA("pagedkv");
  launch();
  nvtxRangePop();
  cudaStreamDestroy(stream);
  return 0;
}

// One profile: per point and implementation, this tool under ncu with --profile-child, its
// CSV parsed into the table; without ncu, the launches run here, inside the NVTX ranges, for a
// profiler the learner attaches.
int run_profile(const Options& options, std::vector<ProfiledPoint> points, bool gpu,
                const std::string& reason, std::int64_t l2) {
  PAGEDKV_CHECK(gpu, "--profile: needs a GPU (", reason, ")");
  if (!options.size) {  // the largest point of each (op, workload, variant, slots)
    std::vector<ProfiledPoint> largest;
    for (const ProfiledPoint& candidate : points) {
      bool replaced = false;
      for (ProfiledPoint& kept : largest) {
        const WorkloadPoint &a = kept.second, &b = candidate.second;
        if (kept.first == candidate.first && a.workload == b.workload && a.variant == b.variant &&
            a.slots == b.slots) {
          if (b.size > a.size) kept = candidate;
          replaced = true;
        }
      }
      if (!replaced) largest.push_back(candidate);
    }
    points = largest;
  }
  if (!options.profile_child.empty()) return profile_child(options, points, l2);

  const std::string ncu = command_output("command -v ncu 2>/dev/null");
  std::string self(4096, '\0');
  const ssize_t length = readlink("/proc/self/exe", self.data(), self.size() - 1);
  PAGEDKV_CHECK(length > 0, "--profile: cannot find this program's path (/proc/self/exe)");
  self.resize(static_cast<std::size_t>(length));
  // The same selection for the child: ops, filters and seed (so the same points, in order).
  std::string selection;
  if (options.all) selection += " --all";
  for (const std::string& name : options.ops) selection += " " + shell_word(name);
  if (!options.workload.empty()) selection += " --workload " + shell_word(options.workload);
  if (!options.variant.empty()) selection += " --variant " + shell_word(options.variant);
  if (!options.slots.empty()) selection += " --slots " + shell_word(options.slots);
  if (options.size) selection += " --size " + std::to_string(*options.size);
  selection += " --seed " + std::to_string(options.seed);
  std::string metrics;
  for (const std::string& metric : profile_metrics())
    metrics += (metrics.empty() ? "" : ",") + metric;

  std::vector<ProfileLine> lines;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto& [op, point] = points[i];
    const std::string name = op->name + " " + point.workload + " " + point.variant + " " +
                             point.slots + " " + std::to_string(point.size);
    for (const char* impl : {"naive", "optimized", "copy_kernel"}) {
      const std::string child = shell_word(self) + " compare" + selection + " --profile-child " +
                                impl + ":" + std::to_string(i);
      std::fprintf(stderr, "[%zu/%zu] %s: %s\n", i + 1, points.size(), name.c_str(), impl);
      if (ncu.empty()) {
        Options in_process = options;
        in_process.profile_child = std::string(impl) + ":" + std::to_string(i);
        profile_child(in_process, points, l2);
        continue;
      }
      const std::string output = command_all_output(
          shell_word(ncu) + " --nvtx --nvtx-include pagedkv/ --metrics " + metrics +
          " --csv --page raw --print-units base " + child + " 2>&1");
      const std::vector<KernelProfile> kernels = parse_ncu_csv(output);
      if (kernels.empty() && std::string(impl) != "copy_kernel") {
        std::cerr << "pagedkv: ncu measured no kernel for " << name << " " << impl
                  << "; its output ends:\n"
                  << output.substr(output.size() > 2000 ? output.size() - 2000 : 0) << "\n";
        return 1;
      }
      for (const KernelProfile& kernel : kernels) lines.push_back({name, impl, kernel});
    }
  }
  if (ncu.empty()) {
    std::cout << "Nsight Compute (ncu) is not on the PATH: the launches ran once each inside an "
                 "NVTX range \"pagedkv\". Run this command under `ncu --nvtx --nvtx-include "
                 "pagedkv/` or Nsight Systems to see them.\n";
    return 0;
  }
  print_profile(std::cout, lines);
  return 0;
}

int run_compare(const Options& options) {
  PAGEDKV_CHECK(options.all || !options.ops.empty(),
                "compare: expected an op name or --all (see `pagedkv list`)");
  std::vector<const OpEntry*> ops;
  for (const OpEntry& op : op_registry()) {
    bool chosen = options.all;
    for (const auto& name : options.ops) chosen |= name == op.name;
    if (chosen) ops.push_back(&op);
  }

  const std::string reason = gpu_unavailable_reason();
  const bool gpu = reason.empty();
  const bool profiling = options.profile || !options.profile_child.empty();
  const bool quick = !profiling && (options.quick || (!gpu && !options.size));
  RunInfo info = describe_run(options, gpu, reason);
  info.quick = quick;

  GpuTimingOptions timing;
  timing.repeats = options.repeats;
  cudaStream_t stream = nullptr;
  if (gpu && !profiling) {
    PAGEDKV_CUDA_CHECK(cudaSetDevice(0));
    PAGEDKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    info.copy_bandwidth_gbps = measure_copy_bandwidth(stream, timing);
  }
  const std::int64_t l2 = info.l2_bytes.value_or(0);

  // --device-memory: one allocation holds what the run may not use, so that a large GPU
  // behaves as a smaller one (what a learner's 8 GB card would do with the same points).
  struct Ballast {
    void* bytes = nullptr;
    ~Ballast() {
      if (bytes) cudaFree(bytes);
    }
  } ballast;
  std::string ballast_note;
  if (gpu && !profiling && options.device_memory) {
    std::size_t free_bytes = 0, total_bytes = 0;
    PAGEDKV_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const auto wanted = static_cast<std::size_t>(*options.device_memory);
    if (free_bytes > wanted) PAGEDKV_CUDA_CHECK(cudaMalloc(&ballast.bytes, free_bytes - wanted));
    ballast_note = "--device-memory: " + std::to_string(wanted >> 20) + " MiB left free for the run (" +
                   std::to_string(free_bytes >> 20) + " MiB were free of " +
                   std::to_string(total_bytes >> 20) + " MiB; the rest is held by one allocation).";
  }

  // Every point of every chosen op, after the filters.
  std::vector<std::pair<const OpEntry*, WorkloadPoint>> points;
  for (const OpEntry* op : ops)
    for (const std::string& workload : op->workloads) {
      if (!options.workload.empty() && workload != options.workload) continue;
      for (const WorkloadPoint& p : op->points(workload, quick && !options.size)) {
        if (options.size && p.size != *options.size) continue;
        if (!options.variant.empty() && p.variant != options.variant) continue;
        if (!options.slots.empty() && p.slots != options.slots) continue;
        points.emplace_back(op, p);
      }
    }
  PAGEDKV_CHECK(!points.empty(), "compare: no workload point matches the filters");
  if (profiling) return run_profile(options, points, gpu, reason, l2);
  std::vector<const OpEntry*> ops_run;  // the ops with points in this run, for their notes
  for (const auto& point : points)
    if (std::find(ops_run.begin(), ops_run.end(), point.first) == ops_run.end())
      ops_run.push_back(point.first);
  info.notes = run_notes(info, ops_run, gpu, quick, options.repeats);
  if (!ballast_note.empty()) info.notes.push_back(ballast_note);

  std::vector<Row> rows;
  std::vector<std::string> skipped_for_memory;  // points beyond the device's free memory
  std::vector<std::string> shrunk_for_memory;   // points halved until they fitted
  bool all_agree = true;
  int index = 0;
  // Index-based: a point that does not fit inserts its halved self after it.
  std::vector<int> halvings(points.size(), 0);  // times each point was halved to fit
  constexpr int kMaxHalvings = 6;
  for (std::size_t point_index = 0; point_index < points.size(); ++point_index) {
    const OpEntry* op = points[point_index].first;
    const WorkloadPoint point = points[point_index].second;
    ++index;
    std::fprintf(stderr, "[%2d/%zu] %s %s %s %s %lld %s\n", index, points.size(), op->name.c_str(),
                 point.workload.c_str(), point.variant.c_str(), point.slots.c_str(),
                 static_cast<long long>(point.size), point.size_unit.c_str());
    std::unique_ptr<OpCase> c;
    Row cpu_row = base_row(*op, point, "cpu", 0);
    try {
      c = op->make_case(point, options.seed);
      cpu_row.bytes = c->bytes_moved();
      set_time(cpu_row, time_host([&] { c->run_cpu(); }), 1);
    } catch (const std::exception& e) {
      if (halvings[point_index] > 0) {  // a halved point the case cannot build: skip it
        skipped_for_memory.push_back(op->name + " " + point.workload + " " + point.variant + " " +
                                     std::to_string(point.size) + " (halved: " + e.what() + ")");
        continue;
      }
      cpu_row.error = e.what();
      rows.push_back(cpu_row);
      all_agree = false;
      continue;  // without a CPU reference there is nothing to compare with
    }
    rows.push_back(cpu_row);
    if (!gpu) continue;

    const std::int64_t bytes = c->bytes_moved();
    Row naive = base_row(*op, point, "naive", bytes);
    Row optimized = base_row(*op, point, "optimized", bytes);
    Row library = base_row(*op, point, "thrust", bytes);
    Row eager = base_row(*op, point, "optimized_eager", bytes);
    Row checked = base_row(*op, point, "checked_eager", bytes);
    Row checked_graph = base_row(*op, point, "checked_graph", bytes);
    Row warm = base_row(*op, point, "optimized_warm", bytes);
    bool has_warm = false;
    Row copy = base_row(*op, point, "copy", bytes);
    Row copy_kernel = base_row(*op, point, "copy_kernel", bytes);
    const bool device_copy = c->copy_kind() == CopyKind::device_to_device;
    bool has_library = false;
    bool has_checked = false;
    std::vector<Row> alternative_rows;  // the case's alternatives (swap_blocks: its strategies)
    std::vector<Row> beside_rows;       // transfers beside a compute-bound neighbour
    try {
      c->prepare_device(l2);
      const int sets = c->buffer_sets();
      gpu_row(
          naive, [&] { return c->check(Impl::naive); },
          [&](int set, cudaStream_t s) { c->launch(Impl::naive, set, s); }, sets, stream, timing);
      gpu_row(
          optimized, [&] { return c->check(Impl::optimized); },
          [&](int set, cudaStream_t s) { c->launch(Impl::optimized, set, s); }, sets, stream,
          timing);
      // Other ways of running the op, each a row (OpCase::alternatives()).
      for (const std::string& name : c->alternatives()) {
        Row row = base_row(*op, point, name, bytes);
        gpu_row(
            row, [&] { return c->check_alternative(name, stream); },
            [&](int set, cudaStream_t s) { c->launch_alternative(name, set, s); }, sets, stream,
            timing);
        alternative_rows.push_back(row);
      }
      // Warm: the same launch on buffer set 0 only, where the cold rows rotate (issue: decode-
      // size ops live in L2 inside an engine step).
      if (sets > 1) {
        has_warm = true;
        gpu_row(
            warm, nullptr, [&](int, cudaStream_t s) { c->launch(Impl::optimized, 0, s); }, 1,
            stream, timing);
      }
      // The checked entry point that pagedkv.vllm_ops calls (OpEntry::run, deferred errors:
      // validation on the host, the index check as a kernel on the stream) against the bare
      // kernel, both issued from the host launch by launch, so that the host's share of a call
      // is timed too (an eager engine step); then the checked call replayed from a CUDA graph
      // (a captured decode step), to compare with the optimized row.
      std::vector<std::vector<ArgValue>> calls;
      for (int set = 0; set < sets; ++set) calls.push_back(c->device_call(set));
      has_checked = !calls.empty() && !calls[0].empty();
      if (has_checked) {
        GpuTimingOptions from_host = timing;
        from_host.graph = false;
        auto run_checked = [&](int set, cudaStream_t s) {
          PreferDeferredErrors deferred;
          op->run(Impl::optimized, calls[static_cast<std::size_t>(set)], s);
        };
        gpu_row(
            eager, nullptr,
            [&](int set, cudaStream_t s) { c->launch(Impl::optimized, set, s); }, sets, stream,
            from_host);
        gpu_row(checked, nullptr, run_checked, sets, stream, from_host);
        gpu_row(checked_graph, nullptr, run_checked, sets, stream, timing);
        try {
          check_errors();  // a bad index the deferred checks found fails the row
        } catch (const std::exception& e) {
          checked.error = e.what();
        }
      }
      // The library row, where the case offers one (core/entries/library_baseline.h).
      std::vector<std::vector<UnitScatter>> scatters;
      if (const auto* baseline = dynamic_cast<const LibraryBaseline*>(c.get()))
        for (int set = 0; set < sets; ++set) scatters.push_back(baseline->library_scatters(set));
      has_library = !scatters.empty() && !scatters[0].empty();
      if (has_library) {
        auto run_library = [&](int set, cudaStream_t s) {
          for (const UnitScatter& scatter : scatters[static_cast<std::size_t>(set)])
            run_library_scatter(scatter, s);
        };
        auto check_library = [&] {
          c->reset_outputs();
          run_library(0, stream);
          PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
          return c->compare_outputs();
        };
        gpu_row(library, check_library, run_library, sets, stream, timing);
      }
      const CopyBaseline baseline(c->copy_kind(), bytes, l2);
      gpu_row(
          copy, nullptr, [&](int set, cudaStream_t s) { baseline.launch(set, s); }, baseline.sets,
          stream, timing);
      if (device_copy)
        gpu_row(
            copy_kernel, nullptr,
            [&](int set, cudaStream_t s) { baseline.launch_kernel(set, s); }, baseline.sets,
            stream, timing);
      // A transfer between host and device runs beside a model in an engine: each way of
      // moving the bytes again, while a compute-bound kernel holds the SMs (neighbour.h).
      if (!device_copy) {
        struct Transfer {
          const Row* alone;
          std::function<void(int, cudaStream_t)> launch;
          int sets;
        };
        std::vector<Transfer> transfers = {
            {&naive, [&](int set, cudaStream_t s) { c->launch(Impl::naive, set, s); }, sets},
            {&optimized, [&](int set, cudaStream_t s) { c->launch(Impl::optimized, set, s); },
             sets}};
        for (const Row& row : alternative_rows)
          transfers.push_back({&row,
                               [&c, name = row.impl](int set, cudaStream_t s) {
                                 c->launch_alternative(name, set, s);
                               },
                               sets});
        transfers.push_back(
            {&copy, [&](int set, cudaStream_t s) { baseline.launch(set, s); }, baseline.sets});
        for (const Transfer& transfer : transfers) {
          if (!transfer.alone->median_us || !transfer.alone->error.empty()) continue;
          Row row = base_row(*op, point, "beside_compute:" + transfer.alone->impl, bytes);
          try {
            const BesideCompute beside = time_beside_compute(
                transfer.launch, transfer.sets, *transfer.alone->median_us, stream);
            Timing timing_beside;
            timing_beside.median_us = beside.median_us;
            timing_beside.repeats = beside.repeats;
            timing_beside.launches_per_repeat = beside.launches_per_repeat;
            timing_beside.method = "beside-compute";
            set_time(row, timing_beside, transfer.sets);
            row.neighbour_slowdown_pct = beside.neighbour_slowdown_pct;
            row.outlasted_neighbour = beside.outlasted;
          } catch (const std::exception& e) {
            row.error = e.what();
          }
          beside_rows.push_back(row);
        }
      }
    } catch (const std::exception& e) {
      // A point beyond the device's memory is skipped, not failed (a learner's 8 GB card).
      const std::string what = e.what();
      const bool no_memory = what.find("cudaErrorMemoryAllocation") != std::string::npos ||
                             what.find("out of memory") != std::string::npos;
      std::string error = what;
      if (no_memory) {
        std::size_t free_bytes = 0, total_bytes = 0;
        cudaGetLastError();  // an allocation failure is not sticky; clear it
        cudaMemGetInfo(&free_bytes, &total_bytes);
        const std::string free_text = std::to_string(free_bytes >> 20) + " MiB free of " +
                                      std::to_string(total_bytes >> 20) + " MiB";
        if (halvings[point_index] < kMaxHalvings && point.size >= 2) {
          // Halve the point (its cache too, so that the tokens keep their density) and run
          // that instead, right after: the rows say the size that ran, the notes from what.
          WorkloadPoint halved = point;
          halved.size = point.size / 2;
          if (point.num_blocks >= 2) halved.num_blocks = point.num_blocks / 2;
          points.insert(points.begin() + static_cast<std::ptrdiff_t>(point_index) + 1,
                        {op, halved});
          halvings.insert(halvings.begin() + static_cast<std::ptrdiff_t>(point_index) + 1,
                          halvings[point_index] + 1);
          shrunk_for_memory.push_back(op->name + " " + point.workload + " " + point.variant +
                                      " " + point.slots + ": " + std::to_string(point.size) +
                                      " -> " + std::to_string(halved.size) + " " +
                                      point.size_unit + " (" + free_text + ")");
          rows.pop_back();  // this point's cpu row: the halved point brings its own
          continue;
        }
        error = "skipped: the point does not fit in device memory (" + free_text + ")";
        skipped_for_memory.push_back(op->name + " " + point.workload + " " + point.variant +
                                     " " + std::to_string(point.size));
      }
      for (Row* row : {&naive, &optimized, &copy, &copy_kernel})
        if (row->error.empty() && !row->median_us) row->error = error;
      has_checked = false;
      has_warm = false;
      if (no_memory) {
        rows.push_back(naive);
        rows.push_back(optimized);
        continue;
      }
    }
    // The size-matched copy: the faster of cudaMemcpyAsync and the copy kernel (copy_kernel.h).
    std::optional<double> copy_us = copy.median_us;
    if (copy_kernel.median_us && (!copy_us || *copy_kernel.median_us < *copy_us))
      copy_us = copy_kernel.median_us;
    if (copy_us) {
      std::vector<Row*> measured = {&naive,         &optimized, &eager, &checked,
                                    &checked_graph, &library,   &copy,  &copy_kernel};
      for (Row& row : alternative_rows) measured.push_back(&row);
      for (Row& row : beside_rows) measured.push_back(&row);
      for (Row* row : measured)
        if (row->median_us && *row->median_us > 0)
          row->pct_of_copy = 100.0 * *copy_us / *row->median_us;
    }
    for (Row* row : {&naive, &optimized, &warm, &eager, &checked, &checked_graph, &library, &copy,
                     &copy_kernel}) {
      if (row == &warm && !has_warm) continue;
      if (row == &library && !has_library) continue;
      if ((row == &eager || row == &checked || row == &checked_graph) && !has_checked) continue;
      if (row == &copy_kernel && !device_copy) continue;
      if (!row->error.empty() || (row->agrees && !*row->agrees)) all_agree = false;
      rows.push_back(*row);
      if (row == &optimized)
        for (const Row& alternative : alternative_rows) {
          if (!alternative.error.empty() || (alternative.agrees && !*alternative.agrees))
            all_agree = false;
          rows.push_back(alternative);
        }
    }
    for (const Row& row : beside_rows) {
      if (!row.error.empty()) all_agree = false;
      rows.push_back(row);
    }
  }
  if (stream) cudaStreamDestroy(stream);
  if (!shrunk_for_memory.empty()) {
    std::string note = "halved to fit the device's free memory (" +
                       std::to_string(shrunk_for_memory.size()) + " halvings):";
    for (const std::string& point : shrunk_for_memory) note += " " + point + ";";
    info.notes.push_back(note);
  }
  if (!skipped_for_memory.empty()) {
    std::string note = "skipped for device memory (" + std::to_string(skipped_for_memory.size()) +
                       " points):";
    for (const std::string& point : skipped_for_memory) note += " " + point + ";";
    info.notes.push_back(note);
  }

  print_table(std::cout, rows, info);
  if (!options.json_path.empty()) {
    write_json(options.json_path, rows, info);
    std::cout << "JSON written to " << options.json_path << "\n";
  }
  if (!all_agree) {
    std::cout << "FAILED: some rows disagree with the CPU reference or could not run (see the "
                 "agreement column)\n";
    return 1;
  }
  if (gpu) {
    std::size_t checked = 0;
    for (const Row& row : rows) checked += row.agrees.has_value();
    std::cout << "OK: all " << checked << " GPU rows with an output agree with the CPU reference "
              << "(bit-exact ops bit for bit, reductions within their tolerance), over "
              << points.size() << " workload points\n";
  }
  return 0;
}

}  // namespace

int run(int argc, char** argv) {
  Options options;
  try {
    if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
      std::cout << kUsage;
      return 0;
    }
    options = parse(argc, argv);
    PAGEDKV_CHECK(options.command == "list" || options.command == "compare", "unknown command \"",
                  options.command, "\" (expected list or compare)");
  } catch (const InvalidArgument& e) {
    std::cerr << "pagedkv: " << e.what() << "\n\n" << kUsage;
    return 2;
  }
  try {
    return options.command == "list" ? run_list(options) : run_compare(options);
  } catch (const InvalidArgument& e) {
    std::cerr << "pagedkv: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "pagedkv: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace pagedkv::compare

int main(int argc, char** argv) { return pagedkv::compare::run(argc, argv); }
