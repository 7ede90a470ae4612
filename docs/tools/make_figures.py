#!/usr/bin/env python3
"""Draws the pictures and the results tables that the pagedkv chapters include.

Run it before sphinx-build (scripts/docs.sh does):

    .venv/bin/python docs/tools/make_figures.py            # writes docs/_generated/

Outputs (the folder is ignored by git; everything is regenerated on every docs build):

    docs/_generated/figures/*.png   the layout pictures of chapters/*.md, each twice: <name>.png
                                    with English labels and <name>.zh_CN.png with Chinese ones
                                    (docs/conf.py's figure_language_filename makes the zh_CN
                                    build show the second)
    docs/_generated/results_<op>.md the measured rows of <op> from the newest results/*.json,
                                    or a "no recorded results yet" note when no run exists
                                    (snippets for {include}; docs/conf.py excludes
                                    docs/_generated/*.md from the pages)
    docs/_generated/results_W9_<op>.md
                                    the norms (rms_norm, fused_add_rms_norm) on workload W9:
                                    time, % of copy and agreement (rel_err, tolerance) per
                                    hidden size, dtype and token count, and the plot below; or
                                    a "no recorded W9 rows yet" note
    docs/_generated/results_headline.md
                                    the start page's table: per op, the optimized kernel's % of
                                    a size-matched copy at the largest size (lowest and highest
                                    over its workload variants), from the newest results file
    docs/_generated/results_figures/<op>_W9.png (and <op>_W9.zh_CN.png)
                                    % of copy against tokens, one panel per hidden size, naive
                                    and optimized per dtype; drawn only when W9 rows exist

Every picture is computed from the same index formulas as the CPU reference (slot = block *
block_size + offset, the NHD / HND strides, the legacy x-split), so the pictures cannot drift
from the text. Both languages are drawn by the same code; only the words come from a table per
language (LABELS). The Chinese pictures need a CJK font: Debian's fonts-noto-cjk (installed by
scripts/setup.sh); without it the script stops with that message instead of drawing empty
boxes. The script is deterministic: no randomness, no network, no time stamps in the PNG files,
so two runs give identical bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parent))  # results_files, next door
import results_files  # noqa: E402

matplotlib.use("Agg")  # no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "_generated"
RESULTS_DIR = REPO / "results"

# One colour per token (or per slot); grey for memory nobody wrote.
TOKEN_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
                "#76b7b2", "#edc948", "#ff9da7", "#9c755f"]
UNTOUCHED = "#e6e6e6"
FREE = "#f4f4f4"
EDGE = "#444444"
DPI = 150

# Matplotlib settings of every picture; draw_figure applies them (with the language's font) for
# the time of one drawing only, so that importing this module changes no one else's plots.
BASE_RC = {
    "font.size": 9,
    "savefig.dpi": DPI,
    "svg.hashsalt": "pagedkv",
}


# ------------------------------------------------------------------------------------------------
# Languages: the words of every picture, and the fonts that can draw them
# ------------------------------------------------------------------------------------------------

LANGUAGES = ("en", "zh_CN")

# DejaVu has no Chinese glyphs; Noto Sans CJK SC (Debian: fonts-noto-cjk) has Latin ones too, so
# one font draws a whole Chinese label, code names included.
FONTS = {
    "en": {"sans": "DejaVu Sans", "mono": "DejaVu Sans Mono"},
    "zh_CN": {"sans": "Noto Sans CJK SC", "mono": "Noto Sans Mono CJK SC"},
}

# Every word drawn into a picture, per language; {placeholders} are filled by the drawing code.
# Code names (slot_mapping, block_table, key_cache, NHD, kernel names) stay English in both, as
# in docs/glossary.md; the Chinese terms are the glossary's (块, 槽位, 块表, 步长, ...) and those
# of the chapters' translated captions (空闲链表, 填充, 旧版, 分段, 片段, 在途).
LABELS = {
    "en": {
        "list_sep": ", ",
        # paged_cache.png
        "logical_blocks_title": "logical blocks\n(what a request sees)",
        "physical_blocks_title": "physical blocks\n(one pool on the GPU)",
        "request": "request {name}",
        "logical_block": "logical block {index}",
        "pool_block": "block {block}",
        "pool_block_free": "block {block}:  free",
        "pool_block_shared": "block {block}:  shared, ref_cnt = {refs}",
        "free_list": "free list: {blocks}",
        "paged_cache_note": "block_size = {block_size} slots; cell label = position in the request",
        # slot_mapping.png
        "token_t": "token t",
        "pad_token": "t{t}: pad",
        "block": "block {block}",
        "padding_note": "padding (-1): nothing written",
        # nhd_hnd.png
        "nhd_row": "memory {element:2d}:  offset {offset}, head {head}",
        "strides": "strides ({s0}, {s1}, {s2}, 1)",
        "nhd_title": "{layout}: logical [num_blocks, block_size, H, D],\n{strides}",
        "nhd_note": "one block, block_size = {block_size}, H = {num_heads} heads, D = {head_size}; "
                    "colour = offset in the block (lighter = head 1); memory runs top to bottom",
        # kv_allocation.png
        "flashinfer_title": "FlashInfer style  [num_blocks, 2, ...]",
        "flashinfer_note": "key_cache = kv[:, 0], value_cache = kv[:, 1]:  "
                           "block_stride = 2 × block_size × H × D",
        "flashattention_title": "FlashAttention style  [2, num_blocks, ...]",
        "flashattention_note": "key_cache = kv[0], value_cache = kv[1]:  "
                               "block_stride = block_size × H × D",
        "kv_block": "{kind} blk {block}",
        "memory_arrow": "memory →",
        # legacy_layout.png
        "chunk_row": "chunk {chunk}, offset {offset}",
        "legacy_key_title": "key_cache block: [H, D/x, block_size, x]",
        "legacy_key_note": "one row = x elements\n= 16 bytes of one token",
        "legacy_value_title": "value_cache block: [H, D, block_size]",
        "legacy_value_note": "one token = one column:\nits elements are\nblock_size apart",
        "offset_cell": "o{offset}",
        "legacy_note": "one block, one head, D = {head_size}, block_size = {block_size}, x = {x} "
                       "(fp32: 4 × 4 bytes = 16 bytes); colour and oN = offset N in the block; "
                       "memory runs row by row",
        # token_placement*.png
        "placement_layouts": {
            "NHD": "NHD  (reshape_and_cache_flash)",
            "HND": "HND  (reshape_and_cache_flash)",
            "legacy key": "legacy key_cache  [H, D/x, block_size, x]  (reshape_and_cache)",
            "legacy value": "legacy value_cache  [H, D, block_size]  (reshape_and_cache)",
        },
        "token_to_slot": "t{t} → slot {slot}",
        "token_skipped": "t{t}: slot -1, skipped",
        "placement_note": "block_size = {block_size}, H = {num_heads}, D = {head_size}, x = {x} "
                          "(kept small; a bf16 cache has x = 8); cell label = head.element; "
                          "grey = untouched",
        # mla_entries.png
        "mla_auto": "auto (bf16): {bytes} bytes = kv_c 512 × bf16 + k_pe 64 × bf16",
        "mla_fp8": "fp8 (e4m3 or e5m2): {bytes} bytes = kv_c 512 × fp8 + k_pe 64 × fp8",
        "mla_ds": "fp8_ds_mla: {bytes} bytes = kv_c in 4 tiles of 128 × e4m3 + 4 fp32 tile scales "
                  "+ k_pe 64 × bf16",
        "mla_kv_c": "kv_c",
        "mla_k_pe": "k_pe",
        "mla_tile": "tile {tile}",
        "mla_scales": "scales",
        "mla_note": "one cache entry per slot, drawn to scale; the numbers under the bars count "
                    "bytes from the start of the entry",
        # gather_lookup.png
        "gather_row": "workspace row k",
        "gather_position": "position in sequence b",
        "gather_slot": "slot",
        "gather_inputs": "the inputs",
        "gather_note": "b = the sequence with cu_seq_lens[b] <= k < cu_seq_lens[b + 1] (token_to_seq[k]); "
                       "position = seq_starts[b] + k - cu_seq_lens[b];\n"
                       "slot = block_table[b, position / block_size] × block_size "
                       "+ position % block_size; white slots are not read",
        # skewed_split.png
        "skew_rows": "the batch as dst rows: one sequence of {long} rows, then {short} sequences "
                     "of {each} rows",
        "skew_by_seq": "split by sequence (upstream):\nCTA (b, s), {splits} splits per sequence",
        "skew_by_rows": "split by rows (pagedkv):\nruns of {run} rows, one warp each",
        "skew_warp": "warp {warp}",
        "skew_longest": "longest: {rows} rows",
        "skew_note": "schematic: bar = the rows one worker copies, one after the other; the longest bar "
                     "sets the time. The kernels use 16, 4 or 2 splits (upstream)\nand runs of 8 rows "
                     "(pagedkv); a run may cross into the next sequence",
        # indexer_cache.png
        "idx_codes": "slot {slot}: 128 codes",
        "idx_scales": "4 fp32 scales, one per slot",
        "idx_real": "the layout: one block of {bytes} bytes, block-planar (all codes, then all "
                    "scales)",
        "idx_naive": "what the shape [block_size, {record}] suggests, one record per slot: "
                     "NOT the layout",
        "idx_picked": "gathered row t = slot {slot}: dst_k[t] = bytes {codes} to {last} of the "
                      "block, "
                      "dst_scale[t] = bytes {scale} to {scale} + 3",
        "idx_note": "block_size = 4 here (DeepSeek-V3.2 uses 64: 8192 code bytes, then 256 scale "
                    "bytes); head_dim = 128, one scale per 128 codes; numbers count bytes from the "
                    "start of the block",
        # turbomind_block.png
        "tm_title": "one layer region of a TurboMind block, {heads} KV heads × {dim}, "
                    "block_seq_len = {bsl}:\nevery head's K rows, then its V rows; then, when "
                    "quantized, every head's K and V [scale, zero] pairs",
        "tm_policy": "quant_policy {policy}\n{bytes} bytes",
        "tm_data": "h{h} {kv}\n{rows} × {row} B",
        "tm_params": "[scale, zero]: h0 K, h0 V, h1 K, h1 V\n({size} B each)",
        "tm_note": "each bar is drawn to its own scale; numbers count bytes from the start of the "
                   "layer region (layer l starts l × layer_size bytes into the block).\nLlama-3-8B "
                   "(8 heads × 128, 64 tokens): 262,144 / 135,168 / 69,632 bytes per layer",
        # dsv4_page.png
        "v4_page": "one page of the fp8_ds_mla K cache, block_size = {b}: the data records, then "
                   "the scale records, then padding ({stride} bytes in all)",
        "v4_record": "token {p}\n576 B",
        "v4_scales": "scale\nrecords",
        "v4_pad": "padding",
        "v4_zoom": "token {p}'s data record, bytes {first} to {last}: 7 quant blocks of 64 E4M3 "
                   "codes, then the 64 RoPE dims as bf16",
        "v4_block": "block {j}\n64 codes",
        "v4_rope": "RoPE: 64 bf16\n(128 B)",
        "v4_scale_zoom": "token {p}'s scale record, bytes {first} to {last}:\nbyte j is the "
                         "UE8M0 code e + 127 of quant block j;\nbyte 7 is a pad byte, always 0",
            "v4_note": "block_size = 4 here; DeepSeek V4's SWA cache uses 64: 64 × 584 = 37,376 bytes, "
                   "padded to a page stride of 37,440.\nNumbers count bytes from the start of the "
                   "page",
        # value_pieces.png
        "token": "token",
        "slot": "slot",
        "value_row": "value row d",
        "pieces_note": "{pieces} pieces: {full} full 16-byte groups (one vector store each), "
                       "{short} short pieces (element stores); padding writes nothing",
        "pieces_geometry": "block_size = {block_size}, fp32 cache: {group} offsets = 16 bytes "
                           "(bf16: 8, fp8: 16); a box = one 16-byte group of the row",
        # swap_blocks.png
        "naive_title": "naive: one cudaMemcpyAsync per pair, each pays the fixed cost",
        "call": "call",
        "optimized_title": "optimized (copy_kernel): one launch, grid = tiles × pairs, "
                           "all blocks in flight together",
        "launch": "launch",
        "time": "time",
        "swap_note": "schematic, not to scale: grey = fixed cost of one call, "
                     "colour = bytes of one block on the link",
        # results_figures/<op>_W9.png
        "w9_title": "{op}, workload W9: naive (dashed) and optimized (solid)",
        "w9_panel": "hidden size {hidden}",
        "w9_tokens": "tokens (rows)",
        "w9_pct": "% of a size-matched copy (same run)",
        # results_figures/<op>_W8.png
        "w8_title": "{op}, workload W8: achieved bandwidth, naive (dashed) and optimized (solid)",
        "w8_panel": "{dtype} cache",
        "w8_tokens": "batch × context (tokens)",
        "w8_gbps": "GB/s under the byte model",
        "w8_line": "{impl} · context {context}",
        "w8_roof": "size-matched copy (same run)",
        # three_versions.png (the start page)
        "three_cpu_title": "CPU reference",
        "three_cpu_sub": "plain loops,\none element at a time",
        "three_naive_title": "naive CUDA kernel",
        "three_naive_sub": "one thread\nper element",
        "three_opt_title": "optimized CUDA kernel",
        "three_opt_sub": "16-byte vectors,\nmany loads in flight",
        "three_dest": "its slot:\nslot_mapping[t]",
        "three_cpu_note": "one thread copies element\n0, 1, 2, … in turn",
        "three_naive_note": "16 threads, each loads\nand stores 2 bytes",
        "three_opt_note": "2 threads, each moves 16 bytes;\nloads of many rows in flight",
        "layer_hidden": "hidden states of the step's tokens",
        "layer_cache": "paged KV cache",
        "layer_cache_write": "writes K, V",
        "layer_cache_read": "reads every block\nof the sequence",
        "layer_attention": "attention, o_proj, residual add",
        "layer_next": "next layer (× L layers)",
        "layer_after": "after the last layer, once per step:",
        "layer_logits": "final norm, lm_head → logits [num_seqs, vocab_size]",
        "layer_sample": "temperature, top-k / top-p → next token",
        "layer_legend_chapter": "ops of this chapter",
        "layer_legend_cache": "cache ops",
        "layer_legend_other": "other work of the layer",
        "layer_note": "one decoder layer of a Llama-style model, for the tokens of one step; "
                      "schematic",
        "three_footer": "the same op three times: reshape_and_cache_flash writes one token's "
                        "key row (16 bf16 = 32 bytes) into its slot",
        "rope_cache": "the cos_sin_cache row of the token's position p: the cosines of pairs "
                      "0 … 3, then their sines",
        "rope_neox": "GPT-NeoX style, is_neox = true: pair j is elements j and j + rot_dim / 2 "
                     "(the two halves)",
        "rope_gptj": "GPT-J style, is_neox = false: pair j is elements 2j and 2j + 1 "
                     "(neighbours)",
        "rope_offset": "partial rotary, NeoX: rope_dim_offset = 2 and rot_dim = 4 (a cache row "
                       "of 4), head_size = 8; the grey elements stay as they are",
        "rope_note": "one head of head_size = 8 elements; one colour = one pair, turned by the "
                     "cosine and sine of its colour; schematic",
        "sparse_local": "topk_indices[t]: the decode token's local top-k, positions in its "
                        "request's compressed sequence (-1: empty)",
        "sparse_table": "block_table[req]: the request's compressed-K blocks, block_size = {b} "
                        "compressed tokens each",
        "sparse_global": "global_topk_indices[t]: slot = block × {b} + local % {b}, packed to "
                         "the left; topk_lens[t] = {n}",
        "sparse_mixed": "sparse_indices[t] for FlashInfer: the window's {w} SWA slots first, "
                        "then each local index's slot in its own column; length {w} + {n}",
        "sparse_column": "column {c}",
        "sparse_note": "one decode token of one request, topk = {k}; one colour = one block of "
                       "the request; schematic",
        # merge_layout.png
        "merge_prefix": "prefix_output [N, H, D]: attention over the first key set "
                        "(one cell = one 16-byte pack)",
        "merge_suffix": "suffix_output [N, H, D]: attention over the second key set",
        "merge_prefix_lse": "prefix_lse [H, N], head-major: row h holds head h of every token",
        "merge_suffix_lse": "suffix_lse [H, N], the same layout",
        "merge_output": "output [N, H, D]: prefix · a / (a + b) + suffix · b / (a + b), "
                        "a = exp(lse_p − M), b = exp(lse_s − M), M = max",
        "merge_lanes": "outlined: what the row of token 1, head 0 reads and writes;\none lane "
                       "per pack (0 … 3): the first lane reads lse[0, 1] of both LSE tensors and "
                       "passes the two scales to the others by shuffles",
        "merge_note": "N = 3 tokens, H = 2 heads, head_size = 4 packs (32 bf16); one colour = one "
                      "(token, head); schematic",
    },
    "zh_CN": {
        "list_sep": "、",
        "logical_blocks_title": "逻辑块\n（请求看到的）",
        "physical_blocks_title": "物理块\n（GPU 上的一个大池子）",
        "request": "请求 {name}",
        "logical_block": "逻辑块 {index}",
        "pool_block": "块 {block}",
        "pool_block_free": "块 {block}：空闲",
        "pool_block_shared": "块 {block}：共享，ref_cnt = {refs}",
        "free_list": "空闲链表：{blocks}",
        "paged_cache_note": "block_size = {block_size} 个槽位；单元格标签 = token 在请求中的位置",
        "token_t": "token t",
        "pad_token": "t{t}: 填充",  # like the neighbouring cells "t0: A6"
        "block": "块 {block}",
        "padding_note": "填充（-1）：不写入",
        "nhd_row": "内存 {element:2d}：块内偏移 {offset}，头 {head}",
        "strides": "步长 ({s0}, {s1}, {s2}, 1)",
        "nhd_title": "{layout}：逻辑形状 [num_blocks, block_size, H, D]，\n{strides}",
        "nhd_note": "一个块，block_size = {block_size}，H = {num_heads} 个头，D = {head_size}；"
                    "颜色 = 块内偏移（浅色 = 头 1）；内存从上往下排列",
        "flashinfer_title": "FlashInfer 风格  [num_blocks, 2, ...]",
        "flashinfer_note": "key_cache = kv[:, 0]，value_cache = kv[:, 1]："
                           "block_stride = 2 × block_size × H × D",
        "flashattention_title": "FlashAttention 风格  [2, num_blocks, ...]",
        "flashattention_note": "key_cache = kv[0]，value_cache = kv[1]："
                               "block_stride = block_size × H × D",
        "kv_block": "{kind} 块 {block}",
        "memory_arrow": "内存 →",
        "chunk_row": "分段 {chunk}，块内偏移 {offset}",
        "legacy_key_title": "key_cache 的一个块：[H, D/x, block_size, x]",
        "legacy_key_note": "一行 = x 个元素\n= 一个 token 的 16 字节",
        "legacy_value_title": "value_cache 的一个块：[H, D, block_size]",
        "legacy_value_note": "一个 token = 一列：\n它的元素彼此相隔\nblock_size 个元素",
        "offset_cell": "o{offset}",
        "legacy_note": "一个块，一个头，D = {head_size}，block_size = {block_size}，x = {x}"
                       "（fp32：4 × 4 字节 = 16 字节）；颜色和 oN = 块内偏移 N；内存逐行排列",
        "placement_layouts": {
            "NHD": "NHD（reshape_and_cache_flash）",
            "HND": "HND（reshape_and_cache_flash）",
            "legacy key": "旧版 key_cache  [H, D/x, block_size, x]（reshape_and_cache）",
            "legacy value": "旧版 value_cache  [H, D, block_size]（reshape_and_cache）",
        },
        "token_to_slot": "t{t} → 槽位 {slot}",
        "token_skipped": "t{t}：槽位 -1，跳过",
        "placement_note": "block_size = {block_size}，H = {num_heads}，D = {head_size}，x = {x}"
                          "（故意取小；bf16 缓存的 x = 8）；单元格标签 = 头.元素；灰色 = 未写入",
        "token": "token",
        "slot": "槽位",
        "value_row": "值缓存第 d 行",
        "pieces_note": "{pieces} 个片段：{full} 个完整的 16 字节组（各一次向量存储），"
                       "{short} 个短片段（逐元素存储）；填充行不写入",
        "pieces_geometry": "block_size = {block_size}，fp32 缓存：{group} 个块内偏移 = 16 字节"
                           "（bf16：8，fp8：16）；一个方框 = 该行的一个 16 字节组",
        "naive_title": "朴素版本：每个块对一次 cudaMemcpyAsync，每次都付出固定开销",
        "call": "调用",
        "optimized_title": "优化版本（copy_kernel）：一次启动，网格 = tile 数 × 块对数，"
                           "所有块同时在途",
        "launch": "启动",
        "time": "时间",
        "swap_note": "示意图，未按比例：灰色 = 一次调用的固定开销，彩色 = 链路上一个块的字节",
        "w9_title": "{op}，工作负载 W9：朴素版本（虚线）与优化版本（实线）",
        "w9_panel": "隐藏维度 {hidden}",
        "w9_tokens": "token 数（行数）",
        "w9_pct": "占同次运行等量拷贝的 %",
        "w8_title": "{op}，工作负载 W8：实际带宽，朴素版本（虚线）与优化版本（实线）",
        "w8_panel": "{dtype} 缓存",
        "w8_tokens": "批大小 × 上下文（token 数）",
        "w8_gbps": "按字节模型计的 GB/s",
        "w8_line": "{impl} · 上下文 {context}",
        "w8_roof": "等量拷贝（同次运行）",
        "three_cpu_title": "CPU 参考实现",
        "three_cpu_sub": "朴素循环，\n一次一个元素",
        "three_naive_title": "朴素 CUDA 内核",
        "three_naive_sub": "每个元素\n一个线程",
        "three_opt_title": "优化 CUDA 内核",
        "three_opt_sub": "16 字节向量，\n多个读取同时在途",
        "three_dest": "它的槽位：\nslot_mapping[t]",
        "three_cpu_note": "一个线程依次拷贝\n元素 0、1、2、…",
        "three_naive_note": "16 个线程，\n各读写 2 字节",
        "three_opt_note": "2 个线程，各搬运 16 字节；\n多行的读取同时在途",
        "mla_auto": "auto（bf16）：{bytes} 字节 = kv_c 512 × bf16 + k_pe 64 × bf16",
        "mla_fp8": "fp8（e4m3 或 e5m2）：{bytes} 字节 = kv_c 512 × fp8 + k_pe 64 × fp8",
        "mla_ds": "fp8_ds_mla：{bytes} 字节 = kv_c 分为 4 组，每组 128 × e4m3 + 4 个 fp32 分组缩放因子 "
                  "+ k_pe 64 × bf16",
        "mla_kv_c": "kv_c",
        "mla_k_pe": "k_pe",
        "mla_tile": "分组 {tile}",
        "mla_scales": "缩放因子",
        "mla_note": "每个槽位一个缓存条目，按比例绘制；条形下方的数字是从条目开头算起的字节数",
        "gather_row": "工作区第 k 行",
        "gather_position": "在序列 b 中的位置",
        "gather_slot": "槽位",
        "gather_inputs": "输入",
        "gather_note": "b = 满足 cu_seq_lens[b] <= k < cu_seq_lens[b + 1] 的序列（token_to_seq[k]）；"
                       "position（在序列中的位置）= seq_starts[b] + k - cu_seq_lens[b]；\n"
                       "槽位 = block_table[b, position / block_size] × block_size "
                       "+ position % block_size；"
                       "白色槽位不被读取",
        "skew_rows": "以 dst 行表示的批次：一个 {long} 行的序列，随后是 {short} 个各 {each} 行的序列",
        "skew_by_seq": "按序列划分（上游）：\nCTA (b, s)，每个序列 {splits} 份",
        "skew_by_rows": "按行划分（pagedkv）：\n每段 {run} 行，每段一个 warp",
        "skew_warp": "warp {warp}",
        "skew_longest": "最长：{rows} 行",
        "skew_note": "示意图：条形 = 一个执行单元依次拷贝的行；最长的条形决定耗时。上游内核分为 16、4 或 2 份，"
                     "\npagedkv 每段 8 行；一段可以跨入下一个序列",
        "idx_codes": "槽位 {slot}：128 个编码",
        "idx_scales": "4 个 fp32 缩放因子，每个槽位一个",
        "idx_real": "实际布局：一个块共 {bytes} 字节，按块分平面（先是全部编码，再是全部缩放因子）",
        "idx_naive": "形状 [block_size, {record}] 暗示的每槽位一条记录：并非实际布局",
        "idx_picked": "收集的第 t 行 = 槽位 {slot}：dst_k[t] = 块内第 {codes} 到 {last} 字节，"
                      "dst_scale[t] = 第 {scale} 到 {scale} + 3 字节",
        "idx_note": "此处 block_size = 4（DeepSeek-V3.2 为 64：8192 字节编码，随后 256 字节缩放因子）；"
                    "head_dim = 128，每 128 个编码一个缩放因子；数字是从块开头算起的字节数",
        "tm_title": "TurboMind 块中的一个层区域，{heads} 个 KV 头 × {dim}，block_seq_len = {bsl}：\n"
                    "先是每个头的 K 行，再是它的 V 行；量化时之后是每个头 K 与 V 的 [scale, zero] 对",
        "tm_policy": "quant_policy {policy}\n{bytes} 字节",
        "tm_data": "h{h} {kv}\n{rows} × {row} B",
        "tm_params": "[scale, zero]：h0 K、h0 V、h1 K、h1 V\n（每段 {size} B）",
        "tm_note": "每条按各自的比例绘制；数字为从层区域起点算起的字节数（第 l 层从块内 l × layer_size "
                   "字节处开始）。\nLlama-3-8B（8 个头 × 128，64 个 token）：每层 262,144 / 135,168 / "
                   "69,632 字节",
        "v4_page": "fp8_ds_mla K 缓存的一个页，block_size = {b}：先是数据记录，再是缩放记录，最后是填充"
                   "（共 {stride} 字节）",
        "v4_record": "token {p}\n576 字节",
        "v4_scales": "缩放\n记录",
        "v4_pad": "填充",
        "v4_zoom": "token {p} 的数据记录，第 {first} 到 {last} 字节：7 个量化块，各 64 个 E4M3 编码，"
                   "随后是 64 个 RoPE 维度（bf16）",
        "v4_block": "块 {j}\n64 个编码",
        "v4_rope": "RoPE：64 个 bf16\n（128 B）",
        "v4_scale_zoom": "token {p} 的缩放记录，第 {first} 到 {last} 字节：\n第 j 字节是量化块 j 的 "
                         "UE8M0 编码 e + 127；\n第 7 字节是填充字节，恒为 0",
        "v4_note": "此处 block_size = 4；DeepSeek V4 的 SWA 缓存为 64：64 × 584 = 37,376 字节，"
                   "填充到 37,440 字节的页步长。\n数字是从页开头算起的字节数",
        "layer_hidden": "本步各 token 的隐藏状态",
        "layer_cache": "分页 KV 缓存",
        "layer_cache_write": "写入 K、V",
        "layer_cache_read": "读取该序列\n的每个块",
        "layer_attention": "注意力、o_proj、残差相加",
        "layer_next": "下一层（共 L 层）",
        "layer_after": "最后一层之后，每步一次：",
        "layer_logits": "最终归一化、lm_head → logits [num_seqs, vocab_size]",
        "layer_sample": "温度、top-k / top-p → 下一个 token",
        "layer_legend_chapter": "本章的算子",
        "layer_legend_cache": "缓存算子",
        "layer_legend_other": "层中的其他计算",
        "layer_note": "Llama 类模型的一个解码层，处理一步中的各 token；示意图",
        "three_footer": "同一个算子的三种实现：reshape_and_cache_flash 把一个 token 的 "
                        "key 行（16 个 bf16 = 32 字节）写入它的槽位",
        "rope_cache": "token 位置 p 对应的 cos_sin_cache 行：先是第 0 … 3 对的余弦，再是它们的正弦",
        "rope_neox": "GPT-NeoX 风格，is_neox = true：第 j 对是元素 j 与 j + rot_dim / 2（前后两半）",
        "rope_gptj": "GPT-J 风格，is_neox = false：第 j 对是元素 2j 与 2j + 1（相邻元素）",
        "rope_offset": "部分旋转，NeoX：rope_dim_offset = 2，rot_dim = 4（缓存行有 4 个值），"
                       "head_size = 8；灰色元素保持不变",
        "rope_note": "一个 head_size = 8 的注意力头；同一颜色 = 同一对元素，按同色的余弦和正弦旋转；示意图",
        "sparse_local": "topk_indices[t]：该解码 token 的局部 top-k，即它在所属请求压缩序列中的位置"
                        "（-1：空）",
        "sparse_table": "block_table[req]：该请求的压缩 K 缓存块，每块 block_size = {b} 个压缩 token",
        "sparse_global": "global_topk_indices[t]：槽位 = 块 × {b} + local % {b}，向左紧排；"
                         "topk_lens[t] = {n}",
        "sparse_mixed": "FlashInfer 用的 sparse_indices[t]：先是窗口的 {w} 个 SWA 槽位，"
                        "再是每个局部下标的槽位，各留在自己的列；长度 {w} + {n}",
        "sparse_column": "第 {c} 列",
        "sparse_note": "一个请求的一个解码 token，topk = {k}；同一颜色 = 请求的同一个块；示意图",
        "merge_prefix": "prefix_output [N, H, D]：对第一组键的注意力（一格 = 一个 16 字节的包）",
        "merge_suffix": "suffix_output [N, H, D]：对第二组键的注意力",
        "merge_prefix_lse": "prefix_lse [H, N]，头优先：第 h 行存各 token 的头 h",
        "merge_suffix_lse": "suffix_lse [H, N]，布局相同",
        "merge_output": "output [N, H, D]：prefix · a / (a + b) + suffix · b / (a + b)，"
                        "a = exp(lse_p − M)，b = exp(lse_s − M)，M 取两者最大值",
        "merge_lanes": "粗框：token 1、头 0 这一行读写的数据；\n每个包一条 lane（0 … 3）："
                       "第一条 lane 读取两个 LSE 张量的 lse[0, 1]，再用 shuffle 把两个比例系数传给其他 lane",
        "merge_note": "N = 3 个 token，H = 2 个头，head_size = 4 个包（32 个 bf16）；"
                      "同一颜色 = 同一个（token，头）；示意图",
    },
}
# The English layout titles, by layout name (kept under their old name for other scripts).
PLACEMENT_LAYOUTS = LABELS["en"]["placement_layouts"]


def note_style(lang):
    """Notes are set in italics in English; Chinese has no italic (a slanted CJK glyph is a faux
    italic), so its notes stay upright."""
    return "italic" if lang == "en" else "normal"


def figure_file(name, lang):
    """File name of figure `name` ("paged_cache.png") in `lang`: the English one keeps the name,
    the others get the language before the extension ("paged_cache.zh_CN.png"), which is the
    name docs/conf.py's figure_language_filename ("{root}.{language}{ext}") looks for."""
    if lang == "en":
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.{lang}{dot}{ext}"


