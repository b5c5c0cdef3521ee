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

// Tensor block: dtype, rank, 4 dims, at the offsets of CORE_INFO_FIELDS.
void PutTensorShape(const TensorInfo& t, uint8_t* dtype, uint8_t* rank, uint8_t* dims) {
  *dtype = t.dtype;
  *rank = t.rank;
  for (int i = 0; i < 4; ++i) PutU16(dims + 2 * i, t.dims[i]);
}

uint8_t* PutString(const char* text, size_t limit, uint8_t* p) {
  const size_t n = BoundedLength(text, limit);
  *p++ = static_cast<uint8_t>(n);
  if (n != 0) memcpy(p, text, n);
  return p + n;
}
}  // namespace

void EncodeInfo(const DeviceInfo& info, uint32_t max_payload, uint32_t arena_used, uint8_t* out) {
  out[kInfoProtocolVersion] = kProtocolVersion;
  memcpy(out + kInfoFirmwareVersion, info.firmware_version, 3);
  out[kInfoWindow] = static_cast<uint8_t>(kWindow);
  out[kInfoStartupStatus] = info.startup_status;
  PutU16(out + kInfoMaxPayload, static_cast<uint16_t>(max_payload));
  PutU32(out + kInfoClockHz, info.clock_hz);
  PutU32(out + kInfoArenaSize, info.arena_size);
  PutU32(out + kInfoArenaUsed, arena_used);
  memcpy(out + kInfoModelHash, info.model_hash, 8);
  PutTensorShape(info.input, out + kInfoInputDtype, out + kInfoInputRank, out + kInfoInputDims);
  PutTensorShape(info.output, out + kInfoOutputDtype, out + kInfoOutputRank, out + kInfoOutputDims);
  PutU32(out + kInfoInputScale, FloatBits(info.input.scale));
  PutU32(out + kInfoInputZeroPoint, static_cast<uint32_t>(info.input.zero_point));
  PutU32(out + kInfoOutputScale, FloatBits(info.output.scale));
  PutU32(out + kInfoOutputZeroPoint, static_cast<uint32_t>(info.output.zero_point));
  PutU32(out + kInfoModelSize, info.model_size);
  uint8_t* p = PutString(info.board_name, kBoardNameMax, out + kInfoBoardNameLength);
  PutString(info.startup_message, kStartupMessageMax, p);
}

void EncodeResultHeader(uint8_t flags, uint32_t micros, uint32_t cycles, uint8_t* out) {
  out[0] = flags;
  PutU32(out + 1, micros);
  PutU32(out + 5, cycles);
}

}  // namespace core
