// The one contract of rotary_embedding (vLLM csrc/pos_encoding_kernels.cu @0f5257e:
// rotary_embedding), shared by the CPU reference, the naive and the optimized CUDA kernels.
// Every rule throws InvalidArgument naming the argument, the expected and the actual value,
// before any byte is written (query and key included: they are rotated in place).
//
// Upstream checks positions' rank (1 or 2) and that query's and key's leading dims match it,
// that the per-token elements are a multiple of head_size, num_heads % num_kv_heads == 0 and
// rot_dim + rope_dim_offset <= head_size. It trusts the rest. Beyond that, this contract also
// rejects:
//   - positions outside [0, cos_sin_cache.size(0)), negative ones too (upstream reads outside
//     cos_sin_cache);
//   - an odd rot_dim (the last pair would straddle the halves), or one above kMaxRotDim;
//   - more than kMaxTokenElements elements of query (or key) per token;
//   - positions that are not i64 or not contiguous (upstream reads them as a flat i64 array);
//   - a last dim of query or key that is not contiguous (upstream assumes it);
//   - a key of another dtype than query, a cos_sin_cache that is neither f32 nor query's dtype;
//   - a [B, S, ...] query or key whose B and S do not flatten to one token stride (upstream
//     steps tokens by stride(1) alone) and heads that share memory;
// it gives key its own head stride (upstream uses query's for both), and it makes zero tokens a
// no-op.
#include "pagedkv/ops/rotary_embedding.h"

#include <cstdint>

#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "position_checks.h"

