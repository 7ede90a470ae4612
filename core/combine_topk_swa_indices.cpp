// The one contract of combine_topk_swa_indices (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py: combine_topk_swa_indices @03dc564 and its
// bounds-hardened revision @4fec5ad, which is the contract here), shared by the CPU reference,
// the naive and the optimized CUDA kernels. Every rule throws InvalidArgument naming the
// argument, the expected and the actual value, before anything is written.
//
// Upstream needs a power-of-two window (Triton's arange) and checks nothing else. This contract
// rejects:
//   - dtypes other than i32 (an i64 query_start_loc or top-k matrix is refused, not misread);
//   - window_size not a power of two in 1 .. 4096, compress_ratio not 1, 4 or 128, topk outside
//     0 .. 65536, N outside 0 .. M, M × Rc beyond i32 (the workspace rows are i32);
//   - an output narrower than topk + window_size, or shapes that disagree;
//   - for synchronous calls, the values: query_start_loc decreasing or naming more rows than
//     combined_indices has, a request whose query_len > gather_len or gather_len > seq_len, a
//     gather too short for its first query's window, N + gather_len > M (the SWA rows would run
//     into the next request), and a top-k entry a query uses that is not a compressed token of
//     its request (>= min(N, seq_len / compress_ratio)).
// Deferred calls skip the value checks; the kernels then write -1 for such entries.
#include "pagedkv/ops/combine_topk_swa_indices.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "block_lookup_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"
#include "sparse_index_checks.h"

