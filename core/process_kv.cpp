// The one contract of process_kv (LMDeploy src/turbomind/kernels/attention/kv_cache_utils_v2.cu:
// invokeProcessKV_v2), shared by the CPU reference, the naive and the optimized CUDA kernels.
// Every rule throws InvalidArgument naming the argument, the expected and the actual value,
// before any byte is written.
//
// Upstream checks head_dim against its instantiations (an abort) and trusts everything else.
// This contract also rejects: a quant_policy other than 0, 4, 8; head_dim other than 64 and 128
// (pagedkv's instantiations); block_seq_len outside [1, 4096]; a layer region past the end of
// the block; decreasing cu_q_len / cu_k_len / cu_block_num, a sequence with more new tokens
// than tokens, rows past k, too few blocks for a sequence, q_len above max_q_len; a block offset
// that is not a block of kv_cache (upstream dereferences whatever pointer it is given); bad RoPE
// parameters. Zero tokens is a no-op. The rules about the values of the device index tensors
// run on the device when the call defers (a capture, or the deferred error mode), in the same
// words.
#include "pagedkv/ops/process_kv.h"

#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "turbomind_checks.h"

namespace pagedkv {

ProcessKv::Plan ProcessKv::validate(const Args& args, Impl impl) {
  const Device device = impl_device(impl);
  // 1. Where every tensor lives.
  checks::device_is(args.kv_cache, "kv_cache", device);
  checks::device_is(args.k, "k", device);
  checks::device_is(args.v, "v", device);
  for (const auto& [bias, name] : {std::pair{&args.k_bias, "k_bias"}, std::pair{&args.v_bias, "v_bias"}}) {
    if (bias->data != nullptr) checks::device_is(*bias, name, device);
  }

  // 2. The policy, the activations (head_dim), the block and the layer region in it.
  const QuantPolicy policy = checks::turbomind_policy(args.quant_policy);
  Plan plan;
  checks::turbomind_activations(args.k, "k", args.v, "v", false, plan);
  checks::turbomind_pool(args.kv_cache, args.block_seq_len, args.layer_id, args.cp_rank,
                         args.cp_size, policy, plan);

  // 3. The biases: [head_num, head_dim] in k's dtype, contiguous.
  for (const auto& [bias, name] : {std::pair{&args.k_bias, "k_bias"}, std::pair{&args.v_bias, "v_bias"}}) {
    if (bias->data == nullptr) continue;
    checks::ndim_is(*bias, name, 2);
    checks::dtype_is(*bias, name, args.k.dtype);
    checks::size_is(*bias, name, 0, args.k.size(1), "head_num, k.size(1)");
    checks::size_is(*bias, name, 1, args.k.size(2), "head_dim, k.size(2)");
    PAGEDKV_CHECK(bias->is_contiguous(), name, ": expected a contiguous tensor, got ",
                  bias->describe());
  }

  // 4. Memory behind every tensor with elements.
  checks::not_null(args.kv_cache, "kv_cache");
  checks::not_null(args.k, "k");
  checks::not_null(args.v, "v");

  // 5. The batch: its index values, read (on the GPU: copied back), and every block offset.
  //    Deferred (a capture, or the deferred error mode): one check kernel on the call's stream,
  //    queued after the RoPE checks with the "dynamic" bases; its fault makes the kernels write
  //    nothing (pagedkv/deferred_checks.h).
  checks::TurbomindBatch batch;
  batch.cu_q_len = &args.cu_q_len;
  batch.cu_k_len = &args.cu_k_len;
  batch.cu_block_num = &args.cu_block_num;
  batch.readonly_block_num = &args.readonly_block_num;
  batch.blocks = &args.blocks;
  batch.rows_name = "k";
  batch.max_len = args.max_q_len;
  batch.max_len_name = "max_q_len";
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  checks::TurbomindCheck check;
  checks::turbomind_batch(batch, args.kv_cache, plan, deferred ? &check : nullptr);

  // 6. RoPE.
  plan.rope = checks::turbomind_rope(checks::rope_args_of(args), plan.layout.head_dim, plan.batch,
                                     device, deferred ? &check : nullptr);
  if (deferred) checks::enqueue_turbomind_check(*scope, check);
  return plan;
}

}  // namespace pagedkv
