// Owning byte buffers. Pageable host memory needs no CUDA at all (the CPU-only comparison run
// allocates only this kind): aligned operator new, or, from 64 MiB up, an anonymous mapping,
// whose pages the kernel hands out zeroed on first touch. A paged-attention pool is 4 x the
// blocks its batch reads and the rest is never touched; zeroing it eagerly was 60 % of a W8
// compare point's host time (perf). Pinned and device memory come from the CUDA runtime.
#include "pagedkv/buffers.h"

#include <cstring>
#include <sys/mman.h>
#include <new>
#include <utility>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {
constexpr std::align_val_t kHostAlignment{256};
// Smaller buffers (every test's) stay on operator new, where AddressSanitizer guards their ends.
constexpr std::size_t kMappedHostBytes = std::size_t{64} << 20;

cudaMemcpyKind copy_kind_between(Memory to, Memory from) {
  const bool to_device = to == Memory::device;
  const bool from_device = from == Memory::device;
  if (to_device && from_device) return cudaMemcpyDeviceToDevice;
  if (to_device) return cudaMemcpyHostToDevice;
  if (from_device) return cudaMemcpyDeviceToHost;
  return cudaMemcpyHostToHost;
}
}  // namespace

Buffer::Buffer(Memory memory, std::size_t bytes) : size_(bytes), memory_(memory) {
  if (bytes == 0) return;
  switch (memory) {
    case Memory::host:
      // Fresh host bytes are zero: tests rely on it.
      if (bytes >= kMappedHostBytes) {
        void* mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mapped == MAP_FAILED) throw std::bad_alloc();
        data_ = static_cast<std::uint8_t*>(mapped);
      } else {
        data_ = static_cast<std::uint8_t*>(::operator new(bytes, kHostAlignment));
        std::memset(data_, 0, bytes);
      }
      break;
    case Memory::pinned:
      PAGEDKV_CUDA_CHECK(
          cudaHostAlloc(reinterpret_cast<void**>(&data_), bytes, cudaHostAllocDefault));
      break;
    case Memory::device:
      PAGEDKV_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes));
      break;
  }
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      memory_(other.memory_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    memory_ = other.memory_;
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() noexcept {
  if (data_ == nullptr) return;
  switch (memory_) {
    case Memory::host:
      if (size_ >= kMappedHostBytes) {
        munmap(data_, size_);
      } else {
        ::operator delete(data_, kHostAlignment);
      }
      break;
    case Memory::pinned: cudaFreeHost(data_); break;
    case Memory::device: cudaFree(data_); break;
  }
  data_ = nullptr;
  size_ = 0;
}

void Buffer::fill(std::uint8_t value) {
  if (size_ == 0) return;
  if (memory_ == Memory::device) {
    PAGEDKV_CUDA_CHECK(cudaMemset(data_, value, size_));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  } else {
    std::memset(data_, value, size_);
  }
}

void Buffer::copy_from(const Buffer& source) {
  PAGEDKV_CHECK(source.size() >= size_, "Buffer::copy_from: source has ", source.size(),
                " bytes, expected at least ", size_);
  if (size_ == 0) return;
  if (memory_ != Memory::device && source.memory() != Memory::device) {
    std::memcpy(data_, source.data(), size_);
    return;
  }
  PAGEDKV_CUDA_CHECK(
      cudaMemcpy(data_, source.data(), size_, copy_kind_between(memory_, source.memory())));
}

void Buffer::upload(const void* host, std::size_t bytes) {
  if (bytes == 0) return;
  if (memory_ != Memory::device) {
    std::memcpy(data_, host, bytes);
    return;
  }
  PAGEDKV_CUDA_CHECK(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice));
}

void Buffer::download(void* host, std::size_t bytes) const {
  PAGEDKV_CHECK(bytes <= size_, "Buffer::download: ", bytes, " bytes asked, the buffer has ",
                size_);
  if (bytes == 0) return;
  if (memory_ != Memory::device) {
    std::memcpy(host, data_, bytes);
    return;
  }
  PAGEDKV_CUDA_CHECK(cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost));
}

Buffer copy_to(Memory memory, const Buffer& src) {
  Buffer copy(memory, src.size());
  copy.copy_from(src);
  return copy;
}

}  // namespace pagedkv
