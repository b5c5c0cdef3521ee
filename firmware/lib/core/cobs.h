// COBS (Consistent Overhead Byte Stuffing): an encoder and a byte-at-a-time stream decoder.
// A frame on the wire is COBS(raw) followed by one 0x00 delimiter.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace core {

// Encodes `len` bytes from `src` into `dst` (no delimiter appended). Returns the encoded
// length, or 0 when `dst_cap` is too small. A block of 254 non-zero bytes that ends the data
// gets no trailing empty block, so the overhead is one byte per started 254 bytes.
// In-place use is allowed when src == dst + CobsMaxOverhead(len) (or further right): the
// writer never overtakes the reader (see frame.cpp).
size_t CobsEncode(const uint8_t* src, size_t len, uint8_t* dst, size_t dst_cap);

// Streaming decoder: feed every received byte; undoes COBS on the fly into a caller-owned
// buffer, so the encoded frame is never stored.
class CobsDecoder {
 public:
  enum Event : uint8_t {
    kNone,       // byte consumed, no frame ended
    kFrame,      // a complete frame: data(), size()
    kBadCobs,    // the delimiter arrived inside a block
    kTooLarge,   // the frame decoded to more than `capacity` bytes (reported at the delimiter)
  };

  CobsDecoder(uint8_t* buffer, size_t capacity) : buf_(buffer), cap_(capacity) {}

  // Frames may not exceed `capacity` bytes (<= the buffer size given at construction).
  void set_capacity(size_t capacity) { cap_ = capacity; }

  Event Feed(uint8_t byte);
  // Feeds bytes from `data` until one of them ends a frame (or all `len` are used) and
  // returns that event, with `*consumed` set to the bytes used. Same result as calling
  // Feed() byte by byte, but copies the data bytes of a block with memcpy: a 784-byte
  // frame costs a few block copies instead of 790 calls.
  Event FeedSome(const uint8_t* data, size_t len, size_t* consumed);
  void Reset();

  const uint8_t* data() const { return buf_; }
  size_t size() const { return len_; }

 private:
  void Append(uint8_t byte);

  uint8_t* buf_;
  size_t cap_;
  size_t len_ = 0;
  uint8_t remaining_ = 0;      // data bytes left in the current block
  bool zero_pending_ = false;  // the block just closed stands for a zero, if more follows
  bool started_ = false;       // a byte other than the delimiter arrived
  bool overflow_ = false;
};

}  // namespace core
