// Tests of reshape_and_cache (vLLM csrc/cache_kernels.cu @9803b00: reshape_and_cache), tag [reshape_and_cache].
//
// CPU part (runs everywhere): a small hand-computed case proving where the key chunks and the
// transposed values land and that nothing else is touched, hand-encoded fp8 bytes, every head
// written for 64 heads × 128 (upstream drops the (head, chunk) pairs beyond 512), and one test
// per validation rule: the call throws InvalidArgument naming the argument, and no cache byte
// changes.
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel write whole poisoned
// caches, which must be byte-identical (untouched bytes included) over a grid of head sizes,
// head counts, block sizes, token counts, slot patterns, row layouts, activation dtypes and
// cache kinds.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;

// ---------------------------------------------------------------------------------------------
// Building a call.

enum class SlotPattern {
  contiguous,  // sequences filling consecutive offsets of their blocks (prefill)
  random,      // distinct slots drawn at random over the whole cache (decode-like scatter)
  mixed,       // first half: runs of 1-4 slots in random blocks (a decode batch with speculative
               // tokens); second half: one prefill from offset 0. Tiles of both store orders.
};

enum class RowLayout {
  separate,         // key and value each a contiguous [T_pad, H, D] tensor
  fused_aligned,    // key and value sliced out of one fused row per token, 16-byte aligned
  fused_unaligned,  // the same with an odd row pitch and an odd start: no 16-byte vectors
};

struct CaseSpec {
  std::int64_t num_tokens = 1;
  std::int64_t num_heads = 1;
  std::int64_t head_size = 64;
  std::int64_t block_size = 16;
  DType dtype = DType::bf16;
  std::string kv_cache_dtype = "auto";
  SlotPattern slots = SlotPattern::contiguous;
  RowLayout rows = RowLayout::separate;
  bool misaligned_caches = false;  // caches start one element past a 16-byte boundary
  std::uint64_t seed = 1;
};

std::string describe(const CaseSpec& s) {
  std::ostringstream out;
  out << "tokens " << s.num_tokens << ", heads " << s.num_heads << ", head_size " << s.head_size
      << ", block_size " << s.block_size << ", " << dtype_name(s.dtype) << " -> \""
      << s.kv_cache_dtype << "\", slots "
      << (s.slots == SlotPattern::contiguous ? "contiguous"
          : s.slots == SlotPattern::random   ? "random"
                                             : "mixed")
      << ", rows "
      << (s.rows == RowLayout::separate        ? "separate"
          : s.rows == RowLayout::fused_aligned ? "fused aligned"
                                               : "fused unaligned")
      << (s.misaligned_caches ? ", misaligned caches" : "") << ", seed " << s.seed;
  return out.str();
}

// The host buffers and views of one call. Not copyable: the views point into the buffers (a move
// keeps the buffers' storage, so the views stay valid).
struct Case {
  CaseSpec spec;
  std::int64_t num_blocks = 0;
  std::int64_t x = 0;
  std::int64_t cache_element_size = 0;
  bool value_in_key_buffer = false;  // fused rows: value is a slice of the key buffer
  Buffer key_buffer, value_buffer, key_cache_buffer, value_cache_buffer, slot_buffer, scale_buffer;
  TensorView key;          // [T_pad, num_heads, head_size]
  TensorView value;        // [T_pad, num_heads, head_size]
  TensorView key_cache;    // [num_blocks, num_heads, head_size / x, block_size, x]
  TensorView value_cache;  // [num_blocks, num_heads, head_size, block_size]
  TensorView slot_mapping;  // [num_tokens] i64
  TensorView k_scale;      // [1] f32
  TensorView v_scale;      // [1] f32

  Case() = default;
  Case(const Case&) = delete;
  Case& operator=(const Case&) = delete;
  Case(Case&&) = default;
  Case& operator=(Case&&) = default;
};

// Slots for `spec`: contiguous = up to three sequences, the first starting at offset 0 of a
// block, the others at a random offset (as after a cached prefix), each taking a fresh free block
// at every block boundary; random = distinct slots anywhere; mixed = see SlotPattern. With more
// than two tokens, the last token and one in the middle are padding (-1).
std::vector<std::int64_t> make_slots(const CaseSpec& spec, std::int64_t num_blocks,
                                     std::mt19937_64& rng) {
  const std::int64_t num_tokens = spec.num_tokens;
  const std::int64_t block_size = spec.block_size;
  std::vector<std::int64_t> slots(static_cast<std::size_t>(num_tokens));
  if (spec.slots == SlotPattern::random) {
    std::vector<std::int64_t> all(static_cast<std::size_t>(num_blocks * block_size));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::copy(all.begin(), all.begin() + num_tokens, slots.begin());
  } else if (spec.slots == SlotPattern::mixed) {
    std::vector<std::int64_t> free_blocks(static_cast<std::size_t>(num_blocks));
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
    std::size_t next_free = 0;
    std::int64_t token = 0;
    const std::int64_t decode_tokens = num_tokens / 2;
    while (token < decode_tokens) {  // short runs, each in a fresh block at a random offset
      const std::int64_t block = free_blocks.at(next_free++);
      const auto offset = static_cast<std::int64_t>(rng() % block_size);
      const std::int64_t length = std::min({static_cast<std::int64_t>(1 + rng() % 4),
                                            block_size - offset, decode_tokens - token});
      for (std::int64_t i = 0; i < length; ++i)
        slots[static_cast<std::size_t>(token++)] = block * block_size + offset + i;
    }
    // The prefill: consecutive slots from offset 0 of fresh blocks.
    for (std::int64_t i = 0; token < num_tokens; ++i, ++token) {
      const std::int64_t block =
          free_blocks.at(next_free + static_cast<std::size_t>(i / block_size));
      slots[static_cast<std::size_t>(token)] = block * block_size + i % block_size;
    }
  } else {
    std::vector<std::int64_t> free_blocks(static_cast<std::size_t>(num_blocks));
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
    std::size_t next_free = 0;
    std::int64_t token = 0;
    for (int sequence = 0; token < num_tokens; ++sequence) {
      const std::int64_t left = num_tokens - token;
      const std::int64_t length =
          sequence == 2 ? left : std::min<std::int64_t>(left, 1 + rng() % num_tokens);
      std::int64_t block = free_blocks.at(next_free++);
      std::int64_t offset = sequence == 0 ? 0 : static_cast<std::int64_t>(rng() % block_size);
      for (std::int64_t i = 0; i < length; ++i) {
        if (offset == block_size) {
          block = free_blocks.at(next_free++);
          offset = 0;
        }
        slots[static_cast<std::size_t>(token++)] = block * block_size + offset++;
      }
    }
  }
  if (num_tokens > 2) {
    slots[static_cast<std::size_t>(num_tokens - 1)] = -1;
    slots[static_cast<std::size_t>(num_tokens / 2)] = -1;
  }
  return slots;
}