namespace pagedkv {

CombineTopkSwaIndices::Plan CombineTopkSwaIndices::validate(const Args& args, Impl impl) {
  const Device device = impl_device(impl);

  // 1. The integer arguments, in their supported ranges.
  checks::integer_in(args.window_size, "window_size", 1, 4096);
  PAGEDKV_CHECK((args.window_size & (args.window_size - 1)) == 0,
                "window_size: expected a power of two (upstream's Triton kernel spans the window "
                "with one arange), got ", args.window_size);
  PAGEDKV_CHECK(args.compress_ratio == 1 || args.compress_ratio == 4 ||
                    args.compress_ratio == 128,
                "compress_ratio: expected 1 (SWA only), 4 (C4A) or 128 (C128A), got ",
                args.compress_ratio);
  checks::integer_in(args.topk, "topk", 0, 65536);
  checks::integer_in(args.M, "M", 0, std::numeric_limits<std::int32_t>::max());
  checks::integer_in(args.N, "N", 0, args.M);

  // 2. The per-request vectors: query_start_loc [Rc + 1], seq_lens and gather_lens [Rc].
  checks::index_vector(args.seq_lens, "seq_lens", device, 0, "Rc");
  const std::int64_t Rc = args.seq_lens.size(0);
  checks::size_is(args.seq_lens, "seq_lens", 0, Rc, "Rc");
  checks::index_vector(args.gather_lens, "gather_lens", device, Rc, "Rc, seq_lens.size(0)");
  checks::size_is(args.gather_lens, "gather_lens", 0, Rc, "Rc, seq_lens.size(0)");
  checks::index_vector(args.query_start_loc, "query_start_loc", device, Rc + 1,
                       "Rc + 1, seq_lens.size(0) + 1");
  checks::size_is(args.query_start_loc, "query_start_loc", 0, Rc + 1,
                  "Rc + 1, seq_lens.size(0) + 1");
  PAGEDKV_CHECK(args.M * Rc <= std::numeric_limits<std::int32_t>::max(), "M: M × Rc = ", args.M,
                " × ", Rc, " workspace rows do not fit the i32 output");

  // 3. The outputs [Tc, >= topk + window_size] and [Tc]; the top-k matrix when it is read.
  checks::index_matrix(args.combined_indices, "combined_indices", device);
  const std::int64_t Tc = args.combined_indices.size(0);
  const std::int64_t width = args.combined_indices.size(1);
  PAGEDKV_CHECK(width >= args.topk + args.window_size, "combined_indices: expected at least topk ",
                "+ window_size = ", args.topk + args.window_size, " columns, got ", width);
  PAGEDKV_CHECK(Tc <= 1 || args.combined_indices.stride(0) >= width,
                "combined_indices: rows overlap: stride(0) = ", args.combined_indices.stride(0),
                " elements, a row is ", width);
  checks::index_vector(args.combined_lens, "combined_lens", device, Tc,
                       "Tc, combined_indices.size(0)");
  checks::size_is(args.combined_lens, "combined_lens", 0, Tc, "Tc, combined_indices.size(0)");
  checks::device_is(args.topk_indices, "topk_indices", device);
  checks::ndim_is(args.topk_indices, "topk_indices", 2);
  checks::dtype_is(args.topk_indices, "topk_indices", DType::i32);
  if (args.topk > 0) {
    checks::index_matrix(args.topk_indices, "topk_indices", device);
    PAGEDKV_CHECK(args.topk_indices.size(0) >= Tc, "topk_indices: expected a row per query ",
                  "token, at least Tc = ", Tc, " (combined_indices.size(0)), got ",
                  args.topk_indices.size(0));
  }

  Plan plan;
  plan.num_tokens = Tc;
  plan.topk_width = args.topk > 0 ? args.topk_indices.size(1) : 0;
  plan.topk_stride = args.topk > 0 ? args.topk_indices.stride(0) : 0;
  plan.width = width;
  plan.output_stride = args.combined_indices.stride(0);
  plan.num_requests = Rc;
  plan.window_size = args.window_size;
  plan.compress_ratio = args.compress_ratio;
  plan.topk = args.topk;
  plan.M = args.M;
  plan.N = args.N;
  plan.vector_rows = width % 4 == 0 && args.combined_indices.stride(0) % 4 == 0 &&
                     reinterpret_cast<std::uintptr_t>(args.combined_indices.data) % 16 == 0;
  if (Tc == 0 || !checks::reads_index_values(device)) return plan;

  // 4. The values (read back on the GPU: one synchronization each).
  const std::vector<std::int32_t> qsl = checks::copy_i32(args.query_start_loc.data, device, Rc + 1);
  const std::vector<std::int32_t> seq = checks::copy_i32(args.seq_lens.data, device, Rc);
  const std::vector<std::int32_t> gat = checks::copy_i32(args.gather_lens.data, device, Rc);
  const std::vector<std::int32_t> topk =
      args.topk > 0 ? checks::read_matrix(args.topk_indices) : std::vector<std::int32_t>{};
  for (std::int64_t b = 0; b < Rc; ++b) {
    PAGEDKV_CHECK(qsl[b + 1] >= qsl[b], "query_start_loc[", b + 1, "] = ", qsl[b + 1],
                  ": expected a running sum of query lengths, at least query_start_loc[", b,
                  "] = ", qsl[b]);
  }
  const std::int64_t base = qsl[0];
  PAGEDKV_CHECK(qsl[Rc] - base <= Tc, "query_start_loc: ", qsl[Rc] - base,
                " query tokens (query_start_loc[-1] - query_start_loc[0]), but combined_indices "
                "has ", Tc, " rows");
  const std::int64_t W = args.window_size;
  for (std::int64_t b = 0; b < Rc; ++b) {
    const std::int64_t q_len = qsl[b + 1] - qsl[b];
    if (q_len == 0) continue;
    const std::int64_t L = seq[b];
    const std::int64_t g = gat[b];
    PAGEDKV_CHECK(L >= q_len, "seq_lens[", b, "] = ", L, ": expected at least the request's ",
                  q_len, " query tokens");
    PAGEDKV_CHECK(g >= 0 && g <= L, "gather_lens[", b, "] = ", g, ": expected 0 .. seq_lens[", b,
                  "] = ", L);
    const std::int64_t needed = q_len + std::min(L - q_len, W - 1);
    PAGEDKV_CHECK(g >= needed, "gather_lens[", b, "] = ", g, ": the first query's window needs ",
                  "query_len + min(prefix, window_size - 1) = ", needed, " gathered tokens");
    PAGEDKV_CHECK(args.N + g <= args.M, "gather_lens[", b, "] = ", g, ": N + gather_len = ",
                  args.N + g, " runs past the request's M = ", args.M, " workspace rows");
    const std::int64_t bound = std::min(args.N, L / args.compress_ratio);
    const std::int64_t Kw = plan.topk_width;
    for (std::int64_t t = qsl[b] - base; t < qsl[b + 1] - base; ++t) {
      const std::int64_t pos = L - q_len + (t - (qsl[b] - base));
      const std::int64_t kl = std::min({(pos + 1) / args.compress_ratio, args.topk, Kw});
      for (std::int64_t o = 0; o < kl; ++o) {
        const std::int64_t v = topk[t * Kw + o];
        PAGEDKV_CHECK(v < bound, "topk_indices[", t, ", ", o, "] = ", v, ": beyond request ", b,
                      "'s compressed tokens, expected a value below min(N, seq_lens[", b,
                      "] / compress_ratio) = ", bound);
      }
    }
  }
  return plan;
}

}  // namespace pagedkv
