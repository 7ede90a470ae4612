// Registry entry of build_flashinfer_mixed_sparse_indices, and its workload points (W4,
// sparse_index_case.h).
//
// Two variants. "decode": a batch of Td decode requests, their precomputed SWA slots (the last
// 128 positions through the SWA table) and local top-k lists (C4A, translated by the op), all
// valid. "prefill": a chunk of Tp prefill tokens, 2,048 per request, after random prefixes, with
// their local top-k lists. Output width 128 + round_up(2048, 4) = 2176; sparse_indices and
// sparse_topk_lens share one buffer.
#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "sparse_index_case.h"

namespace pagedkv::entries {

namespace {

constexpr std::int64_t kColumns = kW4Window + (kW4Topk + 3) / 4 * 4;  // 2176

class MixedSparseCase final : public PlannedCase<BuildFlashinferMixedSparseIndices> {
  using Op = BuildFlashinferMixedSparseIndices;

 public:
  MixedSparseCase(const WorkloadPoint& point, std::uint64_t seed)
      : decode_(point.variant == "decode" ? point.size : 0),
        batch_(draw_sparse_batch(decode_, point.variant == "decode" ? 0 : point.size, seed)),
        tokens_(batch_.tokens()) {
    Random random{seed ^ 0x3F1Aull};
    const std::int64_t prefill = tokens_ - decode_;
    std::vector<std::int32_t> swa(static_cast<std::size_t>(decode_ * kW4Window));
    std::vector<std::int32_t> decode_topk(static_cast<std::size_t>(decode_ * kW4Topk));
    std::vector<std::int32_t> prefill_topk(static_cast<std::size_t>(prefill * kW4Topk));
    for (std::int64_t u = 0; u < tokens_; ++u) {
      const std::int64_t pos = batch_.positions[u];
      if (u < decode_) {
        // The precomputed SWA slots of positions pos - 127 .. pos (all >= 16,384 - 128).
        for (std::int64_t o = 0; o < kW4Window; ++o) {
          const std::int64_t p = pos - kW4Window + 1 + o;
          const std::int64_t block = batch_.swa_table[u * batch_.swa_width + p / kW4SwaBlock];
          swa[u * kW4Window + o] = static_cast<std::int32_t>(block * kW4SwaBlock + p % kW4SwaBlock);
        }
        draw_topk_row(random, pos, decode_topk.data() + u * kW4Topk, kW4Topk);
      } else {
        draw_topk_row(random, pos, prefill_topk.data() + (u - decode_) * kW4Topk, kW4Topk);
        topk_read_ += std::min<std::int64_t>((pos + 1) / kW4Ratio, kW4Topk);
      }
    }
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(std::max<std::int64_t>(decode_, 1)), 1);
    swa_ = inputs_.add(swa);
    decode_topk_ = inputs_.add(decode_topk);
    valid_ = inputs_.add(valid.data(), valid.size());
    prefill_topk_ = inputs_.add(prefill_topk);
    qsl_ = inputs_.add(batch_.query_start_loc);
    seq_ = inputs_.add(batch_.seq_lens);
    req_ = inputs_.add(batch_.token_to_req);
    swa_table_ = inputs_.add(batch_.swa_table);
    ctable_ = inputs_.add(batch_.compressed_table);
    host_output_ = Buffer(Memory::host, static_cast<std::size_t>(output_bytes()));
    host_output_.fill(kIndexPoisonByte);
  }

  std::int64_t bytes_moved() const override {
    // sparse_indices and sparse_topk_lens written; the decode rows' precomputed indices and
    // validity read; the prefill top-k entries the queries use read; token_to_req_indices read.
    return tokens_ * kColumns * 4 + tokens_ * 4 + decode_ * (kW4Window + kW4Topk) * 4 + decode_ +
           topk_read_ * 4 + tokens_ * 4;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      device_inputs_.push_back(copy_to(Memory::device, inputs_.host()));
      device_outputs_.emplace_back(Memory::device, host_output_.size());
      device_outputs_.back().fill(kIndexPoisonByte);
      calls_.add(args_for(device_inputs_.back(), device_outputs_.back(), Device::cuda));
    }
  }

  void reset_outputs() override { device_outputs_.at(0).fill(kIndexPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_outputs_.at(0), host_output_.data(), DType::i32);
  }

 private:
  Op::Args cpu_call() override { return args_for(inputs_.host(), host_output_, Device::cpu); }
  std::int64_t output_bytes() const { return tokens_ * kColumns * 4 + tokens_ * 4; }