// A complete, valid call for `spec` on the host: random activations, poisoned caches.
Case make_case(const CaseSpec& spec) {
  Case c;
  c.spec = spec;
  std::mt19937_64 rng(spec.seed);
  const std::int64_t T = spec.num_tokens, H = spec.num_heads, D = spec.head_size;
  const std::int64_t padded_tokens = T + 2;  // extra rows the op must ignore
  const bool fp8 = spec.kv_cache_dtype.rfind("fp8", 0) == 0;
  const DType cache_dtype = fp8 ? DType::u8 : spec.dtype;
  c.cache_element_size = dtype_size(cache_dtype);
  c.x = 16 / c.cache_element_size;
  // Room for three sequences' partial blocks; a mixed batch also takes one block per short run.
  c.num_blocks = T / spec.block_size + 8 + (spec.slots == SlotPattern::mixed ? T / 2 : 0);
  const std::int64_t activation_size = dtype_size(spec.dtype);

  // Activations.
  if (spec.rows == RowLayout::separate) {
    const std::int64_t count = padded_tokens * H * D;
    c.key_buffer = Buffer(Memory::host, static_cast<std::size_t>(count * activation_size));
    c.value_buffer = Buffer(Memory::host, static_cast<std::size_t>(count * activation_size));
    test::fill_random(c.key_buffer.data(), spec.dtype, count, spec.seed * 3 + 1);
    test::fill_random(c.value_buffer.data(), spec.dtype, count, spec.seed * 3 + 2);
    c.key = TensorView::contiguous(c.key_buffer.data(), spec.dtype, {padded_tokens, H, D});
    c.value = TensorView::contiguous(c.value_buffer.data(), spec.dtype, {padded_tokens, H, D});
  } else {
    // One row per token: [front | key H×D | value H×D | back], like K and V sliced out of a
    // fused QKV projection. Aligned: front and back keep 16-byte steps; unaligned: odd ones.
    const bool aligned = spec.rows == RowLayout::fused_aligned;
    const std::int64_t front = aligned ? 16 / activation_size : 3;
    const std::int64_t back = aligned ? 16 / activation_size : 2;
    const std::int64_t pitch = front + 2 * H * D + back;
    const std::int64_t count = padded_tokens * pitch;
    c.key_buffer = Buffer(Memory::host, static_cast<std::size_t>(count * activation_size));
    test::fill_random(c.key_buffer.data(), spec.dtype, count, spec.seed * 3 + 1);
    std::uint8_t* row0 = c.key_buffer.data();
    c.key = TensorView::strided(row0 + front * activation_size, spec.dtype, {padded_tokens, H, D},
                                {pitch, D, 1});
    c.value = TensorView::strided(row0 + (front + H * D) * activation_size, spec.dtype,
                                  {padded_tokens, H, D}, {pitch, D, 1});
    c.value_in_key_buffer = true;
  }

  // Caches, poisoned; optionally starting one element past a 16-byte boundary.
  const std::int64_t cache_elements = c.num_blocks * H * D * spec.block_size;
  const std::int64_t shift = spec.misaligned_caches ? c.cache_element_size : 0;
  c.key_cache_buffer =
      Buffer(Memory::host, static_cast<std::size_t>(cache_elements * c.cache_element_size + 16));
  c.value_cache_buffer =
      Buffer(Memory::host, static_cast<std::size_t>(cache_elements * c.cache_element_size + 16));
  test::poison(c.key_cache_buffer.data(), c.key_cache_buffer.size());
  test::poison(c.value_cache_buffer.data(), c.value_cache_buffer.size());
  c.key_cache = TensorView::contiguous(c.key_cache_buffer.data() + shift, cache_dtype,
                                       {c.num_blocks, H, D / c.x, spec.block_size, c.x});
  c.value_cache = TensorView::contiguous(c.value_cache_buffer.data() + shift, cache_dtype,
                                         {c.num_blocks, H, D, spec.block_size});

  // slot_mapping and the scales (k: small enough that some keys saturate e4m3; v: not a power
  // of two, so that x / scale really rounds).
  const std::vector<std::int64_t> slots = make_slots(spec, c.num_blocks, rng);
  c.slot_buffer =
      Buffer(Memory::host, std::max<std::size_t>(slots.size(), 1) * sizeof(std::int64_t));
  if (!slots.empty()) std::memcpy(c.slot_buffer.data(), slots.data(), slots.size() * 8);
  c.slot_mapping = TensorView::contiguous(c.slot_buffer.data(), DType::i64, {T});
  const float scales[2] = {0.0061f, 1.37f};
  c.scale_buffer = Buffer(Memory::host, sizeof scales);
  std::memcpy(c.scale_buffer.data(), scales, sizeof scales);
  c.k_scale = TensorView::contiguous(c.scale_buffer.data(), DType::f32, {1});
  c.v_scale = TensorView::contiguous(c.scale_buffer.data() + 4, DType::f32, {1});
  return c;
}

// Calls implementation `impl` on the views of `c` (host views for the CPU, device views for the
// GPU implementations).
void run(Impl impl, const TensorView& key, const TensorView& value, const TensorView& key_cache,
         const TensorView& value_cache, const TensorView& slot_mapping,
         const std::string& kv_cache_dtype, const TensorView& k_scale, const TensorView& v_scale) {
  pagedkv::run<ReshapeAndCache>(
      impl, {key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale});
}

void run(Impl impl, const Case& c) {
  run(impl, c.key, c.value, c.key_cache, c.value_cache, c.slot_mapping, c.spec.kv_cache_dtype,
      c.k_scale, c.v_scale);
}

// Where byte `index` of the key cache buffer is, for failure messages.
std::string where_in_key_cache(const Case& c, std::int64_t index) {
  const auto start = static_cast<const std::uint8_t*>(c.key_cache.data) - c.key_cache_buffer.data();
  if (index < start) return "before the key_cache view";
  std::int64_t e = (index - start) / c.cache_element_size;
  const std::int64_t lane = e % c.x;
  e /= c.x;
  const std::int64_t offset = e % c.spec.block_size;
  e /= c.spec.block_size;
  const std::int64_t chunk = e % (c.spec.head_size / c.x);
  e /= c.spec.head_size / c.x;
  std::ostringstream out;
  out << "key_cache[block " << e / c.spec.num_heads << ", head " << e % c.spec.num_heads
      << ", chunk " << chunk << ", offset " << offset << ", " << lane << "]";
  return out.str();
}

