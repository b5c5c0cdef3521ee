#include "messages.h"

#include <string.h>

#include "frame.h"
#include "protocol.h"

namespace core {

size_t BoundedLength(const char* text, size_t limit) {
  if (text == nullptr) return 0;
  size_t n = 0;
  while (n < limit && text[n] != '\0') ++n;
  return n;
}

size_t InfoPayloadSize(const DeviceInfo& info) {
  return kInfoFixedBytes + BoundedLength(info.board_name, kBoardNameMax) +
         BoundedLength(info.startup_message, kStartupMessageMax);
}

namespace {
uint32_t FloatBits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Tensor block: dtype, rank, 4 dims (offsets 28..47 of INFO).
void PutTensorShape(const TensorInfo& t, uint8_t* p) {
  p[0] = t.dtype;
  p[1] = t.rank;
  for (int i = 0; i < 4; ++i) PutU16(p + 2 + 2 * i, t.dims[i]);
}

uint8_t* PutString(const char* text, size_t limit, uint8_t* p) {
  const size_t n = BoundedLength(text, limit);
  *p++ = static_cast<uint8_t>(n);
  if (n != 0) memcpy(p, text, n);
  return p + n;
}
}  // namespace

void EncodeInfo(const DeviceInfo& info, uint32_t max_payload, uint32_t arena_used, uint8_t* out) {
  out[0] = kProtocolVersion;
  out[1] = info.firmware_version[0];
  out[2] = info.firmware_version[1];
  out[3] = info.firmware_version[2];
  out[4] = static_cast<uint8_t>(kWindow);
  out[5] = info.startup_status;
  PutU16(out + 6, static_cast<uint16_t>(max_payload));
  PutU32(out + 8, info.clock_hz);
  PutU32(out + 12, info.arena_size);
  PutU32(out + 16, arena_used);
  memcpy(out + 20, info.model_hash, 8);
  PutTensorShape(info.input, out + 28);
  PutTensorShape(info.output, out + 38);
  PutU32(out + 48, FloatBits(info.input.scale));
  PutU32(out + 52, static_cast<uint32_t>(info.input.zero_point));
  PutU32(out + 56, FloatBits(info.output.scale));
  PutU32(out + 60, static_cast<uint32_t>(info.output.zero_point));
  PutU32(out + 64, info.model_size);
  uint8_t* p = PutString(info.board_name, kBoardNameMax, out + 68);
  PutString(info.startup_message, kStartupMessageMax, p);
}

void EncodeResultHeader(uint8_t flags, uint32_t micros, uint32_t cycles, uint8_t* out) {
  out[0] = flags;
  PutU32(out + 1, micros);
  PutU32(out + 5, cycles);
}

}  // namespace core
