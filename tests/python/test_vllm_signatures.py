"""pagedkv.vllm_ops has vLLM's `_custom_ops` names, argument names and order, and registers
vLLM's torch schemas. Needs no torch: the module imports torch only when an op is called.

Expected values are written from vLLM (vllm/_custom_ops.py and csrc/torch_bindings.cpp at
7bcae67b5de3f155e70026695285de25d096b801), not from pagedkv's descriptions, so that a change to a
description that breaks vLLM compatibility fails here.
"""

from __future__ import annotations

import inspect

from pagedkv import vllm_ops

VLLM_SIGNATURES = {
    "swap_blocks": ["src", "dst", "block_size_in_bytes", "block_mapping"],
    "reshape_and_cache": ["key", "value", "key_cache", "value_cache", "slot_mapping",
                          "kv_cache_dtype", "k_scale", "v_scale"],
    "reshape_and_cache_flash": ["key", "value", "key_cache", "value_cache", "slot_mapping",
                                "kv_cache_dtype", "k_scale", "v_scale"],
    "rms_norm": ["out", "input", "weight", "epsilon"],
    "fused_add_rms_norm": ["input", "residual", "weight", "epsilon"],
    "concat_and_cache_mla": ["kv_c", "k_pe", "kv_cache", "slot_mapping", "kv_cache_dtype",
                             "scale"],
    "concat_and_cache_mla_rope_fused": ["positions", "q_pe", "k_pe", "kv_c", "cos_sin_cache",
                                        "is_neox", "slot_mapping", "kv_cache", "kv_cache_dtype",
                                        "kv_cache_scale"],
    "convert_fp8": ["output", "input", "scale", "kv_dtype"],
    "cp_gather_cache": ["src_cache", "dst", "block_table", "cu_seq_lens", "batch_size",
                        "seq_starts"],
    "indexer_k_quant_and_cache": ["k", "kv_cache", "slot_mapping", "quant_block_size",
                                  "kv_cache_dtype"],
    "cp_gather_indexer_k_quant_cache": ["kv_cache", "dst_k", "dst_scale", "block_table",
                                        "cu_seq_lens"],
    "gather_and_maybe_dequant_cache": ["src_cache", "dst", "block_table", "cu_seq_lens",
                                       "token_to_seq", "num_tokens", "kv_cache_dtype", "scale",
                                       "seq_starts"],
    "cp_gather_and_upconvert_fp8_kv_cache": ["src_cache", "dst", "block_table", "seq_lens",
                                             "workspace_starts", "batch_size"],
    # The activations' older Python wrappers (vLLM ~v0.5-0.6, e.g. silu_and_mul(out, x)) passed
    # both tensors positionally to torch.ops._C.<name>, whose schemas name them (out | result,
    # input); pagedkv uses out and input.
    "silu_and_mul": ["out", "input"],
    "gelu_and_mul": ["out", "input"],
    "gelu_tanh_and_mul": ["out", "input"],
    "apply_repetition_penalties": ["logits", "prompt_mask", "output_mask",
                                   "repetition_penalties"],
    # The newest wrapper (vllm/_custom_ops.py @0002bde) adds rope_dim_offset and inverse.
    "rotary_embedding": ["positions", "query", "key", "head_size", "cos_sin_cache", "is_neox",
                         "rope_dim_offset", "inverse"],
    # The newest wrapper (vllm/_custom_ops.py @0002bde) adds prefill_tokens_with_context and
    # output_scale; it passes output_lse second to torch.ops._C.merge_attn_states.
    "merge_attn_states": ["output", "prefix_output", "prefix_lse", "suffix_output", "suffix_lse",
                          "output_lse", "prefill_tokens_with_context", "output_scale"],
    # vllm/_custom_ops.py @7bcae67 (the last wrappers of the v1/v2 ops).
    "paged_attention_v1": ["out", "query", "key_cache", "value_cache", "num_kv_heads", "scale",
                           "block_tables", "seq_lens", "block_size", "max_seq_len",
                           "alibi_slopes", "kv_cache_dtype", "k_scale", "v_scale", "tp_rank",
                           "blocksparse_local_blocks", "blocksparse_vert_stride",
                           "blocksparse_block_size", "blocksparse_head_sliding_step"],
    "paged_attention_v2": ["out", "exp_sum", "max_logits", "tmp_out", "query", "key_cache",
                           "value_cache", "num_kv_heads", "scale", "block_tables", "seq_lens",
                           "block_size", "max_seq_len", "alibi_slopes", "kv_cache_dtype",
                           "k_scale", "v_scale", "tp_rank", "blocksparse_local_blocks",
                           "blocksparse_vert_stride", "blocksparse_block_size",
                           "blocksparse_head_sliding_step"],
    # vllm/_custom_ops.py @7bcae67 (fp8_out_scale, mfma_type) and @0002bde (the newest wrapper
    # adds use_interleaved_v_cache); it calls torch.ops._rocm_C.paged_attention.
    "paged_attention_rocm": ["out", "exp_sum", "max_logits", "tmp_out", "query", "key_cache",
                             "value_cache", "num_kv_heads", "scale", "block_tables", "seq_lens",
                             "query_start_loc", "block_size", "max_seq_len", "alibi_slopes",
                             "kv_cache_dtype", "k_scale", "v_scale", "fp8_out_scale",
                             "mfma_type", "use_interleaved_v_cache"],
}