// Where byte `index` of the value cache buffer is, for failure messages.
std::string where_in_value_cache(const Case& c, std::int64_t index) {
  const auto start =
      static_cast<const std::uint8_t*>(c.value_cache.data) - c.value_cache_buffer.data();
  if (index < start) return "before the value_cache view";
  std::int64_t e = (index - start) / c.cache_element_size;
  const std::int64_t offset = e % c.spec.block_size;
  e /= c.spec.block_size;
  const std::int64_t d = e % c.spec.head_size;
  e /= c.spec.head_size;
  std::ostringstream out;
  out << "value_cache[block " << e / c.spec.num_heads << ", head " << e % c.spec.num_heads
      << ", d " << d << ", offset " << offset << "]";
  return out.str();
}

// ---------------------------------------------------------------------------------------------
// GPU runs.

// A device copy of a Case (its caches starting from given host bytes) and the views onto it.
struct DeviceCase {
  Buffer key, value, key_cache, value_cache, slots, scales;
  TensorView key_view, value_view, key_cache_view, value_cache_view, slot_view, k_scale_view,
      v_scale_view;
  std::string kv_cache_dtype;

  DeviceCase(const Case& c, const Buffer& key_cache_start, const Buffer& value_cache_start)
      : key(copy_to(Memory::device, c.key_buffer)),
        value(c.value_in_key_buffer ? Buffer() : copy_to(Memory::device, c.value_buffer)),
        key_cache(copy_to(Memory::device, key_cache_start)),
        value_cache(copy_to(Memory::device, value_cache_start)),
        slots(copy_to(Memory::device, c.slot_buffer)),
        scales(copy_to(Memory::device, c.scale_buffer)),
        kv_cache_dtype(c.spec.kv_cache_dtype) {
    const Device gpu = Device::cuda;
    key_view = test::rebase(c.key, c.key_buffer.data(), key.data(), gpu);
    value_view = c.value_in_key_buffer
                     ? test::rebase(c.value, c.key_buffer.data(), key.data(), gpu)
                     : test::rebase(c.value, c.value_buffer.data(), value.data(), gpu);
    key_cache_view = test::rebase(c.key_cache, c.key_cache_buffer.data(), key_cache.data(), gpu);
    value_cache_view =
        test::rebase(c.value_cache, c.value_cache_buffer.data(), value_cache.data(), gpu);
    slot_view = test::rebase(c.slot_mapping, c.slot_buffer.data(), slots.data(), gpu);
    k_scale_view = test::rebase(c.k_scale, c.scale_buffer.data(), scales.data(), gpu);
    v_scale_view = test::rebase(c.v_scale, c.scale_buffer.data(), scales.data(), gpu);
  }

  void run(Impl impl) const {
    ::run(impl, key_view, value_view, key_cache_view, value_cache_view, slot_view,
          kv_cache_dtype, k_scale_view, v_scale_view);
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  }

  static Buffer bytes_of(const Buffer& buffer) {
    Buffer host(Memory::host, buffer.size());
    buffer.download(host.data(), buffer.size());
    return host;
  }
};

// The CPU reference, the naive and the optimized kernel give byte-identical caches for `spec`.
void check_three_agree(const CaseSpec& spec) {
  INFO(describe(spec));
  Case c = make_case(spec);
  const Buffer key_cache_start = copy_to(Memory::host, c.key_cache_buffer);  // poisoned
  const Buffer value_cache_start = copy_to(Memory::host, c.value_cache_buffer);
  run(Impl::cpu, c);  // c's caches now hold the expected bytes
  // Sanity: the reference wrote something (every case has at least one real token).
  REQUIRE(test::first_difference(key_cache_start.data(), c.key_cache_buffer.data(),
                                 key_cache_start.size()) != -1);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    DeviceCase device(c, key_cache_start, value_cache_start);
    device.run(impl);
    const Buffer key_cache = DeviceCase::bytes_of(device.key_cache);
    const Buffer value_cache = DeviceCase::bytes_of(device.value_cache);
    const std::int64_t key_diff =
        test::first_difference(c.key_cache_buffer.data(), key_cache.data(), key_cache.size());
    const std::int64_t value_diff = test::first_difference(c.value_cache_buffer.data(),
                                                           value_cache.data(), value_cache.size());
    INFO("first key_cache difference: byte " << key_diff
         << (key_diff >= 0 ? " = " + where_in_key_cache(c, key_diff) : std::string()));
    INFO("first value_cache difference: byte " << value_diff
         << (value_diff >= 0 ? " = " + where_in_value_cache(c, value_diff) : std::string()));
    CHECK(key_diff == -1);
    CHECK(value_diff == -1);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation helpers.

// The call `c` must throw InvalidArgument whose message contains `needle`, and leave both caches
// byte for byte as they were.
void require_rejected(const Case& c, const std::string& needle, Impl impl = Impl::cpu) {
  const Buffer key_cache_before = copy_to(Memory::host, c.key_cache_buffer);
  const Buffer value_cache_before = copy_to(Memory::host, c.value_cache_buffer);
  CHECK_THROWS_AS(run(impl, c), InvalidArgument);
  CHECK_THROWS_WITH(run(impl, c), Contains(needle));
  CHECK(test::first_difference(key_cache_before.data(), c.key_cache_buffer.data(),
                               key_cache_before.size()) == -1);
  CHECK(test::first_difference(value_cache_before.data(), c.value_cache_buffer.data(),
                               value_cache_before.size()) == -1);
}

// A small valid call (2 heads × 16, block_size 4, 4 tokens) that each rule test breaks in one way.
Case small_case(DType dtype = DType::bf16, const std::string& kv_cache_dtype = "auto") {
  CaseSpec spec;
  spec.num_tokens = 4;
  spec.num_heads = 2;
  spec.head_size = 16;
  spec.block_size = 4;
  spec.dtype = dtype;
  spec.kv_cache_dtype = kv_cache_dtype;
  spec.seed = 7;
  return make_case(spec);
}

// The same view with other sizes and strides (data, dtype and device kept).
TensorView reshaped(const TensorView& view, std::initializer_list<std::int64_t> shape,
                    std::initializer_list<std::int64_t> strides) {
  return TensorView::strided(view.data, view.dtype, shape, strides, view.device);
}

std::uint16_t bf16_bits_of_exact(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  REQUIRE((bits & 0xFFFFu) == 0u);  // the test values are exact in bf16
  return static_cast<std::uint16_t>(bits >> 16);
}

}  // namespace

// =============================================================================================
// CPU: placement, fp8 bytes, untouched bytes.