  Op::Args args_for(const Buffer& inputs, const Buffer& output, Device device) const {
    auto* out = reinterpret_cast<std::int32_t*>(output.data());
    const std::int64_t R = batch_.requests();
    const std::int64_t prefill = tokens_ - decode_;
    const auto i32 = [&](int index, std::initializer_list<std::int64_t> shape) {
      return TensorView::contiguous(inputs_.at(inputs, index), DType::i32, shape, device);
    };
    Op::Args args;
    args.decode_swa_indices = i32(swa_, {decode_, kW4Window});
    args.decode_compressed_indices = i32(decode_topk_, {decode_, kW4Topk});
    args.prefill_topk_indices = i32(prefill_topk_, {prefill, kW4Topk});
    args.query_start_loc = i32(qsl_, {R + 1});
    args.seq_lens = i32(seq_, {R});
    args.token_to_req_indices = i32(req_, {tokens_});
    args.swa_block_table = i32(swa_table_, {R, batch_.swa_width});
    args.swa_block_size = kW4SwaBlock;
    args.compressed_block_table = i32(ctable_, {R, batch_.compressed_width});
    args.compressed_block_size = kW4CompressedBlock;
    args.window_size = kW4Window;
    args.compress_ratio = kW4Ratio;
    args.topk = kW4Topk;
    args.decode_compressed_indices_are_local = true;
    args.decode_is_valid_token =
        TensorView::contiguous(inputs_.at(inputs, valid_), DType::b8, {decode_}, device);
    args.sparse_indices = TensorView::contiguous(out, DType::i32, {tokens_, kColumns}, device);
    args.sparse_topk_lens =
        TensorView::contiguous(out + tokens_ * kColumns, DType::i32, {tokens_}, device);
    return args;
  }

  std::int64_t decode_;
  SparseBatch batch_;
  std::int64_t tokens_;
  std::int64_t topk_read_ = 0;  // prefill top-k entries the queries use (the byte model's reads)
  PackedArrays inputs_;
  int swa_ = 0, decode_topk_ = 0, valid_ = 0, prefill_topk_ = 0, qsl_ = 0, seq_ = 0, req_ = 0,
      swa_table_ = 0, ctable_ = 0;
  Buffer host_output_;                  // the CPU reference's sparse_indices, sparse_topk_lens
  std::vector<Buffer> device_inputs_;   // one copy per buffer set
  std::vector<Buffer> device_outputs_;  // one per buffer set
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W4") return {};
  std::vector<WorkloadPoint> list;
  for (std::int64_t tokens : quick ? std::vector<std::int64_t>{1, 8}
                                   : std::vector<std::int64_t>{1, 8, 64, 512}) {
    list.push_back({"W4", "decode", "random", tokens, "tokens", 0});
  }
  for (std::int64_t tokens : quick ? std::vector<std::int64_t>{64, 256}
                                   : std::vector<std::int64_t>{1024, 8192}) {
    list.push_back({"W4", "prefill", "random", tokens, "tokens", 0});
  }
  return list;
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<MixedSparseCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry BuildFlashinferMixedSparseIndices::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "DeepSeek V4";
  entry.role =
      "Builds one row of global cache slots per token of a decode-first mixed batch for "
      "FlashInfer's sparse MLA: the sliding-window slots, then the compressed top-k slots "
      "(DeepSeek V4).";
  entry.upstream =
      "vLLM vllm/models/deepseek_v4/common/ops/cache_utils.py: "
      "build_flashinfer_mixed_sparse_indices";
  entry.cpu_source = "reference_cpu/build_flashinfer_mixed_sparse_indices.cpp";
  entry.naive_source = "kernels/deepseek_v4/build_flashinfer_mixed_sparse_indices/naive.cu";
  entry.optimized_source =
      "kernels/deepseek_v4/build_flashinfer_mixed_sparse_indices/optimized.cu";
  entry.byte_model =
      "sparse_indices written whole (4 bytes per column) and sparse_topk_lens (4 bytes per "
      "token); the decode rows' precomputed SWA and compressed indices read (4 bytes each) and "
      "their validity (1 byte); the prefill top-k entries each query uses read "
      "(min((pos + 1) / ratio, topk) x 4 bytes); token_to_req_indices read (4 bytes per token); "
      "block-table words not counted";
  entry.agreement_rule =
      "bit-exact: sparse_indices and sparse_topk_lens equal the CPU reference's, element for "
      "element";
  entry.workloads = {"W4"};
  entry.workload_notes = sparse_index_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