# vLLM's wrappers' default values (vllm/_custom_ops.py).
VLLM_DEFAULTS = {
    "cp_gather_cache": {"seq_starts": None},
    "gather_and_maybe_dequant_cache": {"seq_starts": None},
    "rotary_embedding": {"rope_dim_offset": 0, "inverse": False},  # @0002bde
    "merge_attn_states": {"output_lse": None, "prefill_tokens_with_context": None,
                          "output_scale": None},  # @0002bde
    "paged_attention_v1": {"tp_rank": 0, "blocksparse_local_blocks": 0,
                           "blocksparse_vert_stride": 0, "blocksparse_block_size": 64,
                           "blocksparse_head_sliding_step": 0},
    "paged_attention_v2": {"tp_rank": 0, "blocksparse_local_blocks": 0,
                           "blocksparse_vert_stride": 0, "blocksparse_block_size": 64,
                           "blocksparse_head_sliding_step": 0},
    # mfma_type: "fp8" if envs.VLLM_ROCM_FP8_MFMA_PAGE_ATTN else "f16"; the variable is unset
    # by default, so "f16".
    "paged_attention_rocm": {"fp8_out_scale": None, "mfma_type": "f16",
                             "use_interleaved_v_cache": False},
}

# The schemas as vLLM registers them, with the Python wrappers' argument names (vLLM's schema
# calls rms_norm's first argument `result`; the Python wrapper and pagedkv call it `out`).
VLLM_SCHEMAS = {
    "swap_blocks":
        "swap_blocks(Tensor src, Tensor! dst, int block_size_in_bytes, Tensor block_mapping) -> ()",
    "reshape_and_cache":
        "reshape_and_cache(Tensor key, Tensor value, Tensor! key_cache, Tensor! value_cache, "
        "Tensor slot_mapping, str kv_cache_dtype, Tensor k_scale, Tensor v_scale) -> ()",
    "reshape_and_cache_flash":
        "reshape_and_cache_flash(Tensor key, Tensor value, Tensor! key_cache, "
        "Tensor! value_cache, Tensor slot_mapping, str kv_cache_dtype, Tensor k_scale, "
        "Tensor v_scale) -> ()",
    "rms_norm": "rms_norm(Tensor! out, Tensor input, Tensor weight, float epsilon) -> ()",
    "fused_add_rms_norm":
        "fused_add_rms_norm(Tensor! input, Tensor! residual, Tensor weight, float epsilon) -> ()",
    "concat_and_cache_mla":
        "concat_and_cache_mla(Tensor kv_c, Tensor k_pe, Tensor! kv_cache, Tensor slot_mapping, "
        "str kv_cache_dtype, Tensor scale) -> ()",
    "concat_and_cache_mla_rope_fused":
        "concat_and_cache_mla_rope_fused(Tensor positions, Tensor! q_pe, Tensor! k_pe, "
        "Tensor kv_c, Tensor cos_sin_cache, bool is_neox, Tensor slot_mapping, Tensor! kv_cache, "
        "str kv_cache_dtype, Tensor kv_cache_scale) -> ()",
    # vLLM's schema: convert_fp8(Tensor! dst_cache, Tensor src_cache, float scale,
    # str kv_cache_dtype); its Python wrapper calls them output, input, scale, kv_dtype.
    "convert_fp8": "convert_fp8(Tensor! output, Tensor input, float scale, str kv_dtype) -> ()",
    "cp_gather_cache":
        "cp_gather_cache(Tensor src_cache, Tensor! dst, Tensor block_table, Tensor cu_seq_lens, "
        "int batch_size, Tensor? seq_starts) -> ()",
    # vLLM's schema calls the last argument kv_cache_dtype too (its C++ function: scale_fmt).
    "indexer_k_quant_and_cache":
        "indexer_k_quant_and_cache(Tensor k, Tensor! kv_cache, Tensor slot_mapping, "
        "int quant_block_size, str kv_cache_dtype) -> ()",
    "cp_gather_indexer_k_quant_cache":
        "cp_gather_indexer_k_quant_cache(Tensor kv_cache, Tensor! dst_k, Tensor! dst_scale, "
        "Tensor block_table, Tensor cu_seq_lens) -> ()",
    "gather_and_maybe_dequant_cache":
        "gather_and_maybe_dequant_cache(Tensor src_cache, Tensor! dst, Tensor block_table, "
        "Tensor cu_seq_lens, Tensor token_to_seq, int num_tokens, str kv_cache_dtype, "
        "Tensor scale, Tensor? seq_starts) -> ()",
    "cp_gather_and_upconvert_fp8_kv_cache":
        "cp_gather_and_upconvert_fp8_kv_cache(Tensor src_cache, Tensor! dst, Tensor block_table, "
        "Tensor seq_lens, Tensor workspace_starts, int batch_size) -> ()",
    # vLLM's schema calls silu_and_mul's first argument `result`, gelu_and_mul's `out`.
    "silu_and_mul": "silu_and_mul(Tensor! out, Tensor input) -> ()",
    "gelu_and_mul": "gelu_and_mul(Tensor! out, Tensor input) -> ()",
    "gelu_tanh_and_mul": "gelu_tanh_and_mul(Tensor! out, Tensor input) -> ()",
    # vLLM registers it as apply_repetition_penalties_ (in place); the Python wrapper drops the
    # underscore.
    "apply_repetition_penalties":
        "apply_repetition_penalties(Tensor! logits, Tensor prompt_mask, Tensor output_mask, "
        "Tensor repetition_penalties) -> ()",
    # vLLM's 6-argument schema (key optional and written: Tensor!?), with the newest wrapper's
    # two arguments and their defaults after is_neox.
    "rotary_embedding":
        "rotary_embedding(Tensor positions, Tensor! query, Tensor!? key, int head_size, "
        "Tensor cos_sin_cache, bool is_neox, int rope_dim_offset=0, bool inverse=False) -> ()",
    # vLLM's schema (torch_bindings.cpp @00256d5) puts output_lse second and writes
    # `int!? prefill_tokens_with_context`; pagedkv registers the Python wrapper's order, with
    # the types torch's schema parser accepts for `int | None = None`.
    "merge_attn_states":
        "merge_attn_states(Tensor! output, Tensor prefix_output, Tensor prefix_lse, "
        "Tensor suffix_output, Tensor suffix_lse, Tensor!? output_lse=None, "
        "int? prefill_tokens_with_context=None, Tensor? output_scale=None) -> ()",
    # vLLM registers it as _rocm_C.paged_attention (csrc/rocm/torch_bindings.cpp) with only
    # `out` marked written, no defaults and no use_interleaved_v_cache (the newest wrapper's
    # extra); pagedkv registers the wrapper's name, arguments and defaults, and marks the three
    # workspaces it writes, as for paged_attention_v2.
    "paged_attention_rocm":
        "paged_attention_rocm(Tensor! out, Tensor! exp_sum, Tensor! max_logits, "
        "Tensor! tmp_out, Tensor query, Tensor key_cache, Tensor value_cache, int num_kv_heads, "
        "float scale, Tensor block_tables, Tensor seq_lens, Tensor? query_start_loc, "
        "int block_size, int max_seq_len, Tensor? alibi_slopes, str kv_cache_dtype, "
        "Tensor k_scale, Tensor v_scale, Tensor? fp8_out_scale=None, str mfma_type='f16', "
        "bool use_interleaved_v_cache=False) -> ()",
}


def test_every_op_has_vllms_signature():
    for name, parameters in VLLM_SIGNATURES.items():
        assert list(inspect.signature(getattr(vllm_ops, name)).parameters) == parameters, name


def test_every_op_has_vllms_schema():
    for name, schema in VLLM_SCHEMAS.items():
        assert vllm_ops.schema(name) == schema


def test_defaults_are_vllms():
    for name, defaults in VLLM_DEFAULTS.items():
        parameters = inspect.signature(getattr(vllm_ops, name)).parameters
        for parameter in parameters.values():
            expected = defaults.get(parameter.name, inspect.Parameter.empty)
            if isinstance(expected, str):  # a string default: equal, not the same object
                assert parameter.default == expected, (name, parameter.name)
            else:
                assert parameter.default is expected, (name, parameter.name)


def test_no_op_is_left_out():
    assert set(VLLM_SIGNATURES) <= set(vllm_ops.__all__)