class MissingFontError(RuntimeError):
    """A font that a language's pictures need is not installed."""


def require_fonts(lang):
    """Checks that matplotlib finds the fonts of `lang`; raises MissingFontError (with the
    package to install) instead of letting matplotlib fall back to a font without the glyphs."""
    for family in FONTS[lang].values():
        try:
            font_manager.findfont(font_manager.FontProperties(family=family),
                                  fallback_to_default=False)
        except ValueError:
            raise MissingFontError(
                f"make_figures: the {lang} pictures need the font {family!r}, which matplotlib "
                "does not find. Install it (Debian: apt-get install fonts-noto-cjk; "
                "scripts/setup.sh does), then remove matplotlib's font cache "
                f"({matplotlib.get_cachedir()}/fontlist-*.json) so that it is found.") from None


def draw_figure(draw, path, lang):
    """Runs `draw(path, lang)` with the fonts of `lang`. A glyph missing from the font (which
    would be drawn as an empty box) is an error, not a warning."""
    require_fonts(lang)
    with plt.rc_context({**BASE_RC, "font.family": FONTS[lang]["sans"]}), \
            warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph .* missing from font")
        draw(path, lang)


# ------------------------------------------------------------------------------------------------
# Drawing helpers
# ------------------------------------------------------------------------------------------------

def cell(ax, x, y, w, h, color, text="", text_color="black", fontsize=8, lw=0.8, hatch=None):
    """A labelled rectangle with its lower-left corner at (x, y)."""
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor=EDGE, linewidth=lw,
                           hatch=hatch))
    if text:
        # On hatched cells the label gets a white box so that it stays readable.
        box = dict(facecolor="white", edgecolor="none", pad=0.6) if hatch else None
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize,
                color=text_color, bbox=box)


def arrow(ax, start, end, color=EDGE, style="-|>", lw=1.0, rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=color,
                                 linewidth=lw, connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=1, shrinkB=1))


def tint(color, amount=0.45):
    """`color` mixed with white: the second head of a slot, the value block of a key block."""
    return matplotlib.colors.to_hex(
        [c + (1.0 - c) * amount for c in matplotlib.colors.to_rgb(color)])


def text_color_for(face):
    """White text on dark colours, black on light ones."""
    r, g, b = matplotlib.colors.to_rgb(face)
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "black"


def finish(fig, ax, path, xlim, ylim):
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    # metadata Software=None keeps the matplotlib version out of the file: identical bytes.
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# The worked example shared by chapter 1's pictures
# ------------------------------------------------------------------------------------------------

BLOCK_SIZE = 4
NUM_PHYSICAL_BLOCKS = 8
# Three requests; C shares its first block (a common prompt prefix) with A.
REQUESTS = {
    "A": {"tokens": 7, "block_table": [5, 1]},
    "B": {"tokens": 5, "block_table": [3, 6]},
    "C": {"tokens": 6, "block_table": [5, 0]},
}
REQUEST_COLORS = {"A": TOKEN_COLORS[0], "B": TOKEN_COLORS[1], "C": TOKEN_COLORS[2]}


def slot_of(block, offset, block_size=BLOCK_SIZE):
    """slot = block * block_size + offset (the formula of every cache writer)."""
    return block * block_size + offset


