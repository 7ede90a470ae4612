/// \file
/// \brief Owning byte buffers for the tests, the comparison tool and the op registry: pageable
/// host memory, pinned host memory and device memory, each freed when it goes out of scope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace pagedkv {

/// \brief Where a Buffer's bytes live.
enum class Memory {
  host,    ///< pageable host memory (operator new), 256-byte aligned, zeroed when allocated
  pinned,  ///< page-locked host memory (cudaHostAlloc): fast, asynchronous, graph-capturable copies
  device,  ///< GPU memory (cudaMalloc)
};

/// \brief An owning, move-only block of bytes in host, pinned or device memory.
class Buffer {
 public:
  /// \brief An empty buffer.
  Buffer() = default;
  /// \brief Allocates `bytes` bytes (contents undefined).
  /// \param memory where the bytes live.
  /// \param bytes how many.
  Buffer(Memory memory, std::size_t bytes);
  Buffer(const Buffer&) = delete;             ///< not copyable: one owner per allocation
  Buffer& operator=(const Buffer&) = delete;  ///< not copyable
  /// \brief Takes over `other`'s bytes.
  /// \param other the buffer left empty.
  Buffer(Buffer&& other) noexcept;
  /// \brief Frees this buffer's bytes and takes over `other`'s.
  /// \param other the buffer left empty.
  /// \return this buffer.
  Buffer& operator=(Buffer&& other) noexcept;
  /// \brief Frees the bytes.
  ~Buffer();

  /// \brief First byte (nullptr when empty).
  /// \return the pointer.
  std::uint8_t* data() const { return data_; }
  /// \brief Size in bytes.
  /// \return the size.
  std::size_t size() const { return size_; }
  /// \brief Where the bytes live.
  /// \return the memory kind.
  Memory memory() const { return memory_; }
  /// \brief Sets every byte to `value` (cudaMemset for device memory, synchronous).
  /// \param value the byte.
  void fill(std::uint8_t value);
  /// \brief Copies `size()` bytes from `source` (host or device, any kind) into this buffer,
  /// synchronously.
  /// \param source the buffer to copy from; must be at least as large.
  void copy_from(const Buffer& source);
  /// \brief Copies `bytes` bytes from the host pointer `host` to the start of this buffer,
  /// synchronously.
  /// \param host source bytes in host memory.
  /// \param bytes how many.
  void upload(const void* host, std::size_t bytes);
  /// \brief Copies the first `bytes` bytes of this buffer to the host pointer `host`,
  /// synchronously.
  /// \param host destination in host memory.
  /// \param bytes how many (at most size()).
  void download(void* host, std::size_t bytes) const;

 private:
  void release() noexcept;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  Memory memory_ = Memory::host;
};

/// \brief A copy of a buffer in another kind of memory (or the same), synchronously.
/// \param memory where the copy lives.
/// \param src the buffer to copy.
/// \return the copy, of src.size() bytes.
Buffer copy_to(Memory memory, const Buffer& src);

}  // namespace pagedkv