TEST_CASE("reshape_and_cache CPU: hand-computed placement of key chunks and transposed values",
          "[reshape_and_cache]") {
  // f32, "auto": x = 4. 2 heads × 8 elements, block_size 4, 3 blocks; 3 tokens with slots
  // {5, -1, 11}: token 0 -> block 1 offset 1, token 1 is padding, token 2 -> block 2 offset 3.
  // key[t, h, d] = 100 t + 10 h + d; value[t, h, d] = -1000 - key[t, h, d].
  constexpr std::int64_t T = 3, H = 2, D = 8, kBlockSize = 4, kNumBlocks = 3, x = 4;
  std::vector<float> key(T * H * D), value(T * H * D);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t d = 0; d < D; ++d) {
        key[(t * H + h) * D + d] = static_cast<float>(100 * t + 10 * h + d);
        value[(t * H + h) * D + d] = -1000.0f - static_cast<float>(100 * t + 10 * h + d);
      }
  std::vector<float> key_cache(kNumBlocks * H * D * kBlockSize);  // [3, 2, 2, 4, 4]
  std::vector<float> value_cache(kNumBlocks * H * D * kBlockSize);  // [3, 2, 8, 4]
  test::poison(key_cache.data(), key_cache.size() * 4);
  test::poison(value_cache.data(), value_cache.size() * 4);
  const std::vector<float> poisoned = key_cache;  // both caches start with the same bytes
  std::vector<std::int64_t> slots = {5, -1, 11};
  float scale = 1.0f;

  pagedkv::run<ReshapeAndCache>(
      Impl::cpu,
      {TensorView::contiguous(key.data(), DType::f32, {T, H, D}),
       TensorView::contiguous(value.data(), DType::f32, {T, H, D}),
       TensorView::contiguous(key_cache.data(), DType::f32, {kNumBlocks, H, D / x, kBlockSize, x}),
       TensorView::contiguous(value_cache.data(), DType::f32, {kNumBlocks, H, D, kBlockSize}),
       TensorView::contiguous(slots.data(), DType::i64, {T}), "auto",
       TensorView::contiguous(&scale, DType::f32, {1}),
       TensorView::contiguous(&scale, DType::f32, {1})});

  // key_cache strides [64, 32, 16, 4, 1]; value_cache strides [64, 32, 4, 1].
  // token 0, head 1, d 6 -> key_cache[1, 1, 1, 1, 2] = 64 + 32 + 16 + 4 + 2 = 118
  CHECK(key_cache[118] == 16.0f);
  // token 0, head 0, d 3 -> key_cache[1, 0, 0, 1, 3] = 64 + 4 + 3 = 71
  CHECK(key_cache[71] == 3.0f);
  // token 0, head 0, d 4 starts the next chunk: key_cache[1, 0, 1, 1, 0] = 64 + 16 + 4 = 84
  CHECK(key_cache[84] == 4.0f);
  // token 2, head 1, d 5 -> key_cache[2, 1, 1, 3, 1] = 128 + 32 + 16 + 12 + 1 = 189
  CHECK(key_cache[189] == 215.0f);
  // token 0, head 1, d 6 -> value_cache[1, 1, 6, 1] = 64 + 32 + 24 + 1 = 121; d 7 is one row
  // (block_size elements) further: 125.
  CHECK(value_cache[121] == -1016.0f);
  CHECK(value_cache[125] == -1017.0f);
  // token 2, head 0, d 7 -> value_cache[2, 0, 7, 3] = 128 + 28 + 3 = 159
  CHECK(value_cache[159] == -1207.0f);

  // Untouched bytes: exactly 2 real tokens × 2 heads × 8 elements changed in each cache, and
  // every changed element is one of the 32 written above (everything else is still poison).
  int key_written = 0, value_written = 0;
  for (std::size_t i = 0; i < poisoned.size(); ++i) {
    key_written += std::memcmp(&key_cache[i], &poisoned[i], 4) != 0;
    value_written += std::memcmp(&value_cache[i], &poisoned[i], 4) != 0;
  }
  CHECK(key_written == 2 * H * D);
  CHECK(value_written == 2 * H * D);
  // Block 0 (no token) is entirely untouched.
  CHECK(std::memcmp(key_cache.data(), poisoned.data(), 64 * 4) == 0);
  CHECK(std::memcmp(value_cache.data(), poisoned.data(), 64 * 4) == 0);
}

TEST_CASE("reshape_and_cache CPU: fp8 bytes are fp8(x / scale), rounded and saturated",
          "[reshape_and_cache]") {
  // bf16 activations, one token, one head of 16 (x = 16 for a one-byte cache), block_size 2,
  // slot 3 -> block 1 offset 1; scale 2 for both key and value.
  const std::vector<float> inputs = {
      1.0f,    3.0f,     1000.0f, -1000.0f, 0.0f,    -0.0f,   199680.0f, -199680.0f,
      0.25f,   0.00390625f /* 2^-8 */,      2.125f,  2.375f,  1.0f,      1.0f, 1.0f, 1.0f};
  // x / 2 = 0.5, 1.5, 500 (saturates e4m3), -500, 0, -0, 99840 (saturates both), -99840,
  // 0.125, 2^-9 (smallest e4m3 subnormal), 1.0625 and 1.1875 (ties: to even), 0.5 ...
  const std::vector<std::uint8_t> e4m3 = {0x30, 0x3C, 0x7E, 0xFE, 0x00, 0x80, 0x7E, 0xFE,
                                          0x20, 0x01, 0x38, 0x3A, 0x30, 0x30, 0x30, 0x30};
  const std::vector<std::uint8_t> e5m2 = {0x38, 0x3E, 0x60, 0xE0, 0x00, 0x80, 0x7B, 0xFB,
                                          0x30, 0x18, 0x3C, 0x3D, 0x38, 0x38, 0x38, 0x38};
  const auto [kv_cache_dtype, expected] = GENERATE_COPY(
      std::make_pair(std::string("fp8_e4m3"), e4m3), std::make_pair(std::string("fp8"), e4m3),
      std::make_pair(std::string("fp8_e5m2"), e5m2));
  INFO("kv_cache_dtype " << kv_cache_dtype);

  std::vector<std::uint16_t> key(16), value(16);
  for (int d = 0; d < 16; ++d) key[d] = value[d] = bf16_bits_of_exact(inputs[d]);
  std::vector<std::uint8_t> key_cache(2 * 16 * 2), value_cache(2 * 16 * 2);  // [2,1,1,2,16], [2,1,16,2]
  test::poison(key_cache.data(), key_cache.size());
  test::poison(value_cache.data(), value_cache.size());
  const std::vector<std::uint8_t> poisoned = key_cache;
  std::int64_t slot = 3;
  float scale = 2.0f;
  pagedkv::run<ReshapeAndCache>(
      Impl::cpu, {TensorView::contiguous(key.data(), DType::bf16, {1, 1, 16}),
                  TensorView::contiguous(value.data(), DType::bf16, {1, 1, 16}),
                  TensorView::contiguous(key_cache.data(), DType::u8, {2, 1, 1, 2, 16}),
                  TensorView::contiguous(value_cache.data(), DType::u8, {2, 1, 16, 2}),
                  TensorView::contiguous(&slot, DType::i64, {1}), kv_cache_dtype,
                  TensorView::contiguous(&scale, DType::f32, {1}),
                  TensorView::contiguous(&scale, DType::f32, {1})});
  for (int d = 0; d < 16; ++d) {
    INFO("d = " << d << ", x = " << inputs[d]);
    CHECK(int(key_cache[32 + 16 + d]) == int(expected[d]));      // key_cache[1, 0, 0, 1, d]
    CHECK(int(value_cache[32 + 2 * d + 1]) == int(expected[d]));  // value_cache[1, 0, d, 1]
  }
  // Everything else is untouched: all of block 0 and the offset-0 column of block 1.
  for (int i = 0; i < 32; ++i) {
    CHECK(key_cache[i] == poisoned[i]);
    CHECK(value_cache[i] == poisoned[i]);
  }
  for (int d = 0; d < 16; ++d) {
    CHECK(key_cache[32 + d] == poisoned[32 + d]);
    CHECK(value_cache[32 + 2 * d] == poisoned[32 + 2 * d]);
  }
}

