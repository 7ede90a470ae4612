// Writes two tokens into a tiny NHD cache with the installed CPU reference and checks them.
#include <pagedkv/ops/reshape_and_cache_flash.h>

#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  using namespace pagedkv;
  const std::int64_t num_heads = 1, head_size = 4, block_size = 2, num_blocks = 2;
  std::vector<float> key = {1, 2, 3, 4, 5, 6, 7, 8};            // [2 tokens, 1 head, 4]
  std::vector<float> value = {-1, -2, -3, -4, -5, -6, -7, -8};  // [2, 1, 4]
  std::vector<float> key_cache(num_blocks * block_size * num_heads * head_size, 0.5f);
  std::vector<float> value_cache(key_cache.size(), 0.5f);
  std::vector<std::int64_t> slot_mapping = {3, 0};              // token 0 -> block 1 offset 1
  float scale = 1.0f;
  auto view = [](std::vector<float>& v, std::initializer_list<std::int64_t> shape) {
    return TensorView::contiguous(v.data(), DType::f32, shape);
  };
  pagedkv::run<ReshapeAndCacheFlash>(
      Impl::cpu, {view(key, {2, 1, 4}), view(value, {2, 1, 4}), view(key_cache, {2, 2, 1, 4}),
                  view(value_cache, {2, 2, 1, 4}),
                  TensorView::contiguous(slot_mapping.data(), DType::i64, {2}), "auto",
                  TensorView::contiguous(&scale, DType::f32, {1}),
                  TensorView::contiguous(&scale, DType::f32, {1})});
  const bool ok = key_cache[12] == 1 && key_cache[0] == 5 && value_cache[15] == -4 &&
                  key_cache[4] == 0.5f;
  std::printf("consumer: %s\n", ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
