// Raw frame layout (docs/protocol.md section 1): ver_type u8, seq u16, len u16, payload,
// CRC-32 u32 over everything before it. Little-endian throughout.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

namespace core {

inline void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void PutU32(uint8_t* p, uint32_t v) {
  PutU16(p, static_cast<uint16_t>(v));
  PutU16(p + 2, static_cast<uint16_t>(v >> 16));
}
inline uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(GetU16(p)) | (static_cast<uint32_t>(GetU16(p + 2)) << 16);
}

struct ParsedFrame {
  uint8_t version;
  uint8_t type;
  uint16_t seq;
  const uint8_t* payload;
  uint16_t payload_len;
};

// Checks a decoded frame in the documented order: size (TOO_SHORT), `len` field
// (BAD_LENGTH), CRC (BAD_CRC). Returns 0 and fills `out`, or the NACK code.
uint8_t ParseFrame(const uint8_t* raw, size_t len, ParsedFrame* out);

// Builds a frame in a caller buffer and COBS-encodes it in place, delimiter included.
//   FrameWriter w(tx, sizeof tx);
//   uint8_t* p = w.Begin(kInfo, seq, payload_len);  // nullptr if it cannot fit
//   ... write payload_len bytes at p ...
//   size_t n = w.Finish();                          // wire bytes at tx[0..n)
class FrameWriter {
 public:
  FrameWriter(uint8_t* buffer, size_t size);

  // Largest payload that fits this buffer.
  size_t max_payload() const;
  uint8_t* Begin(uint8_t type, uint16_t seq, size_t payload_len);
  size_t Finish();
  const uint8_t* data() const { return buf_; }

 private:
  uint8_t* buf_;
  size_t size_;
  size_t offset_;   // where the raw frame is built: room for the COBS overhead
  size_t raw_len_ = 0;
};

}  // namespace core