TEST_CASE("reshape_and_cache CPU: writes every head with 64 heads × 128 (upstream drops some)",
          "[reshape_and_cache]") {
  // bf16: 64 × 128 / 8 = 1024 (head, chunk) pairs per token; upstream's one 512-thread CTA per
  // token never writes heads 32..63. Every element of the last head must be written here.
  CaseSpec spec;
  spec.num_tokens = 2;
  spec.num_heads = 64;
  spec.head_size = 128;
  spec.block_size = 16;
  Case c = make_case(spec);
  const Buffer key_cache_start = copy_to(Memory::host, c.key_cache_buffer);
  const Buffer value_cache_start = copy_to(Memory::host, c.value_cache_buffer);
  run(Impl::cpu, c);
  const auto* slots = reinterpret_cast<const std::int64_t*>(c.slot_buffer.data());
  const std::int64_t block = slots[0] / 16, offset = slots[0] % 16;
  const std::int64_t head = 63;
  const auto* key = static_cast<const std::uint16_t*>(c.key.data);  // token 0
  const auto* key_cache = static_cast<const std::uint16_t*>(c.key_cache.data);
  const auto* value = static_cast<const std::uint16_t*>(c.value.data);
  const auto* value_cache = static_cast<const std::uint16_t*>(c.value_cache.data);
  int mismatches = 0;
  for (std::int64_t d = 0; d < 128; ++d) {
    mismatches += key_cache[(((block * 64 + head) * 16 + d / 8) * 16 + offset) * 8 + d % 8] !=
                  key[head * 128 + d];
    mismatches += value_cache[((block * 64 + head) * 128 + d) * 16 + offset] != value[head * 128 + d];
  }
  CHECK(mismatches == 0);
}

// =============================================================================================
// CPU: one test per validation rule. Each breaks the small valid call in one way.

TEST_CASE("reshape_and_cache: the small valid call used by the rule tests passes",
          "[reshape_and_cache]") {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (const char* kind : {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}) {
      Case c = small_case(dtype, kind);
      CHECK_NOTHROW(run(Impl::cpu, c));
    }
  }
  Case c = small_case(DType::bf16, "bfloat16");
  CHECK_NOTHROW(run(Impl::cpu, c));
  Case f = small_case(DType::f16, "float16");
  CHECK_NOTHROW(run(Impl::cpu, f));
}

TEST_CASE("reshape_and_cache rejects a slot beyond num_blocks × block_size",
          "[reshape_and_cache]") {
  Case c = small_case();
  // The bad slot comes last: the valid tokens before it must not be written either.
  auto* slots = reinterpret_cast<std::int64_t*>(c.slot_buffer.data());
  slots[3] = c.num_blocks * c.spec.block_size;
  require_rejected(c, "slot_mapping[3] = " + std::to_string(slots[3]));
  require_rejected(c, "below num_blocks × block_size");
}

TEST_CASE("reshape_and_cache rejects a cache with another head count than key",
          "[reshape_and_cache]") {
  Case c = small_case();  // bf16: x = 8, caches [nb, 2, 2, 4, 8] and [nb, 2, 16, 4]
  const std::int64_t nb = c.num_blocks;
  c.key_cache = TensorView::contiguous(c.key_cache.data, c.key_cache.dtype, {nb, 1, 2, 4, 8});
  require_rejected(c, "key_cache.size(1): expected 2");
  Case v = small_case();
  v.value_cache = TensorView::contiguous(v.value_cache.data, v.value_cache.dtype, {nb, 1, 16, 4});
  require_rejected(v, "value_cache.size(1): expected 2");
}

TEST_CASE("reshape_and_cache rejects a cache with another head size than key",
          "[reshape_and_cache]") {
  Case c = small_case();
  const std::int64_t nb = c.num_blocks;
  c.key_cache = TensorView::contiguous(c.key_cache.data, c.key_cache.dtype, {nb, 2, 1, 4, 8});
  require_rejected(c, "key_cache.size(2): expected 2");
  Case v = small_case();
  v.value_cache = TensorView::contiguous(v.value_cache.data, v.value_cache.dtype, {nb, 2, 8, 4});
  require_rejected(v, "value_cache.size(2): expected 16");
}

TEST_CASE("reshape_and_cache rejects value with another head count or size than key",
          "[reshape_and_cache]") {
  Case c = small_case();
  c.value = reshaped(c.value, {6, 1, 16}, {32, 16, 1});
  require_rejected(c, "value.size(1): expected 2");
  Case d = small_case();
  d.value = reshaped(d.value, {6, 2, 8}, {32, 8, 1});
  require_rejected(d, "value.size(2): expected 16");
}

TEST_CASE("reshape_and_cache rejects a value cache with another block size or block count",
          "[reshape_and_cache]") {
  Case c = small_case();
  const std::int64_t nb = c.num_blocks;
  c.value_cache = TensorView::contiguous(c.value_cache.data, c.value_cache.dtype, {nb, 2, 16, 2});
  require_rejected(c, "value_cache.size(3): expected 4");
  Case d = small_case();
  d.value_cache = TensorView::contiguous(d.value_cache.data, d.value_cache.dtype, {nb - 1, 2, 16, 4});
  require_rejected(d, "value_cache.size(0): expected " + std::to_string(nb));
}