namespace pagedkv {

namespace {

// How the heads of query or key lie in memory.
struct HeadLayout {
  std::int64_t num_heads = 0;
  std::int64_t token_stride = 0;
  std::int64_t head_stride = 0;
};

// query or key: positions' leading dims, then [H * head_size] (flat) or [H, head_size].
HeadLayout check_heads(const TensorView& tensor, const char* name, const TensorView& positions,
                       std::int64_t head_size) {
  const int token_dims = positions.ndim;
  PAGEDKV_CHECK(tensor.ndim == token_dims + 1 || tensor.ndim == token_dims + 2, name,
                ": expected ", token_dims + 1, " dims (positions' ", token_dims,
                " then H * head_size) or ", token_dims + 2, " (then H, head_size), got ",
                tensor.describe());
  checks::non_negative_layout(tensor, name);
  for (int d = 0; d < token_dims; ++d) {
    PAGEDKV_CHECK(tensor.size(d) == positions.size(d), name, ": size(", d, ") = ",
                  tensor.size(d), " must equal positions.size(", d, ") = ", positions.size(d),
                  " (one row per token), got ", tensor.describe());
  }
  const int last = tensor.ndim - 1;
  PAGEDKV_CHECK(tensor.size(last) <= 1 || tensor.stride(last) == 1, name,
                ": the last dim must be contiguous (stride 1), got ", tensor.describe());

  HeadLayout layout;
  if (tensor.ndim == token_dims + 1) {  // [..., H * head_size]: heads packed in the last dim
    PAGEDKV_CHECK(tensor.size(last) % head_size == 0, name, ": the last dim (", tensor.size(last),
                  " elements) must hold whole heads of head_size = ", head_size, ", got ",
                  tensor.describe());
    layout.num_heads = tensor.size(last) / head_size;
    layout.head_stride = head_size;
  } else {  // [..., H, head_size]: the head stride is free (padded heads)
    PAGEDKV_CHECK(tensor.size(last) == head_size, name, ": size(-1) must equal head_size = ",
                  head_size, ", got ", tensor.describe());
    layout.num_heads = tensor.size(last - 1);
    layout.head_stride = tensor.stride(last - 1);
  }
  PAGEDKV_CHECK(layout.num_heads >= 1, name, ": expected at least one head, got ",
                tensor.describe());
  // Upstream counts a token's elements in int; the kernels here count its pairs in int too.
  PAGEDKV_CHECK(layout.num_heads <= RotaryEmbedding::kMaxTokenElements / head_size, name, ": ",
                layout.num_heads, " heads × head_size ", head_size, " elements per token, ",
                "expected at most ", RotaryEmbedding::kMaxTokenElements);

  // The token dims flatten to one stride: token t of [B, S] is t = b * S + s.
  if (token_dims == 1) {
    layout.token_stride = tensor.stride(0);
  } else {
    const std::int64_t batch = tensor.size(0), seq = tensor.size(1);
    layout.token_stride = seq == 1 ? tensor.stride(0) : tensor.stride(1);
    PAGEDKV_CHECK(batch <= 1 || seq <= 1 || tensor.stride(0) == seq * tensor.stride(1), name,
                  ": dims 0 and 1 must flatten to one token dim (stride(0) = size(1) × ",
                  "stride(1) = ", seq * tensor.stride(1), "), got ", tensor.describe());
  }
  // Rotated in place: two elements at one address would be rotated twice (or raced for).
  PAGEDKV_CHECK(checks::elements_are_distinct(tensor), name, ": strides must give every element ",
                "its own memory (it is rotated in place), but ", tensor.describe(),
                " maps several elements to one address");
  return layout;
}

}  // namespace

RotaryEmbedding::Plan RotaryEmbedding::validate(const Args& args, Impl impl) {
  const TensorView& positions = args.positions;
  const TensorView& query = args.query;
  const TensorView& key = args.key;
  const TensorView& cos_sin_cache = args.cos_sin_cache;
  // key is optional: a view without data and dims (Python's None) means no key.
  const bool has_key = key.data != nullptr || key.ndim > 0;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(positions, "positions", device);
  checks::device_is(query, "query", device);
  if (has_key) checks::device_is(key, "key", device);
  checks::device_is(cos_sin_cache, "cos_sin_cache", device);

  // 2. positions [T] or [B, S], contiguous i64: they define the tokens.
  PAGEDKV_CHECK(positions.ndim == 1 || positions.ndim == 2,
                "positions: expected 1 dim [T] or 2 dims [B, S], got ", positions.describe());
  checks::dtype_is(positions, "positions", DType::i64);
  checks::non_negative_layout(positions, "positions");
  PAGEDKV_CHECK(positions.is_contiguous(), "positions: expected a contiguous tensor, got ",
                positions.describe());
  const std::int64_t num_tokens = positions.numel();

  // 3. query and key: one row of heads per token; key in query's dtype.
  PAGEDKV_CHECK(args.head_size >= 1, "head_size: expected a positive number of elements, got ",
                args.head_size);
  checks::dtype_in(query, "query", {DType::f32, DType::f16, DType::bf16});
  const HeadLayout q = check_heads(query, "query", positions, args.head_size);
  HeadLayout k;
  if (has_key) {
    checks::dtype_is(key, "key", query.dtype);
    k = check_heads(key, "key", positions, args.head_size);
    PAGEDKV_CHECK(q.num_heads % k.num_heads == 0, "key: num_heads = ", q.num_heads,
                  " (query) must be a multiple of num_kv_heads = ", k.num_heads, " (key), got ",
                  key.describe());
  }

  // 4. cos_sin_cache [max_position, rot_dim], contiguous: rot_dim / 2 cosines, then the sines.
  checks::ndim_is(cos_sin_cache, "cos_sin_cache", 2);
  checks::dtype_in(cos_sin_cache, "cos_sin_cache",
                   {DType::f32, query.dtype});  // f32, or the activations' dtype
  checks::non_negative_layout(cos_sin_cache, "cos_sin_cache");
  PAGEDKV_CHECK(cos_sin_cache.is_contiguous(), "cos_sin_cache: expected a contiguous tensor, got ",
                cos_sin_cache.describe());
  const std::int64_t rot_dim = cos_sin_cache.size(1);
  PAGEDKV_CHECK(rot_dim >= 2 && rot_dim % 2 == 0 && rot_dim <= kMaxRotDim,
                "cos_sin_cache: rot_dim = size(1) must be even, in [2, ", kMaxRotDim,
                "] (rot_dim / 2 cosines, then as many sines), got ", rot_dim);
  PAGEDKV_CHECK(args.rope_dim_offset >= 0, "rope_dim_offset: expected a value >= 0, got ",
                args.rope_dim_offset);
  PAGEDKV_CHECK(args.rope_dim_offset <= args.head_size - rot_dim, "rope_dim_offset: rot_dim (",
                rot_dim, ", cos_sin_cache.size(1)) + rope_dim_offset (", args.rope_dim_offset,
                ") must be at most head_size = ", args.head_size);

  // 5. Memory behind every tensor that has elements (check_call() then keeps query and key
  //    apart from each other and from what is read).
  checks::not_null(positions, "positions");
  checks::not_null(query, "query");
  if (has_key) checks::not_null(key, "key");
  checks::not_null(cos_sin_cache, "cos_sin_cache");

  Plan plan;
  plan.num_tokens = num_tokens;
  plan.num_heads = q.num_heads;
  plan.num_kv_heads = has_key ? k.num_heads : 0;
  plan.head_size = args.head_size;
  plan.rot_dim = rot_dim;
  plan.rope_dim_offset = args.rope_dim_offset;
  plan.max_position = cos_sin_cache.size(0);
  plan.query_token_stride = q.token_stride;
  plan.query_head_stride = q.head_stride;
  plan.key_token_stride = has_key ? k.token_stride : 0;
  plan.key_head_stride = has_key ? k.head_stride : 0;
  plan.is_neox = args.is_neox;
  plan.inverse = args.inverse;
  plan.dtype = query.dtype;
  plan.cache_dtype = cos_sin_cache.dtype;

  // 6. Every position a row of cos_sin_cache: one unsigned maximum finds the largest and any
  //    negative one (position_checks.h; on the GPU a CUB reduction and a synchronization), or,
  //    when the call defers its errors, a check kernel on the call's stream whose fault record
  //    makes the kernels write nothing (pagedkv/deferred_checks.h).
  const CheckScope* scope = CheckScope::current();
  if (num_tokens > 0 && scope != nullptr && scope->deferred && positions.device == Device::cuda) {
    checks::enqueue_position_check(*scope, positions.data, num_tokens, plan.max_position);
  } else if (num_tokens > 0) {
    const IndexAt largest = max_unsigned_index(positions);
    PAGEDKV_CHECK(largest.value >= 0 && largest.value < plan.max_position, "positions[",
                  largest.position, "] = ", largest.value, ": expected a position in [0, ",
                  plan.max_position, ") (cos_sin_cache.size(0))");
  }
  return plan;
}

}  // namespace pagedkv