def physical_contents():
    """Which (request, position) every physical slot holds, from the block tables."""
    contents = {}
    for name, req in REQUESTS.items():
        for pos in range(req["tokens"]):
            block = req["block_table"][pos // BLOCK_SIZE]
            offset = pos % BLOCK_SIZE
            slot = slot_of(block, offset)
            contents.setdefault(slot, []).append((name, pos))
    return contents


def draw_paged_cache(path, lang="en"):
    """Logical blocks of three requests -> block tables -> physical blocks, with a free list."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(9.0, 5.2))
    w = h = 1.0
    contents = physical_contents()
    used = {b for r in REQUESTS.values() for b in r["block_table"]}
    ref_count = {b: sum(b in r["block_table"] for r in REQUESTS.values()) for b in used}

    # Left: each request's tokens, grouped in logical blocks of BLOCK_SIZE positions.
    ax.text(2.5, 11.2, words["logical_blocks_title"], ha="center", fontsize=9,
            weight="bold")
    ax.text(10.05, 11.2, "block_table", ha="center", fontsize=9, weight="bold")
    ax.text(16.0, 11.2, words["physical_blocks_title"], ha="center", fontsize=9,
            weight="bold")
    table_anchor = {}
    row_y = {"A": 9.0, "B": 5.8, "C": 2.6}
    for name, req in REQUESTS.items():
        y = row_y[name]
        color = REQUEST_COLORS[name]
        ax.text(-0.6, y + 0.5, words["request"].format(name=name), ha="right", va="center",
                fontsize=9)
        for lb in range(len(req["block_table"])):
            x0 = lb * (BLOCK_SIZE + 0.4)
            ax.text(x0 + 2.0, y + 1.25, words["logical_block"].format(index=lb), ha="center",
                    fontsize=7)
            for off in range(BLOCK_SIZE):
                pos = lb * BLOCK_SIZE + off
                filled = pos < req["tokens"]
                cell(ax, x0 + off * w, y, w, h, color if filled else "white",
                     str(pos) if filled else "", text_color_for(color) if filled else "black")
        # block_table entries, one per logical block, stacked: [lb] -> physical block
        for lb, pb in enumerate(req["block_table"]):
            x = 9.6
            yy = y + 0.9 - lb * 0.9
            ax.text(x - 0.15, yy + 0.45, f"[{lb}]", ha="right", va="center", fontsize=7)
            cell(ax, x, yy, 0.9, 0.9, "#fafafa", str(pb), fontsize=9)
            table_anchor[(name, lb)] = (x + 0.9, yy + 0.45)

    # Right: the physical pool, one row per block.
    pool_x = 14.0
    pool_top = 10.0
    for pb in range(NUM_PHYSICAL_BLOCKS):
        y = pool_top - pb * 1.25
        for off in range(BLOCK_SIZE):
            slot = slot_of(pb, off)
            owners = contents.get(slot)
            if pb not in used:
                cell(ax, pool_x + off * w, y, w, h, FREE, "", lw=0.6)
            elif owners:
                name, pos = owners[0]
                label = "\n".join(f"{n}{p}" for n, p in owners)
                face = REQUEST_COLORS[name] if len(owners) == 1 else "#8c8c8c"
                cell(ax, pool_x + off * w, y, w, h, face, label, text_color_for(face),
                     fontsize=7 if len(owners) == 1 else 6)
            else:
                cell(ax, pool_x + off * w, y, w, h, "white", "")
        if pb not in used:
            note = words["pool_block_free"].format(block=pb)
        elif ref_count[pb] > 1:
            note = words["pool_block_shared"].format(block=pb, refs=ref_count[pb])
        else:
            note = words["pool_block"].format(block=pb)
        ax.text(pool_x + BLOCK_SIZE + 0.3, y + 0.5, note, va="center", fontsize=8)

    for (name, lb), start in table_anchor.items():
        pb = REQUESTS[name]["block_table"][lb]
        end = (pool_x - 0.05, pool_top - pb * 1.25 + 0.5)
        arrow(ax, start, end, color=REQUEST_COLORS[name], lw=1.1)

    free_blocks = [b for b in range(NUM_PHYSICAL_BLOCKS) if b not in used]
    ax.text(pool_x + 2.0, pool_top - NUM_PHYSICAL_BLOCKS * 1.25 + 0.2,
            words["free_list"].format(blocks=words["list_sep"].join(str(b) for b in free_blocks)),
            ha="center", fontsize=9)
    ax.text(2.5, 0.9, words["paged_cache_note"].format(block_size=BLOCK_SIZE),
            ha="center", fontsize=8)
    finish(fig, ax, path, (-3.2, 22.5), (-0.4, 12.3))


# The engine step that wrote the newest tokens of the picture above: one decode token each for A
# and B, the two prompt tokens of C that its shared prefix block did not cover, and two padding
# rows (the step ran a CUDA graph captured for 6 tokens).
BATCH = [("A", 6), ("B", 4), ("C", 4), ("C", 5), (None, None), (None, None)]


def batch_slot_mapping():
    slots = []
    for name, pos in BATCH:
        if name is None:
            slots.append(-1)
            continue
        table = list(REQUESTS[name]["block_table"])
        block = table[pos // BLOCK_SIZE]
        slots.append(slot_of(block, pos % BLOCK_SIZE))
    return slots


def draw_slot_mapping(path, lang="en"):
    """The tokens of one batch, their slot_mapping entries and the slots they land in."""
    words = LABELS[lang]
    slots = batch_slot_mapping()
    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    w = 1.0
    tok_x0 = 4.0
    ax.text(tok_x0 - 0.4, 6.0, words["token_t"], ha="right", va="center", fontsize=9)
    ax.text(tok_x0 - 0.4, 4.6, "slot_mapping[t]", ha="right", va="center", fontsize=9)
    token_anchor = {}
    for t, ((name, pos), slot) in enumerate(zip(BATCH, slots)):
        x = tok_x0 + t * 1.6
        if name is None:
            cell(ax, x, 5.5, 1.3, w, "white", words["pad_token"].format(t=t), fontsize=7,
                 hatch="///")
        else:
            face = REQUEST_COLORS[name]
            cell(ax, x, 5.5, 1.3, w, face, f"t{t}: {name}{pos}", text_color_for(face), fontsize=7)
        cell(ax, x, 4.1, 1.3, w, "#fafafa", str(slot), fontsize=9)
        token_anchor[t] = (x + 0.65, 4.1)

    # The slot line: NUM_PHYSICAL_BLOCKS * BLOCK_SIZE slots, grouped by block.
    sw = 0.62
    line_y = 0.9
    line_x0 = 0.0
    for slot in range(NUM_PHYSICAL_BLOCKS * BLOCK_SIZE):
        block, offset = divmod(slot, BLOCK_SIZE)
        x = line_x0 + slot * sw + block * 0.25
        written = [t for t, s in enumerate(slots) if s == slot]
        face = REQUEST_COLORS[BATCH[written[0]][0]] if written else "white"
        cell(ax, x, line_y, sw, sw, face, str(slot), text_color_for(face) if written else "#777777",
             fontsize=6, lw=0.5)
        if offset == 0:
            ax.text(x + 2 * sw, line_y - 0.45, words["block"].format(block=block), ha="center",
                    fontsize=7)
        for t in written:
            arrow(ax, token_anchor[t], (x + sw / 2, line_y + sw), color=face, lw=1.0)
    ax.text(tok_x0 + 4 * 1.6 + 1.45, 3.75,
            words["padding_note"], ha="center", fontsize=8, style=note_style(lang))
    finish(fig, ax, path, (-0.5, 22.2), (0.1, 6.8))


# ------------------------------------------------------------------------------------------------
# Layouts of one block: NHD, HND, joint K/V allocations, the legacy x-split
# ------------------------------------------------------------------------------------------------

def nhd_offset(block, slot_in_block, head, d, block_size, num_heads, head_size, block_stride=None):
    """Element offset of [block, slot, head, d] in an NHD cache: strides (S0, H*D, D, 1)."""
    s0 = block_size * num_heads * head_size if block_stride is None else block_stride
    return block * s0 + slot_in_block * num_heads * head_size + head * head_size + d


def hnd_offset(block, slot_in_block, head, d, block_size, num_heads, head_size, block_stride=None):
    """Element offset of [block, slot, head, d] in an HND cache: strides (S0, D, bs*D, 1)."""
    s0 = block_size * num_heads * head_size if block_stride is None else block_stride
    return block * s0 + slot_in_block * head_size + head * block_size * head_size + d


def legacy_key_offset(block, slot_in_block, head, d, block_size, num_heads, head_size, x):
    """Offset of key[.., head, d] in key_cache[num_blocks, H, D/x, block_size, x]."""
    return ((((block * num_heads + head) * (head_size // x) + d // x) * block_size
             + slot_in_block) * x + d % x)


def legacy_value_offset(block, slot_in_block, head, d, block_size, num_heads, head_size):
    """Offset of value[.., head, d] in value_cache[num_blocks, H, D, block_size]."""
    return ((block * num_heads + head) * head_size + d) * block_size + slot_in_block


def draw_memory_rows(ax, x0, y_top, owner, row_len, cell_w, cell_h, colors, labels,
                     row_gap=0.0, fontsize=6):
    """Draws a flat memory range as rows of `row_len` cells; returns the bottom y."""
    n = len(owner)
    rows = math.ceil(n / row_len)
    for i in range(n):
        r, c = divmod(i, row_len)
        y = y_top - (r + 1) * cell_h - r * row_gap
        face = colors[i]
        cell(ax, x0 + c * cell_w, y, cell_w, cell_h, face, labels[i],
             text_color_for(face), fontsize=fontsize, lw=0.4)
    return y_top - rows * cell_h - (rows - 1) * row_gap


def draw_nhd_hnd(path, lang="en"):
    """Memory order of one block in NHD and in HND: one row = one run of head_size elements."""
    words = LABELS[lang]
    block_size, num_heads, head_size = 4, 2, 4
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for ax, name, offset_fn, strides in (
        (axes[0], "NHD", nhd_offset, words["strides"].format(
            s0=block_size * num_heads * head_size, s1=num_heads * head_size, s2=head_size)),
        (axes[1], "HND", hnd_offset, words["strides"].format(
            s0=block_size * num_heads * head_size, s1=head_size, s2=block_size * head_size)),
    ):
        n = block_size * num_heads * head_size
        owner = [None] * n
        for o in range(block_size):
            for h in range(num_heads):
                for d in range(head_size):
                    owner[offset_fn(0, o, h, d, block_size, num_heads, head_size)] = (o, h, d)
        colors = [TOKEN_COLORS[o] if h == 0 else tint(TOKEN_COLORS[o]) for (o, h, d) in owner]
        labels = [f"d{d}" for (o, h, d) in owner]
        cw, ch = 1.0, 0.8
        x0 = 3.2
        for r in range(n // head_size):
            o, h, _ = owner[r * head_size]
            y = 8 * ch - (r + 1) * ch - r * 0.12
            ax.text(x0 - 0.2, y + ch / 2,
                    words["nhd_row"].format(element=r * head_size, offset=o, head=h),
                    ha="right", va="center", fontsize=7, family=FONTS[lang]["mono"])
            for c in range(head_size):
                i = r * head_size + c
                cell(ax, x0 + c * cw, y, cw, ch, colors[i], labels[i], text_color_for(colors[i]),
                     fontsize=7, lw=0.5)
        ax.text(x0 + 0.0, 8 * ch + 0.35, words["nhd_title"].format(layout=name, strides=strides),
                fontsize=8, weight="bold", ha="center")
        ax.set_xlim(-3.6, 7.6)
        ax.set_ylim(-1.0, 7.4)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.text(0.5, 0.02, words["nhd_note"].format(block_size=block_size, num_heads=num_heads,
                                                 head_size=head_size),
             ha="center", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None})
    plt.close(fig)


def draw_kv_allocation(path, lang="en"):
    """Where K and V blocks sit in the two joint allocations, and what block_stride becomes."""
    words = LABELS[lang]
    num_blocks = 4
    fig, ax = plt.subplots(figsize=(9.0, 2.8))
    bw, bh = 1.0, 0.8
    rows = [
        (words["flashinfer_title"], [("K", b) if i % 2 == 0 else ("V", b)
                                     for b in range(num_blocks) for i in range(2)],
         words["flashinfer_note"]),
        (words["flashattention_title"], [("K", b) for b in range(num_blocks)]
         + [("V", b) for b in range(num_blocks)],
         words["flashattention_note"]),
    ]
    for r, (title, order, note) in enumerate(rows):
        y = 3.2 - r * 2.0
        ax.text(0.0, y + bh + 0.25, title, fontsize=8, weight="bold")
        for i, (kind, b) in enumerate(order):
            face = TOKEN_COLORS[b] if kind == "K" else tint(TOKEN_COLORS[b], 0.5)
            cell(ax, i * bw * 1.5, y, bw * 1.5, bh, face,
                 words["kv_block"].format(kind=kind, block=b), text_color_for(face), fontsize=7,
                 hatch=None if kind == "K" else "..")
        ax.text(0.0, y - 0.35, note, fontsize=7.5, style=note_style(lang))
    ax.text(12.3, 3.6, words["memory_arrow"], fontsize=8)
    finish(fig, ax, path, (-0.2, 13.5), (0.4, 4.6))


def draw_legacy_layout(path, lang="en"):
    """reshape_and_cache's layout of one block: key split into x-element chunks, value transposed."""
    words = LABELS[lang]
    block_size, num_heads, head_size, x = 4, 1, 8, 4
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.9), gridspec_kw={"width_ratios": [1.0, 1.0]})
    cw, ch = 0.9, 0.75

    # Key: [H, D/x, block_size, x]; one row = one x-chunk of one offset (token) (16 bytes).
    ax = axes[0]
    n = num_heads * head_size * block_size
    owner = [None] * n
    for o in range(block_size):
        for h in range(num_heads):
            for d in range(head_size):
                owner[legacy_key_offset(0, o, h, d, block_size, num_heads, head_size, x)] = (o, d)
    x0 = 4.2
    for r in range(n // x):
        o, d0 = owner[r * x]
        y = -(r + 1) * ch - (r // block_size) * 0.3
        ax.text(x0 - 0.2, y + ch / 2, words["chunk_row"].format(chunk=d0 // x, offset=o), ha="right",
                va="center", fontsize=7)
        for c in range(x):
            oo, d = owner[r * x + c]
            face = TOKEN_COLORS[oo]
            cell(ax, x0 + c * cw, y, cw, ch, face, f"d{d}", text_color_for(face), fontsize=7,
                 lw=0.5)
    ax.text(x0 + 0.5, 0.45, words["legacy_key_title"], fontsize=8,
            weight="bold", ha="center")
    ax.text(x0 + x * cw + 0.3, -1.5, words["legacy_key_note"], fontsize=7.5,
            style=note_style(lang), va="center")
    ax.set_xlim(-0.8, 8.2)
    ax.set_ylim(-6.7, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")

    # Value: [H, D, block_size]; one row = one element d of every offset in the block.
    ax = axes[1]
    owner = [None] * n
    for o in range(block_size):
        for h in range(num_heads):
            for d in range(head_size):
                owner[legacy_value_offset(0, o, h, d, block_size, num_heads, head_size)] = (o, d)
    x0 = 2.2
    for r in range(n // block_size):
        _, d = owner[r * block_size]
        y = -(r + 1) * ch
        ax.text(x0 - 0.2, y + ch / 2, f"d{d}", ha="right", va="center", fontsize=7)
        for c in range(block_size):
            o, dd = owner[r * block_size + c]
            face = TOKEN_COLORS[o]
            cell(ax, x0 + c * cw, y, cw, ch, face, words["offset_cell"].format(offset=o),
                 text_color_for(face), fontsize=7, lw=0.5)
    ax.text(x0 + 1.8, 0.45, words["legacy_value_title"], fontsize=8,
            weight="bold", ha="center")
    ax.text(x0 + block_size * cw + 0.3, -2.0, words["legacy_value_note"], fontsize=7.5,
            style=note_style(lang), va="center")
    ax.set_xlim(-0.8, 8.2)
    ax.set_ylim(-6.7, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.text(0.5, 0.02, words["legacy_note"].format(head_size=head_size, block_size=block_size,
                                                    x=x),
             ha="center", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None})
    plt.close(fig)


# Five tokens with given slots, one of them padding: where does each element land?
PLACEMENT_SLOTS = [6, 1, -1, 8, 7]
PLACEMENT_GEOMETRY = {"num_blocks": 3, "block_size": 4, "num_heads": 2, "head_size": 4, "x": 2}


def placement_owner(layout):
    """For each element of the cache, the token that wrote it (or None)."""
    g = PLACEMENT_GEOMETRY
    nb, bs, nh, hs, x = g["num_blocks"], g["block_size"], g["num_heads"], g["head_size"], g["x"]
    owner = [None] * (nb * bs * nh * hs)
    for t, slot in enumerate(PLACEMENT_SLOTS):
        if slot < 0:
            continue  # padding: nothing written
        b, o = divmod(slot, bs)
        for h in range(nh):
            for d in range(hs):
                if layout == "NHD":
                    off = nhd_offset(b, o, h, d, bs, nh, hs)
                elif layout == "HND":
                    off = hnd_offset(b, o, h, d, bs, nh, hs)
                elif layout == "legacy key":
                    off = legacy_key_offset(b, o, h, d, bs, nh, hs, x)
                else:
                    off = legacy_value_offset(b, o, h, d, bs, nh, hs)
                owner[off] = (t, h, d)
    return owner


def draw_token_placement(path, lang="en", which=tuple(PLACEMENT_LAYOUTS)):
    """Five tokens (one padded) written by slot into some layouts; one row = one block."""
    words = LABELS[lang]
    g = PLACEMENT_GEOMETRY
    per_block = g["block_size"] * g["num_heads"] * g["head_size"]
    layouts = [(words["placement_layouts"][name], name) for name in which]
    fig, ax = plt.subplots(figsize=(10.0, 1.6 + 1.45 * len(layouts)))
    cw, ch = 0.62, 0.62
    y = 0.0
    # Legend: the tokens and their slots.
    ax.text(0.0, y, "slot_mapping = [" + ", ".join(str(s) for s in PLACEMENT_SLOTS) + "]",
            fontsize=9, weight="bold", va="center")
    y -= 0.8
    for t, slot in enumerate(PLACEMENT_SLOTS):
        xx = t * 4.0
        face = TOKEN_COLORS[t] if slot >= 0 else "white"
        label = (words["token_to_slot"] if slot >= 0 else words["token_skipped"]).format(
            t=t, slot=slot)
        cell(ax, xx, y - 0.3, 0.6, 0.6, face, "", hatch=None if slot >= 0 else "///")
        ax.text(xx + 0.75, y, label, fontsize=7.5, va="center")
    y -= 1.0
    for title, layout in layouts:
        owner = placement_owner(layout)
        ax.text(0.0, y, title, fontsize=8.5, weight="bold", va="center")
        y -= 0.45
        for b in range(g["num_blocks"]):
            ax.text(-0.3, y - ch / 2, words["block"].format(block=b), ha="right", va="center",
                    fontsize=7)
            for i in range(per_block):
                who = owner[b * per_block + i]
                if who is None:
                    cell(ax, i * cw, y - ch, cw, ch, UNTOUCHED, "", lw=0.3)
                else:
                    t, h, d = who
                    face = TOKEN_COLORS[t]
                    cell(ax, i * cw, y - ch, cw, ch, face, f"{h}.{d}", text_color_for(face),
                         fontsize=5, lw=0.3)
            y -= ch + 0.12
        y -= 0.45
    ax.text(0.0, y + 0.1,
            words["placement_note"].format(block_size=g["block_size"], num_heads=g["num_heads"],
                                           head_size=g["head_size"], x=g["x"]),
            fontsize=7.5, style=note_style(lang))
    finish(fig, ax, path, (-2.0, per_block * cw + 0.3), (y - 0.3, 0.6))


def value_pieces(slots, block_size, group):
    """The pieces of a tile, by the rule of the optimized reshape_and_cache kernel: a piece is a
    run of consecutive tokens with consecutive slots, inside one block and inside one group of
    `group` offsets (16 bytes of a value row). Returns [(first_token, length)]."""
    pieces = []
    for t, slot in enumerate(slots):
        if slot < 0:
            continue
        previous = slots[t - 1] if t > 0 else -1
        starts = (t == 0 or previous < 0 or slot != previous + 1
                  or (slot % block_size) % group == 0)
        if starts:
            pieces.append([t, 1])
        else:
            pieces[-1][1] += 1
    return [tuple(p) for p in pieces]


# One tile of the optimized reshape_and_cache: a prefill that fills block 1 and part of block 2
# in order, a padding row, then decode-like tokens with scattered slots.
PIECE_SLOTS = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, -1, 3, 22, 5]
PIECE_BLOCK_SIZE = 8
PIECE_GROUP = 4  # offsets per 16-byte group: 4 fp32 elements (8 for bf16, 16 for fp8)


def draw_value_pieces(path, lang="en"):
    """How the optimized reshape_and_cache splits a tile into pieces for the value stores."""
    words = LABELS[lang]
    slots = PIECE_SLOTS
    pieces = value_pieces(slots, PIECE_BLOCK_SIZE, PIECE_GROUP)
    piece_of = {}
    for i, (first, length) in enumerate(pieces):
        for t in range(first, first + length):
            piece_of[t] = i
    fig, ax = plt.subplots(figsize=(10.0, 4.6))
    w = 0.9
    # Top: the tile's tokens and slots, coloured by piece.
    ax.text(-0.3, 6.45, words["token"], ha="right", va="center", fontsize=8)
    ax.text(-0.3, 5.55, words["slot"], ha="right", va="center", fontsize=8)
    token_x = {}
    for t, slot in enumerate(slots):
        x = t * 1.05
        token_x[t] = x + w / 2
        if slot < 0:
            cell(ax, x, 6.0, w, w, "white", f"t{t}", fontsize=7, hatch="///")
        else:
            face = TOKEN_COLORS[piece_of[t] % len(TOKEN_COLORS)]
            cell(ax, x, 6.0, w, w, face, f"t{t}", text_color_for(face), fontsize=7)
        cell(ax, x, 5.1, w, w, "#fafafa", str(slot), fontsize=8)

    # Bottom: one value row d of blocks 0..2, 16-byte groups outlined.
    num_blocks = 3
    row_y = 2.2
    ax.text(-0.3, row_y + w / 2, words["value_row"], ha="right", va="center", fontsize=8)
    offset_x = {}
    for b in range(num_blocks):
        for o in range(PIECE_BLOCK_SIZE):
            x = (b * PIECE_BLOCK_SIZE + o) * 0.62 + b * 0.5
            offset_x[(b, o)] = x
            writer = [t for t, s in enumerate(slots) if s == b * PIECE_BLOCK_SIZE + o]
            face = TOKEN_COLORS[piece_of[writer[0]] % len(TOKEN_COLORS)] if writer else UNTOUCHED
            cell(ax, x, row_y, 0.62, w, face, f"t{writer[0]}" if writer else "",
                 text_color_for(face), fontsize=6, lw=0.4)
            if o % PIECE_GROUP == 0:
                ax.add_patch(Rectangle((x, row_y - 0.08), 0.62 * PIECE_GROUP, w + 0.16,
                                       facecolor="none", edgecolor="black", linewidth=1.4))
        ax.text(offset_x[(b, 0)] + 0.62 * PIECE_BLOCK_SIZE / 2, row_y - 0.45,
                words["block"].format(block=b), ha="center", fontsize=7)
    # One arrow per piece, from its first token to its first offset; label the store kind.
    for i, (first, length) in enumerate(pieces):
        slot = slots[first]
        b, o = divmod(slot, PIECE_BLOCK_SIZE)
        face = TOKEN_COLORS[i % len(TOKEN_COLORS)]
        start = (token_x[first], 5.1)
        end = (offset_x[(b, o)] + 0.62 * length / 2, row_y + w + 0.1)
        arrow(ax, start, end, color=face, lw=1.0)
    full = sum(1 for _, n in pieces if n == PIECE_GROUP)
    ax.text(0.0, 0.85, words["pieces_note"].format(pieces=len(pieces), full=full,
                                                   short=len(pieces) - full),
            fontsize=8)
    ax.text(0.0, 0.3, words["pieces_geometry"].format(block_size=PIECE_BLOCK_SIZE,
                                                      group=PIECE_GROUP), fontsize=7.5,
            style=note_style(lang))
    finish(fig, ax, path, (-1.8, 16.0), (0.0, 7.2))


def draw_swap_blocks(path, lang="en"):
    """Per-pair copies (one API call each) against one batched operation, schematically."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(9.5, 5.0))
    pairs = [(0, 5), (1, 2), (2, 7), (3, 0), (4, 3), (5, 6)]
    bw, bh, step = 1.0, 0.7, 1.25
    src_y, dst_y = 8.6, 6.6
    # Top: the mapping, src row above dst row, one arrow per (src_block, dst_block) pair.
    ax.text(-0.2, src_y + bh / 2, "src", ha="right", va="center", fontsize=8, weight="bold")
    ax.text(-0.2, dst_y + bh / 2, "dst", ha="right", va="center", fontsize=8, weight="bold")
    moved = {s for s, _ in pairs}
    for i in range(8):
        face = TOKEN_COLORS[i] if i in moved else FREE
        cell(ax, i * step, src_y, bw, bh, face, words["block"].format(block=i),
             text_color_for(face), fontsize=7)
    landed = {d: s for s, d in pairs}
    for i in range(8):
        face = TOKEN_COLORS[landed[i]] if i in landed else FREE
        cell(ax, i * step, dst_y, bw, bh, face, words["block"].format(block=i),
             text_color_for(face), fontsize=7)
    for s, d in pairs:
        arrow(ax, (s * step + bw / 2, src_y), (d * step + bw / 2, dst_y + bh),
              color=TOKEN_COLORS[s], lw=1.0)
    ax.text(8 * step + 0.3, (src_y + dst_y + bh) / 2,
            "block_mapping =\n[" + ", ".join(f"({s}, {d})" for s, d in pairs) + "]",
            va="center", fontsize=7.5, family=FONTS[lang]["mono"])

    # Middle: the naive version, one cudaMemcpyAsync per pair, one after the other.
    overhead, transfer, lane_h = 0.9, 0.55, 0.6
    y = 4.3
    ax.text(0.0, y + 0.9, words["naive_title"], fontsize=8, weight="bold")
    x = 0.0
    for s, _ in pairs:
        cell(ax, x, y, overhead, lane_h, "#bdbdbd", words["call"], fontsize=6)
        x += overhead
        cell(ax, x, y, transfer, lane_h, TOKEN_COLORS[s], "", lw=0.5)
        x += transfer
    end_naive = x
    # Bottom: the optimized copy kernel, one launch whose CTAs copy every pair at once; the
    # blocks share the link, so each takes longer but all are in flight together.
    y = 1.45
    ax.text(0.0, 3.35, words["optimized_title"], fontsize=8, weight="bold")
    cell(ax, 0.0, y, overhead, 1.5, "#bdbdbd", words["launch"], fontsize=6)
    bar_h = 1.5 / len(pairs)
    for i, (s, _) in enumerate(pairs):
        cell(ax, overhead, y + 1.5 - (i + 1) * bar_h, transfer * len(pairs), bar_h,
             TOKEN_COLORS[s], "", lw=0.4)
    arrow(ax, (0.0, 0.95), (end_naive + 0.8, 0.95), style="-|>")
    ax.text(end_naive + 1.0, 0.95, words["time"], va="center", fontsize=8)
    ax.text(0.0, 0.45, words["swap_note"], fontsize=7, style=note_style(lang))
    finish(fig, ax, path, (-1.0, 16.5), (0.2, 9.6))


# The start page's picture: one op (a cache write moving one token's key row into its slot),
# three implementations. 16 bf16 elements = 32 bytes = two 16-byte vectors.
THREE_ELEMENTS = 16
THREE_VECTOR = 8  # bf16 elements per 16-byte vector


def three_versions_groups(version):
    """Which element each worker moves, per version: the CPU loop is one worker for all 16
    elements, the naive kernel one thread per element, the optimized one thread per 16 bytes."""
    n = THREE_ELEMENTS
    if version == "cpu":
        return [list(range(n))]
    if version == "naive":
        return [[i] for i in range(n)]
    return [list(range(g, g + THREE_VECTOR)) for g in range(0, n, THREE_VECTOR)]


def draw_three_versions(path, lang="en"):
    """CPU reference, naive and optimized kernel side by side, writing one token's row."""
    from matplotlib.patches import Polygon

    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(9.0, 3.4))
    cw, ch = 0.36, 0.45
    src_y, dst_y = 3.0, 0.8
    width = THREE_ELEMENTS * cw
    gap = 2.0
    panels = [("cpu", "three_cpu"), ("naive", "three_naive"), ("optimized", "three_opt")]
    ax.text(-0.2, src_y + ch / 2, "key[t]", ha="right", va="center", fontsize=10,
            family=FONTS[lang]["mono"])
    ax.text(-0.2, dst_y + ch / 2, words["three_dest"], ha="right", va="center", fontsize=9)
    for p, (version, key) in enumerate(panels):
        x0 = p * (width + gap)
        ax.text(x0 + width / 2, 5.45, words[key + "_title"], ha="center", va="bottom",
                fontsize=10.5, weight="bold")
        ax.text(x0 + width / 2, 5.4, words[key + "_sub"], ha="center", va="top", fontsize=9)
        groups = three_versions_groups(version)
        color_of = {}
        for g, elements in enumerate(groups):
            for i in elements:
                color_of[i] = TOKEN_COLORS[g % len(TOKEN_COLORS)]
        # The next slot of the block (untouched) below the destination row.
        for yy in (dst_y - ch,):
            for i in range(THREE_ELEMENTS):
                cell(ax, x0 + i * cw, yy, cw, ch, UNTOUCHED, lw=0.4)
        for i in range(THREE_ELEMENTS):
            cell(ax, x0 + i * cw, src_y, cw, ch, color_of[i], lw=0.5)
            cell(ax, x0 + i * cw, dst_y, cw, ch, color_of[i], lw=0.5)
        if version == "optimized":
            for g, elements in enumerate(groups):
                a, b = x0 + elements[0] * cw, x0 + (elements[-1] + 1) * cw
                color = TOKEN_COLORS[g]
                for y in (src_y, dst_y):
                    ax.add_patch(Rectangle((a, y), b - a, ch, fill=False, edgecolor=EDGE,
                                           linewidth=1.6))
                ax.add_patch(Polygon([(a + 0.05, src_y - 0.05), (b - 0.05, src_y - 0.05),
                                      (b - 0.05, dst_y + ch + 0.05), (a + 0.05, dst_y + ch + 0.05)],
                                     closed=True, facecolor=tint(color, 0.55), edgecolor=color,
                                     linewidth=1.0))
                ax.text((a + b) / 2, (src_y + dst_y + ch) / 2, "16 B", ha="center",
                        va="center", fontsize=9, color=text_color_for(tint(color, 0.55)))
        else:
            for i in range(THREE_ELEMENTS):
                x = x0 + (i + 0.5) * cw
                arrow(ax, (x, src_y - 0.02), (x, dst_y + ch + 0.02), color=color_of[i], lw=0.9)
            if version == "cpu":  # the loop order: left to right, one element after the other
                arrow(ax, (x0, src_y + ch + 0.2), (x0 + width, src_y + ch + 0.2), lw=1.2)
                ax.text(x0 + width / 2, src_y + ch + 0.27, "i", ha="center", va="bottom",
                        fontsize=9, style=note_style(lang))
        ax.text(x0 + width / 2, dst_y - ch - 0.15, words[key + "_note"], ha="center", va="top",
                fontsize=9)
    ax.text(-2.2, -1.2, words["three_footer"], ha="left", va="center", fontsize=8.5,
            style=note_style(lang))
    finish(fig, ax, path, (-2.4, 3 * width + 2 * gap + 0.1), (-1.45, 6.0))


# MLA (DeepSeek-V3): one latent vector per token, kv_lora_rank + rope_dim elements.
MLA_KV_LORA_RANK = 512
MLA_ROPE_DIM = 64
MLA_DS_TILE = 128  # fp8_ds_mla: one fp32 scale per 128 values of kv_c


def mla_entry_parts(kind):
    """(first byte, size in bytes, label key, label fields) of each part of one MLA cache entry:
    kind "auto" (bf16), "fp8" or "fp8_ds_mla" (the 656-byte entry)."""
    if kind in ("auto", "fp8"):
        size = 2 if kind == "auto" else 1
        name = "bf16" if kind == "auto" else "fp8"
        return [(0, MLA_KV_LORA_RANK * size, "mla_kv_c", {"n": MLA_KV_LORA_RANK, "kind": name}),
                (MLA_KV_LORA_RANK * size, MLA_ROPE_DIM * size, "mla_k_pe",
                 {"n": MLA_ROPE_DIM, "kind": name})]
    tiles = MLA_KV_LORA_RANK // MLA_DS_TILE
    parts = [(t * MLA_DS_TILE, MLA_DS_TILE, "mla_tile", {"tile": t}) for t in range(tiles)]
    parts.append((MLA_KV_LORA_RANK, 4 * tiles, "mla_scales", {}))
    parts.append((MLA_KV_LORA_RANK + 4 * tiles, 2 * MLA_ROPE_DIM, "mla_k_pe",
                  {"n": MLA_ROPE_DIM, "kind": "bf16"}))
    return parts


def draw_mla_entries(path, lang="en"):
    """The three MLA cache entries (auto, fp8, fp8_ds_mla) as byte bars on one scale."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(10.5, 3.9))
    scale = 10.0 / 1152  # the auto entry spans the width
    rows = [("auto", "mla_auto"), ("fp8", "mla_fp8"), ("fp8_ds_mla", "mla_ds")]
    colors = {"mla_kv_c": TOKEN_COLORS[0], "mla_tile": TOKEN_COLORS[0],
              "mla_scales": TOKEN_COLORS[3], "mla_k_pe": TOKEN_COLORS[1]}
    for r, (kind, title) in enumerate(rows):
        y = 2.4 * (len(rows) - 1 - r)
        parts = mla_entry_parts(kind)
        total = parts[-1][0] + parts[-1][1]
        ax.text(0.0, y + 1.25, words[title].format(bytes=total), fontsize=8.5, va="bottom")
        for i, (first, size, key, fields) in enumerate(parts):
            face = colors[key] if key != "mla_tile" else tint(colors[key], 0.15 * (i % 2))
            label = words[key].format(**fields)
            if size * scale >= 0.5:
                cell(ax, first * scale, y, size * scale, 0.8, face, label, text_color_for(face),
                     fontsize=7.5)
            else:  # the 16 bytes of scales: label beside the bar's end, with a leader
                cell(ax, first * scale, y, size * scale, 0.8, face)
                ax.annotate(label, xy=((first + size / 2) * scale, y + 0.8),
                            xytext=((first + size / 2) * scale + 0.35, y + 1.0), fontsize=7,
                            va="center",
                            color=colors[key], arrowprops=dict(arrowstyle="-", color=colors[key],
                                                               lw=0.8))
            low = i > 0 and (first - parts[i - 1][0]) * scale < 0.3
            ax.text(first * scale, y - (0.42 if low else 0.12), str(first), ha="center",
                    va="top", fontsize=6.5)
        ax.text(total * scale, y - 0.12, str(total), ha="center", va="top", fontsize=6.5)
    ax.text(0.0, -0.85, words["mla_note"], fontsize=7.5, style=note_style(lang))
    finish(fig, ax, path, (-0.2, 10.4), (-1.1, 6.7))


# ------------------------------------------------------------------------------------------------
# Reading the cache back (chapters/reading_the_cache.md)
# ------------------------------------------------------------------------------------------------

# A small gather: block_size 4, two sequences. Sequence 0 gathers 3 tokens from its position 2,
# sequence 1 gathers 5 tokens from its position 0 (the arguments of cp_gather_cache and of
# gather_and_maybe_dequant_cache; token_to_seq follows from cu_seq_lens).
GATHER_BLOCK_SIZE = 4
GATHER_CU_SEQ_LENS = [0, 3, 8]
GATHER_SEQ_STARTS = [2, 0]
GATHER_BLOCK_TABLE = [[5, 1], [3, 6]]
GATHER_COLORS = [TOKEN_COLORS[0], TOKEN_COLORS[1]]


def gather_rows():
    """(row, sequence, position, slot) of every workspace row of the small gather, computed as the
    CPU references do: position = seq_starts[b] + row - cu_seq_lens[b], slot = block_table[b,
    position / block_size] * block_size + position % block_size."""
    rows = []
    for b in range(len(GATHER_CU_SEQ_LENS) - 1):
        for row in range(GATHER_CU_SEQ_LENS[b], GATHER_CU_SEQ_LENS[b + 1]):
            position = GATHER_SEQ_STARTS[b] + row - GATHER_CU_SEQ_LENS[b]
            block = GATHER_BLOCK_TABLE[b][position // GATHER_BLOCK_SIZE]
            rows.append((row, b, position,
                         slot_of(block, position % GATHER_BLOCK_SIZE, GATHER_BLOCK_SIZE)))
    return rows


def draw_gather_lookup(path, lang="en"):
    """Workspace rows -> their sequence (token_to_seq, from cu_seq_lens) -> position in the
    sequence (seq_starts) -> slot (block_table), and the slot line of the cache below."""
    words = LABELS[lang]
    rows = gather_rows()
    fig, ax = plt.subplots(figsize=(10.0, 4.6))
    cw, ch, step = 1.3, 0.75, 1.6
    x0 = 7.4
    lines = [("gather_row", 6.6), ("token_to_seq[k]", 5.5), ("gather_position", 4.4),
             ("gather_slot", 3.3)]
    for key, y in lines:
        label = words[key] if key in words else key
        ax.text(x0 - 0.3, y + ch / 2, label, ha="right", va="center", fontsize=8.5)
    anchors = {}
    for row, b, position, slot in rows:
        x = x0 + row * step
        face = GATHER_COLORS[b]
        cell(ax, x, 6.6, cw, ch, face, f"k = {row}", text_color_for(face), fontsize=8)
        cell(ax, x, 5.5, cw, ch, "#fafafa", str(b), fontsize=8.5)
        cell(ax, x, 4.4, cw, ch, "#fafafa", str(position), fontsize=8.5)
        cell(ax, x, 3.3, cw, ch, tint(face, 0.55), str(slot), fontsize=8.5)
        anchors[row] = (x + cw / 2, 3.3)
    # The inputs, on the left.
    inputs = [f"block_size = {GATHER_BLOCK_SIZE}",
              "cu_seq_lens = [" + ", ".join(map(str, GATHER_CU_SEQ_LENS)) + "]",
              "seq_starts = [" + ", ".join(map(str, GATHER_SEQ_STARTS)) + "]",
              "block_table = [" + ", ".join("[" + ", ".join(map(str, r)) + "]"
                                            for r in GATHER_BLOCK_TABLE) + "]"]
    ax.text(-3.3, 8.0, words["gather_inputs"], fontsize=9, weight="bold")
    for i, text in enumerate(inputs):
        ax.text(-3.3, 7.5 - i * 0.45, text, fontsize=7.5, family=FONTS[lang]["mono"], va="top")
    # The slot line: 8 blocks of 4 slots.
    sw = 0.62
    line_y = 0.9
    used = {slot: b for _, b, _, slot in rows}
    for slot in range(8 * GATHER_BLOCK_SIZE):
        block, offset = divmod(slot, GATHER_BLOCK_SIZE)
        x = slot * sw + block * 0.25
        face = GATHER_COLORS[used[slot]] if slot in used else "white"
        cell(ax, x, line_y, sw, sw, face, str(slot),
             text_color_for(face) if slot in used else "#777777", fontsize=6, lw=0.5)
        if offset == 0:
            ax.text(x + 2 * sw, line_y - 0.45, words["block"].format(block=block), ha="center",
                    fontsize=7)
        for row, b, _, s in rows:
            if s == slot:
                arrow(ax, anchors[row], (x + sw / 2, line_y + sw), color=GATHER_COLORS[b],
                      lw=0.9)
    ax.text(-3.3, -0.45, words["gather_note"], fontsize=7.5, style=note_style(lang), va="top")
    finish(fig, ax, path, (-3.5, 21.8), (-1.4, 8.4))


# A skewed batch, schematically: one long sequence and six short ones. Upstream splits each
# sequence over a fixed number of CTAs; pagedkv cuts the rows into equal runs, one per warp.
SKEW_LENGTHS = [24, 2, 2, 2, 2, 2, 2]
SKEW_SPLITS = 2
SKEW_RUN = 4


def skew_split_by_sequence(lengths=SKEW_LENGTHS, splits=SKEW_SPLITS):
    """[(sequence, split, rows)] of a grid of (batch, splits) CTAs: split s of sequence b takes
    ceil(n / splits) consecutive tokens (fewer at the end), as upstream's batch-major kernels."""
    work = []
    for b, n in enumerate(lengths):
        share = -(-n // splits)
        for s in range(splits):
            work.append((b, s, max(0, min(n, (s + 1) * share) - s * share)))
    return work


def skew_split_by_rows(lengths=SKEW_LENGTHS, run=SKEW_RUN):
    """[[sequence of each row of the run]] of the row split: consecutive runs of `run` rows,
    whatever sequences they cross."""
    owner = [b for b, n in enumerate(lengths) for _ in range(n)]
    return [owner[i:i + run] for i in range(0, len(owner), run)]


def skew_color(b):
    return TOKEN_COLORS[b % len(TOKEN_COLORS)]


def draw_skewed_split(path, lang="en"):
    """The rows of a skewed batch, and the rows each worker copies when the grid is split by
    sequence (left) and by rows (right)."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(10.0, 5.4))
    total = sum(SKEW_LENGTHS)
    cw = 0.42
    # Top: the dst rows, coloured by sequence.
    top = 9.4
    ax.text(0.0, top + 0.75, words["skew_rows"].format(long=SKEW_LENGTHS[0],
                                                       short=len(SKEW_LENGTHS) - 1,
                                                       each=SKEW_LENGTHS[1]), fontsize=8.5)
    owner = [b for b, n in enumerate(SKEW_LENGTHS) for _ in range(n)]
    for i, b in enumerate(owner):
        cell(ax, i * cw, top, cw, 0.5, skew_color(b), lw=0.4)
    cu = [0]
    for n in SKEW_LENGTHS:
        cu.append(cu[-1] + n)
    ax.text(total * cw + 0.3, top + 0.25, "cu_seq_lens = [" + ", ".join(map(str, cu)) + "]",
            va="center", fontsize=7, family=FONTS[lang]["mono"])
    bar_h, gap = 0.42, 0.12
    # Left: by sequence.
    left = skew_split_by_sequence()
    y0 = 7.6
    ax.text(0.0, y0 + 0.1, words["skew_by_seq"].format(splits=SKEW_SPLITS), fontsize=8.5,
            weight="bold", va="bottom")
    for i, (b, s, n) in enumerate(left):
        y = y0 - 0.55 - i * (bar_h + gap)
        ax.text(-0.15, y + bar_h / 2, f"CTA ({b}, {s})", ha="right", va="center", fontsize=6.5,
                family=FONTS[lang]["mono"])
        if n:
            cell(ax, 0.0, y, n * cw, bar_h, skew_color(b), str(n), text_color_for(skew_color(b)),
                 fontsize=6.5, lw=0.4)
    longest = max(n for _, _, n in left)
    y_end = y0 - 0.55 - (len(left) - 1) * (bar_h + gap)
    ax.plot([longest * cw] * 2, [y_end - 0.1, y0 - 0.05], color=EDGE, lw=0.8, ls="--")
    ax.text(longest * cw + 0.1, y_end - 0.05, words["skew_longest"].format(rows=longest),
            fontsize=7, va="top")
    # Right: by rows.
    runs = skew_split_by_rows()
    x1 = 15.0
    ax.text(x1, y0 + 0.1, words["skew_by_rows"].format(run=SKEW_RUN), fontsize=8.5,
            weight="bold", va="bottom")
    for w, members in enumerate(runs):
        y = y0 - 0.55 - w * (bar_h + gap)
        ax.text(x1 - 0.15, y + bar_h / 2, words["skew_warp"].format(warp=w), ha="right",
                va="center", fontsize=6.5)
        for j, b in enumerate(members):
            cell(ax, x1 + j * cw, y, cw, bar_h, skew_color(b), lw=0.4)
    y_end_rows = y0 - 0.55 - (len(runs) - 1) * (bar_h + gap)
    ax.plot([x1 + SKEW_RUN * cw] * 2, [y_end_rows - 0.1, y0 - 0.05], color=EDGE, lw=0.8,
            ls="--")
    ax.text(x1 + SKEW_RUN * cw + 0.1, y_end_rows - 0.05,
            words["skew_longest"].format(rows=SKEW_RUN), fontsize=7, va="top")
    ax.text(0.0, y_end - 0.6, words["skew_note"], fontsize=7.5, style=note_style(lang),
            va="top")
    finish(fig, ax, path, (-2.0, 21.8), (y_end - 1.6, 10.6))


# The indexer K cache (DeepSeek-V3.2): head_dim 128 codes and one fp32 scale per token, stored
# block-planar. Drawn for a block of 4 slots so that the bytes are legible.
INDEXER_HEAD_DIM = 128
INDEXER_SCALE_BYTES = 4
INDEXER_DRAW_BLOCK = 4
INDEXER_PICKED_SLOT = 2  # the slot whose bytes the arrows follow


def indexer_block_parts(block_size=INDEXER_DRAW_BLOCK, head_dim=INDEXER_HEAD_DIM):
    """(first byte, size, kind, slot) of every part of one indexer cache block: the code plane
    (slot o at o * head_dim), then the scale plane (slot o at block_size * head_dim + 4 o), as
    indexer_k_quant_and_cache writes it (one 128-element tile per token)."""
    parts = [(o * head_dim, head_dim, "codes", o) for o in range(block_size)]
    parts += [(block_size * head_dim + o * INDEXER_SCALE_BYTES, INDEXER_SCALE_BYTES, "scale", o)
              for o in range(block_size)]
    return parts


def indexer_naive_parts(block_size=INDEXER_DRAW_BLOCK, head_dim=INDEXER_HEAD_DIM):
    """The same bytes as the shape [block_size, head_dim + 4] suggests, one 132-byte record per
    slot: NOT the layout (drawn to show what a reader must not assume)."""
    record = head_dim + INDEXER_SCALE_BYTES
    parts = []
    for o in range(block_size):
        parts.append((o * record, head_dim, "codes", o))
        parts.append((o * record + head_dim, INDEXER_SCALE_BYTES, "scale", o))
    return parts


def draw_indexer_cache(path, lang="en"):
    """One block of the indexer K cache as a byte bar: the real block-planar layout, the record
    layout its shape suggests (crossed out), and where one slot's codes and scale are gathered."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(10.5, 4.6))
    total = INDEXER_DRAW_BLOCK * (INDEXER_HEAD_DIM + INDEXER_SCALE_BYTES)
    scale = 10.0 / total

    def bar(y, parts, hatch=None):
        for first, size, kind, o in parts:
            face = skew_color(o) if kind == "codes" else tint(skew_color(o), 0.35)
            label = words["idx_codes"].format(slot=o) if kind == "codes" else ""
            if hatch is not None:
                face = tint(face, 0.55)
            cell(ax, first * scale, y, size * scale, 0.8, face, label,
                 text_color_for(face) if hatch is None else "black",
                 fontsize=7, lw=0.6 if kind == "scale" else 0.8, hatch=hatch)

    # What the shape suggests (top), then the layout (middle), then the gather (bottom).
    y_naive = 4.9
    ax.text(0.0, y_naive + 1.0, words["idx_naive"].format(record=INDEXER_HEAD_DIM
                                                          + INDEXER_SCALE_BYTES), fontsize=8.5)
    bar(y_naive, indexer_naive_parts(), hatch="///")
    y_real = 2.7
    ax.text(0.0, y_real + 1.0, words["idx_real"].format(bytes=total), fontsize=8.5)
    bar(y_real, indexer_block_parts())
    plane = INDEXER_DRAW_BLOCK * INDEXER_HEAD_DIM
    for first in range(0, plane + 1, INDEXER_HEAD_DIM):
        ax.text(first * scale, y_real - 0.12, str(first), ha="center", va="top", fontsize=6.5)
    ax.annotate(words["idx_scales"], xy=((plane + 8) * scale, y_real + 0.8),
                xytext=((plane + 30) * scale, y_real + 1.2), fontsize=7, va="center",
                arrowprops=dict(arrowstyle="-", color=EDGE, lw=0.8))
    # The gather of the picked slot: codes to dst_k, scale to dst_scale.
    o = INDEXER_PICKED_SLOT
    code_first = o * INDEXER_HEAD_DIM
    scale_first = plane + o * INDEXER_SCALE_BYTES
    y_dst = 0.5
    face = skew_color(o)
    cell(ax, 1.0, y_dst, INDEXER_HEAD_DIM * scale, 0.7, face, "dst_k[t]", text_color_for(face),
         fontsize=7)
    cell(ax, 6.0, y_dst, 0.45, 0.7, tint(face, 0.35), "")
    ax.text(6.55, y_dst + 0.35, "dst_scale[t]", va="center", fontsize=7,
            family=FONTS[lang]["mono"])
    arrow(ax, ((code_first + INDEXER_HEAD_DIM / 2) * scale, y_real),
          (1.0 + INDEXER_HEAD_DIM * scale / 2, y_dst + 0.7), color=face, lw=1.1, rad=0.15)
    arrow(ax, ((scale_first + 2) * scale, y_real), (6.22, y_dst + 0.7), color=face, lw=1.1,
          rad=-0.1)
    ax.text(1.0, y_dst - 0.25, words["idx_picked"].format(slot=o, codes=code_first,
                                                          last=code_first + INDEXER_HEAD_DIM - 1,
                                                          scale=scale_first),
            va="top", fontsize=7.5)
    ax.text(0.0, -0.75, words["idx_note"], fontsize=7.5, style=note_style(lang))
    finish(fig, ax, path, (-0.2, 13.6), (-1.1, 6.3))


# DeepSeek V4's fp8_ds_mla K cache page (chapters/deepseek_v4.md): the data records of all tokens,
# then their scale records, then padding up to the page stride. Drawn for a page of 4 tokens so
# that the bytes are legible; one token's record and scale record are drawn again, enlarged.
DSV4_DRAW_BLOCK = 4
DSV4_RECORD = 576          # 448 E4M3 codes + 64 bf16
DSV4_SCALE_RECORD = 8      # 7 UE8M0 codes + a pad byte
DSV4_PICKED = 2            # the token whose bytes are enlarged


def dsv4_page_stride(block_size):
    """The page stride upstream's allocator uses: block_size × 584 rounded up to a multiple of
    576 (37,440 for 64 tokens)."""
    return -(-block_size * (DSV4_RECORD + DSV4_SCALE_RECORD) // DSV4_RECORD) * DSV4_RECORD


def dsv4_page_parts(block_size=DSV4_DRAW_BLOCK):
    """(first byte, size, kind, token) of every part of one page, as quantize_and_insert_k_cache
    writes it: token p's data record at p × 576, its scale record at block_size × 576 + 8 p, then
    the padding up to the stride."""
    parts = [(p * DSV4_RECORD, DSV4_RECORD, "record", p) for p in range(block_size)]
    scale_area = block_size * DSV4_RECORD
    parts += [(scale_area + p * DSV4_SCALE_RECORD, DSV4_SCALE_RECORD, "scales", p)
              for p in range(block_size)]
    end = scale_area + block_size * DSV4_SCALE_RECORD
    parts.append((end, dsv4_page_stride(block_size) - end, "padding", None))
    return parts


def draw_dsv4_page(path, lang="en"):
    """One fp8_ds_mla page as a byte bar, and token DSV4_PICKED's data record (7 quant blocks of
    64 codes, then the RoPE bf16) and scale record (7 exponent codes and a pad byte) enlarged."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(10.5, 4.8))
    stride = dsv4_page_stride(DSV4_DRAW_BLOCK)
    scale = 12.0 / stride
    y_page = 4.2
    ax.text(0.0, y_page + 1.05, words["v4_page"].format(b=DSV4_DRAW_BLOCK, stride=stride),
            fontsize=8.5)
    for first, size, kind, p in dsv4_page_parts():
        if kind == "record":
            face = skew_color(p)
            cell(ax, first * scale, y_page, size * scale, 0.8, face,
                 words["v4_record"].format(p=p), text_color_for(face), fontsize=7)
        elif kind == "scales":
            cell(ax, first * scale, y_page, size * scale, 0.8, tint(skew_color(p), 0.35), "",
                 lw=0.5)
        else:
            cell(ax, first * scale, y_page, size * scale, 0.8, "#eeeeee", words["v4_pad"],
                 fontsize=6.5, hatch="..")
    scale_area = DSV4_DRAW_BLOCK * DSV4_RECORD
    ax.annotate(words["v4_scales"], xy=((scale_area + 16) * scale, y_page + 0.8),
                xytext=((scale_area + 16) * scale, y_page + 1.55), fontsize=7, ha="center",
                arrowprops=dict(arrowstyle="-", color=EDGE, lw=0.8))
    for first in [p * DSV4_RECORD for p in range(DSV4_DRAW_BLOCK)] + [stride]:
        ax.text(first * scale, y_page - 0.12, str(first), ha="center", va="top", fontsize=6.5)
    ax.text(scale_area * scale, y_page - 0.12, str(scale_area), ha="right", va="top",
            fontsize=6.5)

    # Token DSV4_PICKED's data record, enlarged: 7 blocks of 64 codes, then 128 bytes of bf16.
    p = DSV4_PICKED
    face = skew_color(p)
    zoom_width = 8.4
    zoom = zoom_width / DSV4_RECORD
    y_zoom = 2.0
    record_first = p * DSV4_RECORD
    ax.text(0.0, y_zoom + 1.0, words["v4_zoom"].format(p=p, first=record_first,
                                                       last=record_first + DSV4_RECORD - 1),
            fontsize=8)
    for j in range(7):
        cell(ax, 64 * j * zoom, y_zoom, 64 * zoom, 0.8, tint(face, 0.15 + 0.08 * (j % 2)),
             words["v4_block"].format(j=j), "black", fontsize=6)
    cell(ax, 448 * zoom, y_zoom, 128 * zoom, 0.8, tint(face, 0.6), words["v4_rope"], "black",
         fontsize=6)
    for byte in (0, 64, 128, 192, 256, 320, 384, 448, 576):
        ax.text(byte * zoom, y_zoom - 0.1, str(record_first + byte), ha="center", va="top",
                fontsize=5.5)
    arrow(ax, (record_first * scale, y_page), (0.0, y_zoom + 0.8), color=face, lw=0.9)
    arrow(ax, ((record_first + DSV4_RECORD) * scale, y_page), (zoom_width, y_zoom + 0.8),
          color=face, lw=0.9)

    # Its scale record, enlarged, to the right: 7 codes and the pad byte.
    y_scale = 0.2
    byte_w = 0.42
    x_scale = 12.0 - 8 * byte_w
    scale_first = scale_area + p * DSV4_SCALE_RECORD
    for j in range(8):
        label = str(j) if j < 7 else "0"
        cell(ax, x_scale + j * byte_w, y_scale, byte_w, 0.8,
             tint(face, 0.35) if j < 7 else "#eeeeee", label, "black", fontsize=6.5)
    ax.text(x_scale - 0.2, y_scale + 0.4, words["v4_scale_zoom"].format(
        p=p, first=scale_first, last=scale_first + DSV4_SCALE_RECORD - 1), fontsize=7.5,
        ha="right", va="center")
    arrow(ax, ((scale_first + 4) * scale, y_page), (x_scale + 4 * byte_w, y_scale + 0.8),
          color=face, lw=0.9)
    ax.text(0.0, -0.45, words["v4_note"], fontsize=7.5, style=note_style(lang), va="top")
    finish(fig, ax, path, (-0.3, 12.5), (-1.2, 5.9))


# The LMDeploy chapter: one layer region of a TurboMind block for each quant policy, drawn small
# (2 heads × 64, 4 tokens) so that the parameter area is visible.
TM_HEADS = 2
TM_DIM = 64
TM_BLOCK_SEQ_LEN = 4


def turbomind_region_parts(policy, heads=TM_HEADS, dim=TM_DIM, block_seq_len=TM_BLOCK_SEQ_LEN):
    """(first byte, size, kind, head, "K" or "V") of every part of one layer region, as
    process_kv writes it (include/pagedkv/turbomind_kv.h): for each head its K rows, then its V
    rows; then for each head its K [scale, zero] pairs, then its V pairs (quantized only)."""
    bits = {0: 16, 8: 8, 4: 4}[policy]
    data = block_seq_len * bits * dim // 8
    param = 0 if policy == 0 else block_seq_len * 4
    parts = []
    for h in range(heads):
        parts.append((2 * h * data, data, "data", h, "K"))
        parts.append(((2 * h + 1) * data, data, "data", h, "V"))
    base = heads * 2 * data
    for h in range(heads):
        if param:
            parts.append((base + 2 * h * param, param, "params", h, "K"))
            parts.append((base + (2 * h + 1) * param, param, "params", h, "V"))
    return parts


def draw_turbomind_block(path, lang="en"):
    """One layer region per quant policy (0, 8, 4), each bar to its own scale, parts coloured by
    head, K dark and V light, the parameter area hatched."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(11.5, 4.4))
    ax.text(0.0, 4.55, words["tm_title"].format(heads=TM_HEADS, dim=TM_DIM, bsl=TM_BLOCK_SEQ_LEN),
            fontsize=8.5)
    width = 10.4
    for row, policy in enumerate((0, 8, 4)):
        parts = turbomind_region_parts(policy)
        total = parts[-1][0] + parts[-1][1]
        scale = width / total
        y = 3.2 - 1.45 * row
        ax.text(-0.15, y + 0.4, words["tm_policy"].format(policy=policy, bytes=total), ha="right",
                va="center", fontsize=7.5)
        bits = {0: 16, 8: 8, 4: 4}[policy]
        for first, size, kind, h, kv in parts:
            face = skew_color(h)
            if kv == "V":
                face = tint(face, 0.45)
            if kind == "data":
                label = words["tm_data"].format(h=h, kv=kv, rows=TM_BLOCK_SEQ_LEN,
                                                row=bits * TM_DIM // 8)
                cell(ax, first * scale, y, size * scale, 0.8, face, label, text_color_for(face),
                     fontsize=6.5)
            else:
                cell(ax, first * scale, y, size * scale, 0.8, tint(face, 0.3), "", lw=0.5,
                     hatch="//")
        params = [part for part in parts if part[2] == "params"]
        if params:
            start = params[0][0]
            ax.annotate(words["tm_params"].format(size=params[0][1]),
                        xy=((start + total) / 2 * scale, y + 0.8),
                        xytext=(width + 0.25, y + 0.4), fontsize=6.5, ha="left", va="center",
                        arrowprops=dict(arrowstyle="-", color=EDGE, lw=0.7))
        marks = sorted({first for first, _, kind, *_ in parts if kind == "data"} | {total})
        for first in marks:
            ax.text(first * scale, y - 0.08, str(first), ha="center", va="top", fontsize=5.5)
    ax.text(-1.6, -1.15, words["tm_note"], fontsize=7.5, style=note_style(lang), va="top")
    finish(fig, ax, path, (-1.7, 13.4), (-2.0, 5.2))


# The model ops chapter: where rotary_embedding, silu_and_mul and apply_repetition_penalties sit
# in one decoder layer, relative to the cache write and attention (chapters/model_ops.md).
LAYER_CHAPTER = "#ffb74d"  # the ops of the chapter
LAYER_CACHE = "#64b5f6"    # the cache ops
LAYER_OTHER = "#e0e0e0"    # everything else of the layer


def draw_model_ops_layer(path, lang="en"):
    """One decoder layer's dataflow, top to bottom, with the paged cache beside it and the
    sampler after the last layer; the ops of the model ops chapter highlighted."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(9.0, 8.6))
    w, h, x, gap = 7.0, 0.62, 0.0, 0.34
    steps = [  # (label, colour, monospace)
        ("input_layernorm: rms_norm / fused_add_rms_norm", LAYER_OTHER, True),
        ("qkv_proj", LAYER_OTHER, True),
        ("rotary_embedding (RoPE)", LAYER_CHAPTER, True),
        ("reshape_and_cache_flash", LAYER_CACHE, True),
        (words["layer_attention"], LAYER_OTHER, False),
        ("post_attention_layernorm: fused_add_rms_norm", LAYER_OTHER, True),
        ("gate_up_proj → [tokens, 2 d]", LAYER_OTHER, True),
        ("silu_and_mul / gelu_and_mul / gelu_tanh_and_mul → [tokens, d]", LAYER_CHAPTER, True),
        ("down_proj", LAYER_OTHER, True),
    ]
    y = 12.0
    ax.text(x + w / 2, y + 0.25, words["layer_hidden"], ha="center", va="bottom", fontsize=8,
            weight="bold")
    tops = []
    for label, color, mono in steps:
        y -= h
        cell(ax, x, y, w, h, color, "", fontsize=7)
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=7,
                family=FONTS[lang]["mono" if mono else "sans"])
        tops.append(y)
        if len(tops) > 1:
            arrow(ax, (x + w / 2, y + h + gap), (x + w / 2, y + h))
        y -= gap
    arrow(ax, (x + w / 2, tops[0] + h + 0.25), (x + w / 2, tops[0] + h))
    # The paged cache beside the layer: written by the cache op, read by attention.
    cx, cw = x + w + 1.9, 2.2
    cache_y = tops[4] - 0.1
    cache_h = tops[3] + h - cache_y + 0.1
    cell(ax, cx, cache_y, cw, cache_h, tint(LAYER_CACHE, 0.6), words["layer_cache"], fontsize=8)
    arrow(ax, (x + w, tops[3] + h / 2), (cx, tops[3] + h / 2), color=LAYER_CACHE, lw=1.4)
    ax.text((x + w + cx) / 2, tops[3] + h / 2 + 0.12, words["layer_cache_write"], ha="center",
            va="bottom", fontsize=6.5)
    arrow(ax, (cx, tops[4] + h / 2), (x + w, tops[4] + h / 2), color=LAYER_CACHE, lw=1.4)
    ax.text((x + w + cx) / 2, tops[4] + h / 2 - 0.14, words["layer_cache_read"], ha="center",
            va="top", fontsize=6.5)
    # The next layer, then the sampler once per step.
    y_next = tops[-1] - gap - 0.1
    arrow(ax, (x + w / 2, tops[-1]), (x + w / 2, y_next - 0.2))
    ax.text(x + w / 2 + 0.15, y_next - 0.1, words["layer_next"], ha="left", va="center",
            fontsize=7)
    y = y_next - 0.9
    ax.text(x, y, words["layer_after"], ha="left", va="center", fontsize=8, weight="bold")
    tail = [(words["layer_logits"], LAYER_OTHER, False),
            ("apply_repetition_penalties", LAYER_CHAPTER, True),
            (words["layer_sample"], LAYER_OTHER, False)]
    y -= 0.5
    for i, (label, color, mono) in enumerate(tail):
        y -= h
        cell(ax, x, y, w, h, color, "", fontsize=7)
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=7,
                family=FONTS[lang]["mono" if mono else "sans"])
        if i:
            arrow(ax, (x + w / 2, y + h + gap), (x + w / 2, y + h))
        y -= gap
    # Legend.
    ly = y - 0.35
    for i, (key, color) in enumerate((("layer_legend_chapter", LAYER_CHAPTER),
                                      ("layer_legend_cache", LAYER_CACHE),
                                      ("layer_legend_other", LAYER_OTHER))):
        lx = x + i * 2.9
        cell(ax, lx, ly, 0.35, 0.3, color)
        ax.text(lx + 0.5, ly + 0.15, words[key], va="center", fontsize=7)
    ax.text(x, ly - 0.45, words["layer_note"], fontsize=7, style=note_style(lang))
    finish(fig, ax, path, (-0.3, cx + cw + 0.3), (ly - 0.8, 12.6))


# The rotary_embedding page: which elements of one head rotate together, NeoX and GPT-J, and a
# partial rotation with rope_dim_offset (chapters/rotary_embedding.md). The pairs come from the
# same rule as the CPU reference (reference_cpu/rope.cpp: rotate_head).
ROPE_HEAD_SIZE = 8


def rope_pairs(rot_dim, is_neox, offset=0):
    """The element pairs of one head, pair j first: NeoX (j, j + rot_dim / 2), GPT-J
    (2j, 2j + 1), both shifted by `offset`."""
    half = rot_dim // 2
    return [(offset + (j if is_neox else 2 * j), offset + (half + j if is_neox else 2 * j + 1))
            for j in range(half)]


def draw_rope_pairs(path, lang="en"):
    """One head three times, the elements that rotate together in one colour: NeoX halves,
    GPT-J neighbours, and a partial rotation from rope_dim_offset; the cache row on top."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(8.4, 5.6))
    w, h = 0.8, 0.55
    mono = FONTS[lang]["mono"]

    def head_row(y, pairs, title):
        ax.text(0.0, y + h + 0.25, title, fontsize=8)
        pair_of = {e: j for j, pair in enumerate(pairs) for e in pair}
        for e in range(ROPE_HEAD_SIZE):
            face = TOKEN_COLORS[pair_of[e]] if e in pair_of else UNTOUCHED
            cell(ax, e * w, y, w, h, face, str(e), text_color_for(face), fontsize=7.5)
        for j, (a, b) in enumerate(pairs):
            arrow(ax, ((a + 0.5) * w, y), ((b + 0.5) * w, y), color=TOKEN_COLORS[j], style="-",
                  lw=1.2, rad=0.45 if b - a > 1 else 0.9)

    # The cache row (rot_dim 8): the cosine of pair j, then its sine, in pair j's colour.
    y = 6.2
    ax.text(0.0, y + h + 0.25, words["rope_cache"], fontsize=8)
    for i in range(ROPE_HEAD_SIZE):
        j = i % (ROPE_HEAD_SIZE // 2)
        face = TOKEN_COLORS[j] if i < ROPE_HEAD_SIZE // 2 else tint(TOKEN_COLORS[j], 0.45)
        label = ("cos" if i < ROPE_HEAD_SIZE // 2 else "sin") + str(j)
        cell(ax, i * w, y, w, h, face, label, text_color_for(face), fontsize=7)
        ax.texts[-1].set_family(mono)
    head_row(4.3, rope_pairs(ROPE_HEAD_SIZE, True), words["rope_neox"])
    head_row(2.4, rope_pairs(ROPE_HEAD_SIZE, False), words["rope_gptj"])
    head_row(0.5, rope_pairs(4, True, offset=2), words["rope_offset"])
    ax.text(0.0, -0.75, words["rope_note"], fontsize=7.5, style=note_style(lang))
    finish(fig, ax, path, (-0.2, 11.5), (-1.1, 7.2))


# The DeepSeek V4 index pages: one decode token's row from local top-k indices to global
# slots (chapters/deepseek_v4_indices.md). The slots come from the rule of the CPU reference
# (reference_cpu/compute_global_topk_indices_and_lens.cpp): block_table[req, l / B] × B + l % B,
# packed to the left.
SPARSE_BLOCK = 4
SPARSE_TABLE = [12, 3, 40]
SPARSE_LOCAL = [5, 0, -1, 9, 2, -1, 7, -1]
SPARSE_WINDOW = 4
SPARSE_WINDOW_SLOTS = [157, 158, 159, 160]  # the last 4 positions, precomputed (schematic)


def sparse_global_row(local, table=SPARSE_TABLE, block=SPARSE_BLOCK):
    """(global row, [(input column, output column)]) of one token: each non-negative local index
    l becomes table[l // block] * block + l % block, packed to the left, then -1."""
    row, moves = [], []
    for i, l in enumerate(local):
        if l >= 0:
            moves.append((i, len(row)))
            row.append(table[l // block] * block + l % block)
    return row + [-1] * (len(local) - len(row)), moves


def draw_sparse_index_row(path, lang="en"):
    """One decode token: its local top-k row, the request's block table, the packed global row,
    and the FlashInfer row (window slots first)."""
    words = LABELS[lang]
    fig, ax = plt.subplots(figsize=(9.6, 6.4))
    w, h = 0.95, 0.6
    mono = FONTS[lang]["mono"]
    k = len(SPARSE_LOCAL)
    glob, moves = sparse_global_row(SPARSE_LOCAL)
    count = len(moves)

    def face_of(local):
        return UNTOUCHED if local < 0 else TOKEN_COLORS[local // SPARSE_BLOCK]

    # The local row (top).
    y_local = 6.0
    ax.text(0.0, y_local + h + 0.25, words["sparse_local"], fontsize=8)
    for i, l in enumerate(SPARSE_LOCAL):
        cell(ax, i * w, y_local, w, h, face_of(l), str(l), text_color_for(face_of(l)), fontsize=8)
        ax.texts[-1].set_family(mono)
    # The block table of the request (middle), one column per block.
    y_table = 3.9
    ax.text(0.0, y_table + h + 0.25, words["sparse_table"].format(b=SPARSE_BLOCK), fontsize=8)
    tw = 1.9
    for c, block in enumerate(SPARSE_TABLE):
        face = TOKEN_COLORS[c]
        cell(ax, c * tw, y_table, tw, h, face, str(block), text_color_for(face), fontsize=8)
        ax.text((c + 0.5) * tw, y_table - 0.12, words["sparse_column"].format(c=c), ha="center",
                va="top", fontsize=6.5)
    for i, l in enumerate(SPARSE_LOCAL):
        if l >= 0:
            c = l // SPARSE_BLOCK
            arrow(ax, ((i + 0.5) * w, y_local), ((c + 0.5) * tw, y_table + h),
                  color=TOKEN_COLORS[c], lw=0.9)
    # The global row (below the table).
    y_global = 1.8
    ax.text(0.0, y_global + h + 0.25,
            words["sparse_global"].format(b=SPARSE_BLOCK, n=count), fontsize=8)
    for o, g in enumerate(glob):
        src = next((SPARSE_LOCAL[i] for i, out in moves if out == o), -1)
        cell(ax, o * w, y_global, w, h, face_of(src), str(g), text_color_for(face_of(src)),
             fontsize=8)
        ax.texts[-1].set_family(mono)
    for i, o in moves:
        c = SPARSE_LOCAL[i] // SPARSE_BLOCK
        arrow(ax, ((c + 0.5) * tw, y_table), ((o + 0.5) * w, y_global + h),
              color=TOKEN_COLORS[c], lw=0.9, rad=0.1)
    # The FlashInfer row: the window's SWA slots, then the compressed columns.
    y_mixed = 0.0
    ax.text(0.0, y_mixed + h + 0.25,
            words["sparse_mixed"].format(w=SPARSE_WINDOW, n=count), fontsize=8)
    for o, slot in enumerate(SPARSE_WINDOW_SLOTS):
        cell(ax, o * w, y_mixed, w, h, tint(EDGE, 0.75), str(slot), "black", fontsize=8)
        ax.texts[-1].set_family(mono)
    # Each local index's slot stays in its own column (build_flashinfer_mixed_sparse_indices
    # does not pack).
    for o, l in enumerate(SPARSE_LOCAL):
        slot = SPARSE_TABLE[l // SPARSE_BLOCK] * SPARSE_BLOCK + l % SPARSE_BLOCK if l >= 0 else -1
        cell(ax, (SPARSE_WINDOW + o) * w, y_mixed, w, h, face_of(l), str(slot),
             text_color_for(face_of(l)), fontsize=8)
        ax.texts[-1].set_family(mono)
    ax.text(0.0, -0.75, words["sparse_note"].format(k=k), fontsize=7.5, style=note_style(lang))
    finish(fig, ax, path, (-0.2, (SPARSE_WINDOW + k) * w + 0.2), (-1.1, 7.3))


# The merge_attn_states page: the [N, H, D] partial outputs, the head-major [H, N] LSEs and
# which of their elements make one output row (chapters/merge_attn_states.md). The lane mapping
# is the optimized kernel's (kernels/attention/merge_attn_states/optimized.cu, M1-M3).
MERGE_TOKENS, MERGE_HEADS, MERGE_PACKS = 3, 2, 4
MERGE_PICKED = (1, 0)  # (token, head) whose row the arrows follow


def merge_row_color(t, h):
    """One colour per (token, head) row."""
    return TOKEN_COLORS[t * MERGE_HEADS + h]


def draw_merge_layout(path, lang="en"):
    """prefix_output and suffix_output as memory bars of 16-byte packs, the two head-major LSE
    tensors, and the output; what one (token, head) row reads is outlined, and arrows lead from
    its two LSEs to it."""
    words = LABELS[lang]
    mono = FONTS[lang]["mono"]
    fig, ax = plt.subplots(figsize=(9.4, 6.4))
    w, h, gap = 0.42, 0.42, 0.14
    group = MERGE_PACKS * w + gap
    picked = MERGE_PICKED

    def outline(x, y, width):
        ax.add_patch(Rectangle((x - 0.03, y - 0.03), width + 0.06, h + 0.06, facecolor="none",
                               edgecolor="black", linewidth=2.0))

    def heads_bar(y, title, title_below=False):
        ax.text(0.0, y - 0.42 if title_below else y + h + 0.2, title, fontsize=8,
                va="top" if title_below else "baseline")
        spots = {}
        for t in range(MERGE_TOKENS):
            for j in range(MERGE_HEADS):
                x0 = (t * MERGE_HEADS + j) * group
                face = merge_row_color(t, j)
                for k in range(MERGE_PACKS):
                    cell(ax, x0 + k * w, y, w, h, face, lw=0.6)
                ax.text(x0 + MERGE_PACKS * w / 2, y - 0.06, f"t{t} h{j}", ha="center", va="top",
                        fontsize=6.5, family=mono)
                spots[(t, j)] = x0
        outline(spots[picked], y, MERGE_PACKS * w)
        return spots

    def lse_bar(x_start, y, title):
        ax.text(x_start, y + h + 0.2, title, fontsize=8)
        width = 1.5 * w
        spots = {}
        for j in range(MERGE_HEADS):
            for t in range(MERGE_TOKENS):
                x0 = x_start + (j * MERGE_TOKENS + t) * width + j * gap
                face = merge_row_color(t, j)
                cell(ax, x0, y, width, h, face, f"{j},{t}", text_color_for(face), fontsize=6.5)
                ax.texts[-1].set_family(mono)
                spots[(t, j)] = (x0 + width / 2, y)
                if (t, j) == picked:
                    outline(x0, y, width)
        return spots

    heads_bar(6.2, words["merge_prefix"])
    heads_bar(4.9, words["merge_suffix"])
    prefix_lse = lse_bar(0.0, 3.6, words["merge_prefix_lse"])
    suffix_lse = lse_bar(6.6, 3.6, words["merge_suffix_lse"])
    output = heads_bar(1.9, words["merge_output"], title_below=True)
    x_out = output[picked] + MERGE_PACKS * w / 2
    for spots, shift, rad in ((prefix_lse, -0.25, 0.15), (suffix_lse, 0.25, -0.15)):
        x, y = spots[picked]
        arrow(ax, (x, y - 0.04), (x_out + shift, 1.9 + h + 0.05), color=EDGE, lw=1.0, rad=rad)
    # The lanes of the picked row: one per pack, lane 0 reads the LSEs.
    color = merge_row_color(*picked)
    for k in range(MERGE_PACKS):
        ax.text(output[picked] + (k + 0.5) * w, 1.9 + h / 2, f"{k}", ha="center", va="center",
                fontsize=6.5, color=text_color_for(color), family=mono)
    ax.text(0.0, 1.0, words["merge_lanes"], fontsize=7.5, va="top", linespacing=1.4)
    ax.text(0.0, -0.05, words["merge_note"], fontsize=7.5, style=note_style(lang))
    finish(fig, ax, path, (-0.2, MERGE_TOKENS * MERGE_HEADS * group + 0.2), (-0.3, 7.1))


FIGURES = {
    "paged_cache.png": draw_paged_cache,
    "slot_mapping.png": draw_slot_mapping,
    "nhd_hnd.png": draw_nhd_hnd,
    "kv_allocation.png": draw_kv_allocation,
    "legacy_layout.png": draw_legacy_layout,
    "token_placement.png": draw_token_placement,
    "token_placement_flash.png":
        lambda path, lang="en": draw_token_placement(path, lang, ("NHD", "HND")),
    "token_placement_legacy.png":
        lambda path, lang="en": draw_token_placement(path, lang, ("legacy key", "legacy value")),
    "value_pieces.png": draw_value_pieces,
    "swap_blocks.png": draw_swap_blocks,
    "three_versions.png": draw_three_versions,
    "mla_entries.png": draw_mla_entries,
    "gather_lookup.png": draw_gather_lookup,
    "skewed_split.png": draw_skewed_split,
    "indexer_cache.png": draw_indexer_cache,
    "model_ops_layer.png": draw_model_ops_layer,
    "rope_pairs.png": draw_rope_pairs,
    "dsv4_page.png": draw_dsv4_page,
    "turbomind_block.png": draw_turbomind_block,
    "sparse_index_row.png": draw_sparse_index_row,
    "merge_layout.png": draw_merge_layout,
}


# ------------------------------------------------------------------------------------------------
# Tables from the recorded results
# ------------------------------------------------------------------------------------------------

def registry_ops() -> list[dict]:
    """The op registry, read as the API pages read it, from `$PAGEDKV_BIN list --json`; where
    PAGEDKV_BIN is not set (the Python tests call this script directly), from the installed
    Python package, which holds the same registry (`pagedkv.ops()`)."""
    if os.environ.get("PAGEDKV_BIN"):
        import op_table  # the registry reader of the API pages and the op table
        return op_table.read_registry(os.environ["PAGEDKV_BIN"])
    try:
        import pagedkv
    except ImportError:
        raise SystemExit("make_figures: set PAGEDKV_BIN to the comparison tool (see "
                         "docs/README.md) or install the pagedkv package: the results "
                         "tables are one per op of the registry") from None
    return pagedkv.ops()


def table_ops() -> list[str]:
    """The ops that get a results table: every op of the registry, except the norms, whose W9
    pages draw plots instead (W9_OPS), and the ops of workload W8 (paged attention), whose
    pages draw a roofline instead (w8_ops()). A new op gets its table without being named
    here."""
    return [op["name"] for op in registry_ops()
            if op["name"] not in W9_OPS and W8_WORKLOAD not in op.get("workloads", [])]


def w8_ops() -> list[str]:
    """The ops of workload W8 (paged attention, chapters/attention.md), from the registry."""
    return [op["name"] for op in registry_ops() if W8_WORKLOAD in op.get("workloads", [])]


# Fixed prose only: the snippet becomes messages of the chapter's translation catalog, so every
# value that changes from run to run is a code span or a number (which need no translation).
NO_RESULTS = (":::{note}\n"
              "No recorded results yet. The table appears here once a GPU run of this op has "
              "been committed under `results/`.\n"
              ":::\n")
IMPL_ORDER = {"cpu": 0, "naive": 1, "optimized": 2}


def committed_results(results_dir):
    """results/*.json known to git when `results_dir` is the repository's results folder (as
    docs/tools/performance.py chooses), every *.json in it otherwise (tests, exports)."""
    if results_dir.resolve() != RESULTS_DIR.resolve():
        return sorted(results_dir.glob("*.json"))
    return results_files.committed_results(REPO)


def newest_results(results_dir, op=None):
    """(path, data) of the newest results file with rows of `op` (any newest file when op is
    None), or None: each op's numbers come from the newest run that measured it
    (docs/tools/results_files.py). Unreadable files are skipped."""
    paths = committed_results(results_dir)
    if op is None:
        return results_files.newest(paths)
    return results_files.newest_for_op(paths, op)


def _num(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _code(value):
    if value is None:
        return "–"
    text = " ".join(str(value).split()).replace("|", "\\|")
    return f"`{text}`" if text else "–"


def _size(row):
    """("tokens", n) for the cache writers, ("blocks", n) for swap_blocks."""
    if "tokens" in row:
        return "tokens", int(row["tokens"])
    return "blocks", int(row.get("blocks", 0))


def rows_for(data, op):
    """The rows of `op` in a results file. Schema (docs/tools/performance.py):
    {"gpu", "driver", "cuda", "commit", "date", "copy_bandwidth_gbps", "rows": [{"op",
    "workload", "variant", "slots", "impl", "tokens" | "blocks", "bytes", "median_us", "gbps",
    "pct_of_copy", "bit_exact", "max_abs_err"}]}"""
    return [r for r in data.get("rows", []) if isinstance(r, dict) and r.get("op") == op]


def run_lines(path, data):
    """The "Run" table of a results file: GPU, CUDA, commit, date, copy bandwidth, file."""
    try:
        shown_path = path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        shown_path = path.name
    return ["| Run | |", "|---|---|",
            f"| GPU | {_code(data.get('gpu'))} |",
            f"| CUDA | {_code(data.get('cuda'))} |",
            f"| Commit | {_code(str(data.get('commit', '?'))[:12])} |",
            f"| Date | {_code(data.get('date'))} |",
            f"| Device copy bandwidth (GB/s) | {_num(data.get('copy_bandwidth_gbps'))} |",
            f"| Results file | {_code(shown_path)} |", ""]


def results_table(op, results_dir=RESULTS_DIR, plot=None):
    """MyST Markdown for one op: the run, then the largest size of every workload variant, one
    row per version (cpu, naive, optimized and the reference rows) with its speed-up against
    naive, then the op's plot from the performance page (`plot`, shown when given). Every size
    is listed on the performance page; all of them here would be hundreds of rows for W1."""
    found = newest_results(results_dir, op)
    rows = rows_for(found[1], op) if found else []
    if not rows:
        return NO_RESULTS
    path, data = found
    lines = run_lines(path, data)
    unit = _size(rows[0])[0]
    unit_title = "Tokens" if unit == "tokens" else "Blocks"
    lines += ["The largest size of every workload variant. The {doc}`performance page "
              "</docs/performance>` lists every size.", "",
              f"| Workload | Variant | Slots | {unit_title} | Version | Median (µs) | GB/s "
              "| % of copy | Speed-up vs naive | Bit-exact |",
              "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    groups = {}
    for r in rows:
        key = (str(r.get("workload", "")), str(r.get("variant", "")), str(r.get("slots", "")),
               _size(r)[1])
        groups.setdefault(key, []).append(r)
    largest = {}
    for workload, variant, slots, size in groups:
        largest[(workload, variant, slots)] = max(size, largest.get((workload, variant, slots), 0))
    for key in sorted(k for k in groups if k[3] == largest[k[:3]]):
        workload, variant, slots, size = key
        group = sorted(groups[key], key=lambda r: (IMPL_ORDER.get(r.get("impl"), 9),
                                                    str(r.get("impl"))))
        naive_us = next((r.get("median_us") for r in group if r.get("impl") == "naive"), None)
        for r in group:
            us = r.get("median_us")
            speedup = "–"
            if naive_us and us and r.get("impl") not in ("cpu", "naive"):
                speedup = f"{naive_us / us:.2f}×"
            elif r.get("impl") == "naive" and us:
                speedup = "1.00×"
            exact = "–" if r.get("bit_exact") is None else ("✓" if r["bit_exact"] else "✗")
            lines.append(f"| {_code(workload)} | {_code(variant)} | {_code(slots)} | {size} | "
                         f"{_code(r.get('impl', '?'))} | {_num(us, 2)} | {_num(r.get('gbps'))} | "
                         f"{_num(r.get('pct_of_copy'))} | {speedup} | {exact} |")
    lines.append("")
    if plot is not None:
        lines += [f":::{{figure}} {plot}", f":alt: {op}", ":width: 100%", "",
                  "Speed of the naive and the optimized version as a % of a size-matched "
                  "copy measured in the same run, by size (the plot of the performance page).",
                  ":::", ""]
    return "\n".join(lines)


def table_path(out, op):
    """Where the results snippet of `op` goes (top level of docs/_generated, which conf.py
    excludes from the pages, so that only {include} reads it)."""
    return out / f"results_{op}.md"


# ------------------------------------------------------------------------------------------------
# Workload W9: the norms (chapters/normalizing_hidden_states.md)
# ------------------------------------------------------------------------------------------------

W9_OPS = ["rms_norm", "fused_add_rms_norm"]
W9_WORKLOAD = "W9"
NO_W9_ROWS = (":::{note}\n"
              "No recorded W9 rows yet. The table and the plot appear here once a GPU run of "
              "this op on workload W9 has been committed under `results/`.\n"
              ":::\n")
# Token counts shown in the chapter's table: the decode sizes and a mid-size prefill; the
# largest count of each variant is always added. Every size is on the performance page.
W9_TABLE_TOKENS = (1, 16, 64, 1024)
# Order of the dtypes in tables and legends; colour of each dtype in the plots.
W9_DTYPE_ORDER = {"bf16": 0, "f16": 1, "fp16": 1, "f32": 2, "fp32": 2}
W9_DTYPE_COLORS = {"bf16": TOKEN_COLORS[0], "f16": TOKEN_COLORS[1], "fp16": TOKEN_COLORS[1],
                   "f32": TOKEN_COLORS[2], "fp32": TOKEN_COLORS[2]}
W9_IMPL_DASH = {"naive": "--", "optimized": "-"}
W9_FIGURE_DIR = "results_figures"


def w9_variant(variant):
    """(hidden size, dtype) of a W9 variant named "hidden <n> <dtype>"; (None, variant) for
    any other name, which still gets its own rows and panel."""
    words = str(variant).split()
    if len(words) == 3 and words[0] == "hidden" and words[1].isdigit():
        return int(words[1]), words[2]
    return None, str(variant)


def _w9_variant_key(variant):
    hidden, dtype = w9_variant(variant)
    return (hidden is None, hidden or 0, W9_DTYPE_ORDER.get(dtype, 9), dtype)


def _w9_tokens(row):
    """The token count of a W9 row: "size" (the tool's generic field), else "tokens"."""
    value = row.get("size", row.get("tokens"))
    return None if value is None else int(value)


def w9_rows(data, op):
    """The W9 rows of `op` that have a token count."""
    return [r for r in rows_for(data, op)
            if str(r.get("workload")) == W9_WORKLOAD and _w9_tokens(r) is not None]


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sci(value):
    """A relative error or a tolerance: 3 significant digits, "∞" for a non-finite error
    (a NaN or an infinity in the output), "–" when the row has none."""
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _finite(value):
        return "∞"
    return f"{float(value):.2e}"


def _agrees(row):
    """The row's verdict under the reduction rule: its "agrees" key when present (rel_err within
    the tolerance, and for fused_add_rms_norm the residual byte for byte; results/README.md),
    else rel_err <= tolerance when both are there, else None."""
    if isinstance(row.get("agrees"), bool):
        return row["agrees"]
    err, tol = row.get("rel_err"), row.get("tolerance")
    if err is None or tol is None:
        return None
    return _finite(err) and _finite(tol) and err <= tol


def w9_plot_path(out, op, lang="en"):
    """Where the W9 plot of `op` goes in `lang`."""
    return out / W9_FIGURE_DIR / figure_file(f"{op}_W9.png", lang)


def draw_w9_plot(op, rows, path, lang="en"):
    """% of copy against tokens for the W9 rows of `op`: one panel per hidden size, one line
    per (version, dtype). Returns False (and draws nothing) when no row has a % of copy."""
    words = LABELS[lang]
    points = [r for r in rows if r.get("impl") in W9_IMPL_DASH and _finite(r.get("pct_of_copy"))]
    if not points:
        return False
    panels = {}
    for r in points:
        hidden, dtype = w9_variant(r.get("variant", ""))
        line = panels.setdefault(hidden, {}).setdefault((r["impl"], dtype), [])
        line.append((_w9_tokens(r), float(r["pct_of_copy"])))
    order = sorted(panels, key=lambda h: (h is None, h or 0))
    columns = min(3, len(order))
    rows_n = math.ceil(len(order) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.3 * rows_n + 0.4),
                             squeeze=False, sharey=True)
    for ax, hidden in zip(axes.flat, order):
        lines = panels[hidden]
        for impl, dtype in sorted(lines, key=lambda k: (W9_DTYPE_ORDER.get(k[1], 9), k[1],
                                                         k[0] != "naive")):
            xy = sorted(lines[(impl, dtype)])
            ax.plot([x for x, _ in xy], [y for _, y in xy], W9_IMPL_DASH[impl],
                    color=W9_DTYPE_COLORS.get(dtype, EDGE), marker="o", markersize=3,
                    linewidth=1.3, label=f"{impl} · {dtype}")
        ax.set_xscale("log", base=2)
        ax.set_title(words["w9_panel"].format(hidden=hidden if hidden is not None else "?"),
                     fontsize=9)
        ax.set_xlabel(words["w9_tokens"])
        ax.axhline(100, color="0.6", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6.5)
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(words["w9_pct"])
    fig.suptitle(words["w9_title"].format(op=op), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def w9_table(op, results_dir=RESULTS_DIR, plot=None):
    """MyST Markdown for the W9 rows of `op` in the newest results file: the run, then one row
    per (variant, token count) for the counts of W9_TABLE_TOKENS and the largest one, with the
    naive and optimized times, their % of copy, the speed-up, each version's rel_err, the
    tolerance and whether both agree; then the plot (`plot`, shown when given). Every cell that
    changes from run to run is a code span or a number (no translation needed)."""
    found = newest_results(results_dir, op)
    rows = w9_rows(found[1], op) if found else []
    if not rows:
        return NO_W9_ROWS
    path, data = found
    lines = run_lines(path, data)
    lines += ["Workload W9, at the decode sizes, one prefill size and the largest size of "
              "every variant. Agreement ✓: both GPU versions agree with the CPU reference (relative "
              "error within the tolerance and, for `fused_add_rms_norm`, the residual byte for "
              "byte). A relative error that is not finite is recorded as empty and shown as "
              "–. The {doc}`performance page </docs/performance>` lists every size.",
              "",
              "| Variant | Tokens | Naive (µs) | Optimized (µs) | Speed-up vs naive "
              "| Naive: % of copy | Optimized: % of copy | Naive: rel_err "
              "| Optimized: rel_err | Tolerance | Agreement |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((str(r.get("variant", "")), _w9_tokens(r)), {})[str(r.get("impl"))] = r
    largest = {}
    for variant, tokens in groups:
        largest[variant] = max(tokens, largest.get(variant, tokens))
    shown = [k for k in groups if k[1] in W9_TABLE_TOKENS or k[1] == largest[k[0]]]
    for variant, tokens in sorted(shown, key=lambda k: (_w9_variant_key(k[0]), k[1])):
        impls = groups[(variant, tokens)]
        naive, optimized = impls.get("naive", {}), impls.get("optimized", {})
        naive_us, opt_us = naive.get("median_us"), optimized.get("median_us")
        speedup = f"{naive_us / opt_us:.2f}×" if _finite(naive_us) and _finite(opt_us) \
            and opt_us > 0 else "–"
        verdicts = [_agrees(r) for r in (naive, optimized) if r]
        if not verdicts or any(v is None for v in verdicts):
            agreement = "–"
        else:
            agreement = "✓" if all(verdicts) else "✗"
        tolerance = optimized.get("tolerance", naive.get("tolerance"))
        lines.append(f"| {_code(variant)} | {tokens} | {_num(naive_us, 2)} | {_num(opt_us, 2)} "
                     f"| {speedup} | {_num(naive.get('pct_of_copy'))} "
                     f"| {_num(optimized.get('pct_of_copy'))} | {_sci(naive.get('rel_err'))} "
                     f"| {_sci(optimized.get('rel_err'))} | {_sci(tolerance)} | {agreement} |")
    lines.append("")
    if plot is not None:
        lines += [f":::{{figure}} {plot}", f":alt: {op}, W9", ":width: 100%", "",
                  "Speed of the naive (dashed) and the optimized (solid) kernel as a % of a "
                  "size-matched copy measured in the same run, by number of tokens, one panel "
                  "per hidden size and one colour per dtype.", ":::", ""]
    return "\n".join(lines)


def w9_table_path(out, op):
    """Where the W9 snippet of `op` goes (top level of docs/_generated, like table_path)."""
    return out / f"results_W9_{op}.md"


def write_w9(out, op, results_dir=RESULTS_DIR):
    """Draws the W9 plot of `op` in every language (when the newest run has W9 rows with a %
    of copy) and writes its snippet. Returns the number of plots drawn."""
    found = newest_results(results_dir, op)
    rows = w9_rows(found[1], op) if found else []
    drawn = 0
    for lang in LANGUAGES:
        path = w9_plot_path(out, op, lang)
        if path.is_file():
            path.unlink()  # a plot of an older run must not survive a run without one
        if rows:
            outcome = []
            draw_figure(lambda p, l: outcome.append(draw_w9_plot(op, rows, p, l)), path, lang)
            drawn += int(outcome[0])
    plot_ref = f"/docs/_generated/{W9_FIGURE_DIR}/{op}_W9.png" if drawn else None
    w9_table_path(out, op).write_text(w9_table(op, results_dir, plot_ref), encoding="utf-8")
    return drawn


# ------------------------------------------------------------------------------------------------
# Workload W8: paged attention (chapters/attention.md)
# ------------------------------------------------------------------------------------------------

W8_WORKLOAD = "W8"
NO_W8_ROWS = (":::{note}\n"
              "No recorded W8 rows yet. The table and the roofline plot appear here once a GPU "
              "run of this op on workload W8 has been committed under `results/`.\n"
              ":::\n")
W8_IMPL_DASH = {"naive": "--", "optimized": "-"}
# One colour per context length, in order.
W8_CONTEXT_COLORS = TOKEN_COLORS


def w8_variant(variant):
    """(dtype, context) of a W8 variant named "<dtype>, context <n>"; (variant, None) for any
    other name, which still gets its own rows and panel."""
    text = str(variant)
    head, sep, tail = text.partition(", context ")
    if sep and tail.strip().isdigit():
        return head.strip(), int(tail)
    return text, None


def _w8_batch(row):
    """The batch size of a W8 row (its "size": sequences)."""
    value = row.get("size")
    return None if value is None else int(value)


def w8_rows(data, op):
    """The W8 rows of `op` that have a batch size."""
    return [r for r in rows_for(data, op)
            if str(r.get("workload")) == W8_WORKLOAD and _w8_batch(r) is not None]


def w8_plot_path(out, op, lang="en"):
    """Where the W8 roofline of `op` goes in `lang`."""
    return out / W9_FIGURE_DIR / figure_file(f"{op}_W8.png", lang)


def draw_w8_plot(op, rows, path, lang="en"):
    """The roofline of `op`: achieved GB/s (the byte model: keys and values read once per kv
    head, query and out) against batch × context, one panel per cache dtype, one colour per
    context, naive dashed and optimized solid, and as the memory roof the size-matched copy of
    each point measured in the same run (grey, dotted: GB/s × 100 / % of copy). Returns False
    (and draws nothing) when no row has a speed."""
    words = LABELS[lang]
    points = [r for r in rows if r.get("impl") in W8_IMPL_DASH and _finite(r.get("gbps"))
              and r.get("gbps") > 0]
    if not points:
        return False
    panels, roofs = {}, {}
    for r in points:
        dtype, context = w8_variant(r.get("variant", ""))
        tokens = _w8_batch(r) * (context or 1)
        panels.setdefault(dtype, {}).setdefault((r["impl"], context), []).append(
            (tokens, float(r["gbps"])))
        pct = r.get("pct_of_copy")
        if r["impl"] == "optimized" and _finite(pct) and pct > 0:
            roofs.setdefault(dtype, {}).setdefault(context, []).append(
                (tokens, float(r["gbps"]) * 100.0 / float(pct)))
    order = sorted(panels, key=lambda d: (W9_DTYPE_ORDER.get(d, 5), d))
    contexts = sorted({c for lines in panels.values() for _, c in lines if c is not None})
    fig, axes = plt.subplots(1, len(order), figsize=(4.6 * len(order), 3.6), squeeze=False,
                             sharey=True)
    for ax, dtype in zip(axes.flat, order):
        for i, context in enumerate(sorted(roofs.get(dtype, {}), key=lambda c: c or 0)):
            xy = sorted(roofs[dtype][context])
            ax.plot([x for x, _ in xy], [y for _, y in xy], ":", color="0.55", marker="x",
                    markersize=3, linewidth=1.0, label=words["w8_roof"] if i == 0 else None)
        lines = panels[dtype]
        for impl, context in sorted(lines, key=lambda k: (k[1] or 0, k[0] != "naive")):
            xy = sorted(lines[(impl, context)])
            color = (W8_CONTEXT_COLORS[contexts.index(context) % len(W8_CONTEXT_COLORS)]
                     if context in contexts else EDGE)
            ax.plot([x for x, _ in xy], [y for _, y in xy], W8_IMPL_DASH[impl], color=color,
                    marker="o", markersize=3, linewidth=1.3,
                    label=words["w8_line"].format(impl=impl, context=context))
        ax.set_xscale("log", base=2)
        ax.set_title(words["w8_panel"].format(dtype=dtype), fontsize=9)
        ax.set_xlabel(words["w8_tokens"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel(words["w8_gbps"])
    fig.suptitle(words["w8_title"].format(op=op), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def w8_table(op, results_dir=RESULTS_DIR, plot=None):
    """MyST Markdown for the W8 rows of `op` in the newest results file that has them: the run,
    then one row per (variant, batch) with the naive and optimized times, the optimized
    version's GB/s and % of copy, the speed-up, each version's rel_err, the tolerance and
    whether both agree; then the roofline (`plot`, shown when given). Every cell that changes
    from run to run is a code span or a number (no translation needed)."""
    found = newest_results(results_dir, op)
    rows = w8_rows(found[1], op) if found else []
    if not rows:
        return NO_W8_ROWS
    path, data = found
    lines = run_lines(path, data)
    lines += ["Workload W8: every decode batch, each sequence `context` tokens long. Agreement "
              "✓: both GPU versions agree with the CPU reference (relative error within the "
              "tolerance; for `paged_attention_v2` the workspaces too). A relative error that "
              "is not finite is shown as ∞.",
              "",
              "| Variant | Batch | Naive (µs) | Optimized (µs) | Speed-up vs naive "
              "| Optimized: GB/s | Optimized: % of copy | Naive: rel_err | Optimized: rel_err "
              "| Tolerance | Agreement |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((str(r.get("variant", "")), _w8_batch(r)), {})[str(r.get("impl"))] = r

    def key(k):
        dtype, context = w8_variant(k[0])
        return (W9_DTYPE_ORDER.get(dtype, 5), dtype, context is None, context or 0, k[1])

    for variant, batch in sorted(groups, key=key):
        impls = groups[(variant, batch)]
        naive, optimized = impls.get("naive", {}), impls.get("optimized", {})
        naive_us, opt_us = naive.get("median_us"), optimized.get("median_us")
        speedup = f"{naive_us / opt_us:.2f}×" if _finite(naive_us) and _finite(opt_us) \
            and opt_us > 0 else "–"
        verdicts = [_agrees(r) for r in (naive, optimized) if r]
        if not verdicts or any(v is None for v in verdicts):
            agreement = "–"
        else:
            agreement = "✓" if all(verdicts) else "✗"
        tolerance = optimized.get("tolerance", naive.get("tolerance"))
        lines.append(f"| {_code(variant)} | {batch} | {_num(naive_us, 2)} | {_num(opt_us, 2)} "
                     f"| {speedup} | {_num(optimized.get('gbps'))} "
                     f"| {_num(optimized.get('pct_of_copy'))} | {_sci(naive.get('rel_err'))} "
                     f"| {_sci(optimized.get('rel_err'))} | {_sci(tolerance)} | {agreement} |")
    lines.append("")
    if plot is not None:
        lines += [f":::{{figure}} {plot}", f":alt: {op}, W8", ":width: 100%", "",
                  "Achieved bandwidth of the naive (dashed) and the optimized (solid) kernel "
                  "under the byte model (keys and values read once per kv head, query and out) "
                  "against batch × context, one colour per context length; the grey dotted "
                  "lines are the size-matched copy of each point measured in the same run, the "
                  "memory roof.", ":::", ""]
    return "\n".join(lines)


def w8_table_path(out, op):
    """Where the W8 snippet of `op` goes (top level of docs/_generated, like table_path)."""
    return out / f"results_W8_{op}.md"


def write_w8(out, op, results_dir=RESULTS_DIR):
    """Draws the W8 roofline of `op` in every language (when the newest run that measured it
    has W8 rows with a speed) and writes its snippet. Returns the number of plots drawn."""
    found = newest_results(results_dir, op)
    rows = w8_rows(found[1], op) if found else []
    out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for lang in LANGUAGES:
        path = w8_plot_path(out, op, lang)
        if path.is_file():
            path.unlink()  # a plot of an older run must not survive a run without one
        if rows:
            outcome = []
            draw_figure(lambda p, l: outcome.append(draw_w8_plot(op, rows, p, l)), path, lang)
            drawn += int(outcome[0])
    plot_ref = f"/docs/_generated/{W9_FIGURE_DIR}/{op}_W8.png" if drawn else None
    w8_table_path(out, op).write_text(w8_table(op, results_dir, plot_ref), encoding="utf-8")
    return drawn


# ------------------------------------------------------------------------------------------------
# The start page's headline: one line per op (docs/index.md)
# ------------------------------------------------------------------------------------------------

HEADLINE_OPS = ["swap_blocks", "reshape_and_cache_flash", "reshape_and_cache", "rms_norm",
                "fused_add_rms_norm", "concat_and_cache_mla", "concat_and_cache_mla_rope_fused",
                "convert_fp8"]
NO_HEADLINE = (":::{note}\n"
               "No recorded results yet. The headline table appears here once a GPU run has "
               "been committed under `results/`.\n"
               ":::\n")


def _row_size(row):
    """The size of a row: "size" (the tool's generic field), else "tokens" or "blocks"."""
    for key in ("size", "tokens", "blocks"):
        if row.get(key) is not None:
            return int(row[key])
    return None


def headline_rows(data, ops=HEADLINE_OPS):
    """Per op of the newest results file: (op, workloads, largest size, lowest % of copy,
    highest % of copy, the variants of the lowest, number of variants) of the optimized kernel
    at the largest size of each workload variant; ops without optimized rows are left out."""
    result = []
    for op in ops:
        rows = [r for r in rows_for(data, op)
                if r.get("impl") == "optimized" and _finite(r.get("pct_of_copy"))
                and _row_size(r) is not None]
        if not rows:
            continue
        largest = {}
        for r in rows:
            key = (str(r.get("workload", "")), str(r.get("variant", "")), str(r.get("slots", "")))
            if key not in largest or _row_size(r) > _row_size(largest[key]):
                largest[key] = r
        pcts = {key: float(r["pct_of_copy"]) for key, r in largest.items()}
        low, high = min(pcts.values()), max(pcts.values())
        lowest = sorted(" ".join(w for w in key[1:] if w) for key, v in pcts.items() if v == low)
        result.append((op, sorted({key[0] for key in largest}),
                       max(_row_size(r) for r in largest.values()), low, high, lowest,
                       len(largest)))
    return result


def headline_table(results_dir=RESULTS_DIR):
    """MyST Markdown for the start page: one line per op with the optimized kernel's % of a
    size-matched copy at the largest size (lowest and highest over the op's workload variants),
    then the run (GPU, date, file). Every cell that changes from run to run is a code span or a
    number, so a new results file needs no new translation."""
    lines, used = [], {}  # used: results file -> (its data, the ops it supplies)
    for op in HEADLINE_OPS:
        found = newest_results(results_dir, op)
        line = headline_rows(found[1], [op]) if found else []
        if line:
            lines += line
            used.setdefault(found[0], (found[1], []))[1].append(op)
    if not lines:
        return NO_HEADLINE
    out = ["| Op | Workload | Largest size | Optimized: % of copy, lowest | Highest "
           "| Lowest in | Variants |",
           "|---|---|---:|---:|---:|---|---:|"]
    for op, workloads, size, low, high, lowest, count in lines:
        out.append(f"| {_code(op)} | {', '.join(_code(w) for w in workloads)} | {size} "
                   f"| {_num(low)} | {_num(high)} | {', '.join(_code(v) for v in lowest)} "
                   f"| {count} |")

    def shown(path):
        try:
            return path.resolve().relative_to(REPO).as_posix()
        except ValueError:
            return path.name

    if len(used) == 1:
        (path, (data, _)), = used.items()
        out += ["", "| Run | |", "|---|---|",
                f"| GPU | {_code(data.get('gpu'))} |",
                f"| Date | {_code(data.get('date'))} |",
                f"| Results file | {_code(shown(path))} |", ""]
    else:  # each op from the newest run that measured it (docs/tools/results_files.py)
        out += ["", "| Results file | GPU | Date | Ops |", "|---|---|---|---|"]
        for path, (data, ops) in used.items():
            out.append(f"| {_code(shown(path))} | {_code(data.get('gpu'))} "
                       f"| {_code(data.get('date'))} | {', '.join(_code(op) for op in ops)} |")
        out.append("")
    return "\n".join(out)


def headline_path(out):
    """Where the start page's headline snippet goes (top level of docs/_generated)."""
    return out / "results_headline.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder (default: docs/_generated)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="folder of recorded results JSON files (default: results/)")
    args = parser.parse_args(argv)
    try:
        for name, draw in FIGURES.items():
            for lang in LANGUAGES:
                draw_figure(draw, args.out / "figures" / figure_file(name, lang), lang)
        args.out.mkdir(parents=True, exist_ok=True)
        plots = sum(write_w9(args.out, op, args.results) for op in W9_OPS)
        attention_ops = w8_ops()
        plots += sum(write_w8(args.out, op, args.results) for op in attention_ops)
    except MissingFontError as error:
        print(error, file=sys.stderr)
        return 1
    tables = table_ops()
    for op in tables:
        # The performance page's plot of the op (docs/tools/generate.py runs first), when drawn.
        plot = args.out / "perf" / f"{op}.png"
        plot_ref = f"/docs/_generated/perf/{op}.png" if plot.is_file() else None
        table_path(args.out, op).write_text(results_table(op, args.results, plot_ref),
                                            encoding="utf-8")
    headline_path(args.out).write_text(headline_table(args.results), encoding="utf-8")
    print(f"make_figures: {len(FIGURES)} figures in {len(LANGUAGES)} languages, "
          f"{len(tables) + len(W9_OPS) + len(attention_ops)} tables and {plots} W9 / W8 plots "
          f"in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