TEST_CASE("reshape_and_cache rejects a head_size that is not a multiple of x",
          "[reshape_and_cache]") {
  // Upstream would leave the last head_size % x elements of every head unwritten.
  Case c = small_case();  // buffers hold 6 rows of 2 × 16; a view of 2 × 12 fits inside
  c.key = reshaped(c.key, {6, 2, 12}, {24, 12, 1});
  c.value = reshaped(c.value, {6, 2, 12}, {24, 12, 1});
  require_rejected(c, "key.size(2) (head_size): expected a multiple of x = 8");
}

TEST_CASE("reshape_and_cache rejects x that is not 16 bytes / cache element size",
          "[reshape_and_cache]") {
  Case c = small_case();  // bf16: x must be 8
  c.key_cache = TensorView::contiguous(c.key_cache.data, c.key_cache.dtype,
                                       {c.num_blocks, 2, 4, 4, 4});
  require_rejected(c, "key_cache.size(4) (x): expected 8");
  Case f = small_case(DType::bf16, "fp8");  // one-byte cache: x must be 16
  f.key_cache = TensorView::contiguous(f.key_cache.data, f.key_cache.dtype,
                                       {f.num_blocks, 2, 2, 4, 8});
  require_rejected(f, "key_cache.size(4) (x): expected 16");
}

TEST_CASE("reshape_and_cache rejects an unsupported activation dtype", "[reshape_and_cache]") {
  Case c = small_case();
  c.key.dtype = DType::i32;
  c.value.dtype = DType::i32;
  require_rejected(c, "key: expected dtype in {f32, f16, bf16}, got i32");
  Case u = small_case();
  u.key.dtype = DType::u8;
  u.value.dtype = DType::u8;
  require_rejected(u, "key: expected dtype in {f32, f16, bf16}, got u8");
}

TEST_CASE("reshape_and_cache rejects value of another dtype than key", "[reshape_and_cache]") {
  Case c = small_case();
  c.value.dtype = DType::f16;
  require_rejected(c, "value: expected dtype bf16, got f16");
}

TEST_CASE("reshape_and_cache rejects an unsupported kv_cache_dtype string",
          "[reshape_and_cache]") {
  for (const char* kind : {"int8", "fp8_ds_mla", "FP8", ""}) {
    Case c = small_case(DType::bf16, "fp8");
    c.spec.kv_cache_dtype = kind;
    INFO("kv_cache_dtype \"" << kind << "\"");
    require_rejected(c, "kv_cache_dtype: expected one of");
  }
}

TEST_CASE("reshape_and_cache rejects \"bfloat16\" / \"float16\" with other activations",
          "[reshape_and_cache]") {
  Case c = small_case(DType::f16, "auto");
  c.spec.kv_cache_dtype = "bfloat16";
  require_rejected(c, "kv_cache_dtype: \"bfloat16\" needs key/value of dtype bf16, got f16");
  Case b = small_case(DType::bf16, "auto");
  b.spec.kv_cache_dtype = "float16";
  require_rejected(b, "kv_cache_dtype: \"float16\" needs key/value of dtype f16, got bf16");
}

TEST_CASE("reshape_and_cache rejects an auto cache of another dtype than key",
          "[reshape_and_cache]") {
  // Upstream reinterprets the cache as the activations' type without looking.
  Case c = small_case();
  c.key_cache.dtype = DType::f16;
  c.value_cache.dtype = DType::f16;
  require_rejected(c, "key_cache: kv_cache_dtype \"auto\" copies elements unchanged, expected "
                      "dtype bf16 (the dtype of key), got f16");
}

TEST_CASE("reshape_and_cache rejects an fp8 cache that is not one byte wide",
          "[reshape_and_cache]") {
  Case c = small_case(DType::bf16, "auto");  // a bf16 cache (x = 8) passed as fp8
  c.spec.kv_cache_dtype = "fp8_e4m3";
  require_rejected(c, "key_cache: kv_cache_dtype \"fp8_e4m3\" stores one byte per element, "
                      "expected dtype u8, f8_e4m3 or f8_e5m2, got bf16");
  // float8 tensors are byte storage too and are accepted.
  Case f = small_case(DType::bf16, "fp8_e4m3");
  f.key_cache.dtype = DType::f8_e4m3;
  f.value_cache.dtype = DType::f8_e4m3;
  CHECK_NOTHROW(run(Impl::cpu, f));
}

TEST_CASE("reshape_and_cache rejects a value cache of another dtype than the key cache",
          "[reshape_and_cache]") {
  Case c = small_case(DType::bf16, "fp8");
  c.value_cache.dtype = DType::f8_e5m2;
  require_rejected(c, "value_cache: expected dtype u8, got f8_e5m2");
}

TEST_CASE("reshape_and_cache rejects caches of the wrong rank", "[reshape_and_cache]") {
  Case c = small_case();
  const std::int64_t nb = c.num_blocks;
  c.key_cache = TensorView::contiguous(c.key_cache.data, c.key_cache.dtype, {nb, 2, 16, 4});
  require_rejected(c, "key_cache: expected 5 dimensions, got 4");
  Case v = small_case();
  v.value_cache = TensorView::contiguous(v.value_cache.data, v.value_cache.dtype, {nb, 2, 2, 4, 8});
  require_rejected(v, "value_cache: expected 4 dimensions, got 5");
}

TEST_CASE("reshape_and_cache rejects caches that are not contiguous", "[reshape_and_cache]") {
  Case c = small_case();
  const std::int64_t nb = c.num_blocks;
  // [nb, 2, 2, 4, 8] with the two heads swapped in memory: same bytes, other layout.
  c.key_cache = reshaped(c.key_cache, {nb, 2, 2, 4, 8}, {128, 32, 64, 8, 1});
  require_rejected(c, "key_cache: expected a contiguous");
  Case v = small_case();
  v.value_cache = reshaped(v.value_cache, {nb, 2, 16, 4}, {128, 4, 8, 1});
  require_rejected(v, "value_cache: expected a contiguous");
}

