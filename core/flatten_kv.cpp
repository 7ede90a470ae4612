// The one contract of flatten_kv (LMDeploy src/turbomind/kernels/attention/kv_cache_utils_v2.cu:
// invokeFlattenKV_v2), shared by the CPU reference, the naive and the optimized CUDA kernels:
// process_kv's rules that apply to a read (core/process_kv.cpp says what upstream lacks), and
// k_out / v_out holding cu_k_len[batch] - cu_k_len[0] rows. Zero tokens is a no-op. Deferred
// calls (a capture, or the deferred error mode) check the index values on the device, as
// process_kv does.
#include "pagedkv/ops/flatten_kv.h"

#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "turbomind_checks.h"

namespace pagedkv {

FlattenKv::Plan FlattenKv::validate(const Args& args, Impl impl) {
  const Device device = impl_device(impl);
  checks::device_is(args.k_out, "k_out", device);
  checks::device_is(args.v_out, "v_out", device);
  checks::device_is(args.kv_cache, "kv_cache", device);

  const QuantPolicy policy = checks::turbomind_policy(args.quant_policy);
  Plan plan;
  checks::turbomind_activations(args.k_out, "k_out", args.v_out, "v_out", true, plan);
  checks::turbomind_pool(args.kv_cache, args.block_seq_len, args.layer_id, args.cp_rank,
                         args.cp_size, policy, plan);
  checks::not_null(args.kv_cache, "kv_cache");
  checks::not_null(args.k_out, "k_out");
  checks::not_null(args.v_out, "v_out");

  checks::TurbomindBatch batch;
  batch.cu_k_len = &args.cu_k_len;
  batch.cu_block_num = &args.cu_block_num;
  batch.blocks = &args.blocks;
  batch.rows_name = "k_out";
  batch.max_len = args.max_seq_len;
  batch.max_len_name = "max_seq_len";
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  checks::TurbomindCheck check;
  checks::turbomind_batch(batch, args.kv_cache, plan, deferred ? &check : nullptr);

  plan.rope = checks::turbomind_rope(checks::rope_args_of(args), plan.layout.head_dim, plan.batch,
                                     device, deferred ? &check : nullptr);
  if (deferred) checks::enqueue_turbomind_check(*scope, check);
  return plan;
}

}  // namespace pagedkv
