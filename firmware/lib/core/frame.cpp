#include "frame.h"

#include "cobs.h"
#include "crc32.h"

namespace core {

uint8_t ParseFrame(const uint8_t* raw, size_t len, ParsedFrame* out) {
  if (len < kFrameOverhead) return kTooShort;
  const uint16_t payload_len = GetU16(raw + 3);
  if (static_cast<size_t>(payload_len) + kFrameOverhead != len) return kBadLength;
  const size_t body = kHeaderBytes + payload_len;
  if (Crc32(raw, body) != GetU32(raw + body)) return kBadCrc;
  out->version = static_cast<uint8_t>(raw[0] >> 4);
  out->type = static_cast<uint8_t>(raw[0] & 0x0F);
  out->seq = GetU16(raw + 1);
  out->payload = raw + kHeaderBytes;
  out->payload_len = payload_len;
  return 0;
}

// The raw frame sits at `offset_` = CobsMaxOverhead(size): the encoder writes at most one
// code byte per started 254-byte block ahead of the data, so with that head start the write
// position never passes the read position and the encoding can run in place.
FrameWriter::FrameWriter(uint8_t* buffer, size_t size)
    : buf_(buffer), size_(size), offset_(CobsMaxOverhead(static_cast<uint32_t>(size))) {}

size_t FrameWriter::max_payload() const {
  const size_t raw = TxRawCapacity(static_cast<uint32_t>(size_));
  if (raw <= kFrameOverhead) return 0;
  return raw - kFrameOverhead > kMaxPayloadField ? kMaxPayloadField : raw - kFrameOverhead;
}

uint8_t* FrameWriter::Begin(uint8_t type, uint16_t seq, size_t payload_len) {
  raw_len_ = 0;
  if (payload_len > max_payload()) return nullptr;
  uint8_t* raw = buf_ + offset_;
  raw[0] = static_cast<uint8_t>((kProtocolVersion << 4) | (type & 0x0F));
  PutU16(raw + 1, seq);
  PutU16(raw + 3, static_cast<uint16_t>(payload_len));
  raw_len_ = kHeaderBytes + payload_len;
  return raw + kHeaderBytes;
}

size_t FrameWriter::Finish() {
  if (raw_len_ == 0) return 0;
  uint8_t* raw = buf_ + offset_;
  PutU32(raw + raw_len_, Crc32(raw, raw_len_));
  const size_t total = raw_len_ + kCrcBytes;
  raw_len_ = 0;
  // Leave one byte for the delimiter.
  const size_t n = CobsEncode(raw, total, buf_, size_ - 1);
  if (n == 0) return 0;
  buf_[n] = 0;
  return n + 1;
}

}  // namespace core