TEST_CASE("reshape_and_cache rejects activations of the wrong rank or with negative strides",
          "[reshape_and_cache]") {
  Case c = small_case();
  c.key = reshaped(c.key, {6, 32}, {32, 1});
  require_rejected(c, "key: expected 3 dimensions, got 2");
  Case v = small_case();
  v.value = reshaped(v.value, {1, 6, 2, 16}, {192, 32, 16, 1});
  require_rejected(v, "value: expected 3 dimensions, got 4");
  Case n = small_case();
  n.key = reshaped(n.key, {6, 2, 16}, {-32, 16, 1});
  require_rejected(n, "key: negative size or stride");
}

TEST_CASE("reshape_and_cache rejects heads or elements that are not packed in a row",
          "[reshape_and_cache]") {
  // Any row pitch is fine, but inside a row the kernels add head * head_size + d.
  Case c = small_case();
  c.key = reshaped(c.key, {3, 2, 16}, {64, 32, 1});  // heads 32 apart
  require_rejected(c, "key: dimensions 1.. must be packed");
  Case v = small_case();
  v.value = reshaped(v.value, {6, 2, 8}, {32, 16, 2});  // every other element
  v.key = reshaped(v.key, {6, 2, 8}, {32, 8, 1});
  require_rejected(v, "value: dimensions 1.. must be packed");
}

TEST_CASE("reshape_and_cache rejects an int32 slot_mapping", "[reshape_and_cache]") {
  // Upstream reads the slots through an int64 pointer whatever their dtype.
  Case c = small_case();
  c.slot_mapping.dtype = DType::i32;
  require_rejected(c, "slot_mapping: expected dtype i64, got i32");
}

TEST_CASE("reshape_and_cache rejects a slot_mapping that is not 1-D and contiguous",
          "[reshape_and_cache]") {
  Case c = small_case();
  c.slot_mapping = reshaped(c.slot_mapping, {2, 2}, {2, 1});
  require_rejected(c, "slot_mapping: expected 1 dimensions, got 2");
  Case s = small_case();
  s.slot_mapping = reshaped(s.slot_mapping, {2}, {2});
  require_rejected(s, "slot_mapping: expected a contiguous");
}

TEST_CASE("reshape_and_cache rejects more slots than key or value rows", "[reshape_and_cache]") {
  Case c = small_case();  // 4 slots, 6 rows
  c.key = reshaped(c.key, {3, 2, 16}, {32, 16, 1});
  require_rejected(c, "slot_mapping.size(0) (num_tokens): expected at most 3 (key.size(0)), got 4");
  Case v = small_case();
  v.value = reshaped(v.value, {2, 2, 16}, {32, 16, 1});
  require_rejected(v, "expected at most 2 (value.size(0)), got 4");
}

TEST_CASE("reshape_and_cache rejects an fp8 scale that is not one f32", "[reshape_and_cache]") {
  Case c = small_case(DType::bf16, "fp8");
  c.k_scale.dtype = DType::f16;
  require_rejected(c, "k_scale: expected dtype f32, got f16");
  Case n = small_case(DType::bf16, "fp8");
  n.v_scale = TensorView::contiguous(n.scale_buffer.data(), DType::f32, {2});
  require_rejected(n, "v_scale: expected 1 element (a per-tensor scale), got 2");
  // "auto" never reads the scales: anything goes.
  Case a = small_case();
  a.k_scale = TensorView::contiguous(nullptr, DType::i32, {0});
  a.v_scale = TensorView::contiguous(nullptr, DType::i32, {0});
  CHECK_NOTHROW(run(Impl::cpu, a));
}

TEST_CASE("reshape_and_cache rejects null data pointers", "[reshape_and_cache]") {
  Case c = small_case();
  c.value.data = nullptr;
  require_rejected(c, "value: data pointer is null but the tensor has 192 elements");
  Case k = small_case();
  k.key_cache.data = nullptr;
  require_rejected(k, "key_cache: data pointer is null");
  Case s = small_case(DType::bf16, "fp8");
  s.k_scale.data = nullptr;
  require_rejected(s, "k_scale: data pointer is null");
}

TEST_CASE("reshape_and_cache rejects a tensor on the wrong device", "[reshape_and_cache]") {
  // CPU reference with a tensor marked as GPU memory.
  Case c = small_case();
  c.key.device = Device::cuda;
  require_rejected(c, "key: expected a tensor on cpu, got one on cuda");
  Case s = small_case(DType::bf16, "fp8");
  s.v_scale.device = Device::cuda;
  require_rejected(s, "v_scale: expected a tensor on cpu, got one on cuda");
  // GPU implementations with host tensors: rejected before any CUDA call (works without a GPU).
  Case g = small_case();
  require_rejected(g, "key: expected a tensor on cuda, got one on cpu", Impl::naive);
  require_rejected(g, "key: expected a tensor on cuda, got one on cpu", Impl::optimized);
}

TEST_CASE("reshape_and_cache with zero tokens is a no-op", "[reshape_and_cache]") {
  // Upstream launches an empty grid (a launch error); here nothing happens.
  Case c = small_case(DType::bf16, "fp8");
  c.slot_mapping = TensorView::contiguous(c.slot_buffer.data(), DType::i64, {0});
  const Buffer key_cache_before = copy_to(Memory::host, c.key_cache_buffer);
  const Buffer value_cache_before = copy_to(Memory::host, c.value_cache_buffer);
  CHECK_NOTHROW(run(Impl::cpu, c));
  CHECK(test::first_difference(key_cache_before.data(), c.key_cache_buffer.data(),
                               key_cache_before.size()) == -1);
  CHECK(test::first_difference(value_cache_before.data(), c.value_cache_buffer.data(),
                               value_cache_before.size()) == -1);
  // Even an empty slot_mapping with no data.
  c.slot_mapping = TensorView::contiguous(nullptr, DType::i64, {0});
  CHECK_NOTHROW(run(Impl::cpu, c));
}

// =============================================================================================
// GPU: CPU reference vs naive vs optimized, byte-identical whole caches.

TEST_CASE("reshape_and_cache GPU: head sizes × heads × block sizes × tokens × slot patterns",
          "[reshape_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  static const std::int64_t kHeadSizes[] = {64, 80, 96, 128, 256};
  static const std::int64_t kHeads[] = {1, 8, 64};
  static const std::int64_t kBlockSizes[] = {1, 8, 16, 32};
  static const std::int64_t kTokens[] = {1, 7, 300};
  static const DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};
  static const char* const kKinds[] = {"auto", "fp8_e4m3", "fp8_e5m2"};
  static const RowLayout kRows[] = {RowLayout::separate, RowLayout::fused_aligned,
                                    RowLayout::fused_unaligned};
  const int head_size_index = GENERATE(range(0, 5));
  const int heads_index = GENERATE(range(0, 3));
  const int block_size_index = GENERATE(range(0, 4));
  const int tokens_index = GENERATE(range(0, 3));
  const int slots_index = GENERATE(0, 1);
  // The 9 (dtype, kind) pairs and the 3 row layouts rotate over the geometry grid, so that each
  // appears ~40 (~120) times without multiplying the grid by 27.
  const int n = (((head_size_index * 3 + heads_index) * 4 + block_size_index) * 3 + tokens_index) * 2 +
                slots_index;
  CaseSpec spec;
  spec.head_size = kHeadSizes[head_size_index];
  spec.num_heads = kHeads[heads_index];
  spec.block_size = kBlockSizes[block_size_index];
  spec.num_tokens = kTokens[tokens_index];
  spec.slots = slots_index == 0 ? SlotPattern::contiguous : SlotPattern::random;
  spec.dtype = kDtypes[(n % 9) / 3];
  spec.kv_cache_dtype = kKinds[n % 3];
  spec.rows = kRows[(n / 9) % 3];
  spec.seed = 1000 + static_cast<std::uint64_t>(n);
  check_three_agree(spec);
}

TEST_CASE("reshape_and_cache GPU: every dtype × kv_cache_dtype × slot pattern × row layout",
          "[reshape_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::string kind = GENERATE(as<std::string>(), "auto", "fp8_e4m3", "fp8_e5m2");
  const SlotPattern slots = GENERATE(SlotPattern::contiguous, SlotPattern::random);
  const RowLayout rows =
      GENERATE(RowLayout::separate, RowLayout::fused_aligned, RowLayout::fused_unaligned);
  // W1's shape (8 kv heads × 128, block 16), and 64 heads × 128: 1024 (head, chunk) pairs per
  // token for 16-bit caches, where upstream drops everything past the first 512.
  const std::int64_t num_heads = GENERATE(8, 64);
  CaseSpec spec;
  spec.num_tokens = 300;
  spec.num_heads = num_heads;
  spec.head_size = 128;
  spec.block_size = 16;
  spec.dtype = dtype;
  spec.kv_cache_dtype = kind;
  spec.slots = slots;
  spec.rows = rows;
  spec.seed = 77;
  check_three_agree(spec);
}

TEST_CASE("reshape_and_cache GPU: \"bfloat16\", \"float16\" and \"fp8\" behave as their twins",
          "[reshape_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const auto [dtype, kind] = GENERATE(std::make_pair(DType::bf16, std::string("bfloat16")),
                                      std::make_pair(DType::f16, std::string("float16")),
                                      std::make_pair(DType::f32, std::string("fp8")));
  CaseSpec spec;
  spec.num_tokens = 77;
  spec.num_heads = 4;
  spec.head_size = 96;
  spec.block_size = 16;
  spec.dtype = dtype;
  spec.kv_cache_dtype = kind;
  spec.seed = 5;
  check_three_agree(spec);
}

TEST_CASE("reshape_and_cache GPU: misaligned caches and activations use element accesses",
          "[reshape_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  const std::string kind = GENERATE(as<std::string>(), "auto", "fp8_e4m3");
  const SlotPattern slots = GENERATE(SlotPattern::contiguous, SlotPattern::random);
  const RowLayout rows = GENERATE(RowLayout::fused_aligned, RowLayout::fused_unaligned);
  CaseSpec spec;
  spec.num_tokens = 100;
  spec.num_heads = 3;
  spec.head_size = 80;
  spec.block_size = 16;
  spec.dtype = dtype;
  spec.kv_cache_dtype = kind;
  spec.slots = slots;
  spec.rows = rows;
  spec.misaligned_caches = true;  // the byte before each cache view must stay poisoned too
  spec.seed = 9;
  check_three_agree(spec);
}

// The optimized kernel picks its store order per 32-token tile (pieces for a prefill, token by
// token for scattered slots): one launch with both kinds of tiles, heads split over several
// CTAs (576 elements: 72, 36 or 144 key chunks per head) and heads that fit one CTA.
TEST_CASE("reshape_and_cache GPU: a decode batch of short runs and a prefill in one launch",
          "[reshape_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::string kind = GENERATE(as<std::string>(), "auto", "fp8_e4m3");
  const std::int64_t head_size = GENERATE(128, 576);
  const std::int64_t block_size = GENERATE(8, 16, 32);
  CaseSpec spec;
  spec.num_tokens = 300;
  spec.num_heads = 4;
  spec.head_size = head_size;
  spec.block_size = block_size;
  spec.dtype = dtype;
  spec.kv_cache_dtype = kind;
  spec.slots = SlotPattern::mixed;
  spec.rows = RowLayout::fused_aligned;
  spec.seed = 31;
  check_three_agree(spec);
}

TEST_CASE("reshape_and_cache GPU: zero tokens is a no-op and a bad slot is rejected unwritten",
          "[reshape_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const Impl impl = GENERATE(Impl::naive, Impl::optimized);
  INFO("implementation: " << impl_name(impl));
  CaseSpec spec;
  spec.num_tokens = 40;
  spec.num_heads = 2;
  spec.head_size = 64;
  Case c = make_case(spec);
  const Buffer key_cache_start = copy_to(Memory::host, c.key_cache_buffer);
  const Buffer value_cache_start = copy_to(Memory::host, c.value_cache_buffer);

  // Zero tokens: nothing launched, nothing written.
  Case empty = make_case(spec);
  empty.slot_mapping = TensorView::contiguous(empty.slot_buffer.data(), DType::i64, {0});
  DeviceCase zero(empty, key_cache_start, value_cache_start);
  CHECK_NOTHROW(zero.run(impl));
  CHECK(test::first_difference(key_cache_start.data(), DeviceCase::bytes_of(zero.key_cache).data(),
                               key_cache_start.size()) == -1);
  CHECK(test::first_difference(value_cache_start.data(),
                               DeviceCase::bytes_of(zero.value_cache).data(),
                               value_cache_start.size()) == -1);

  // One slot past the end (found on the device by a reduction): rejected, nothing written.
  auto* slots = reinterpret_cast<std::int64_t*>(c.slot_buffer.data());
  slots[20] = c.num_blocks * c.spec.block_size;
  DeviceCase bad(c, key_cache_start, value_cache_start);
  CHECK_THROWS_AS(bad.run(impl), InvalidArgument);
  CHECK_THROWS_WITH(bad.run(impl), Contains("slot_mapping[20]"));
  CHECK(test::first_difference(key_cache_start.data(), DeviceCase::bytes_of(bad.key_cache).data(),
                               key_cache_start.size()) == -1);
  CHECK(test::first_difference(value_cache_start.data(),
                               DeviceCase::bytes_of(bad.value_cache).data(),
                               value_cache_start.size()) == -1);
}
