// Payload encoders for the device -> host messages (INFO, RESULT, NACK, ERROR).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "device_info.h"

namespace core {

// Bytes of the INFO payload for `info` (strings truncated to their limits).
size_t InfoPayloadSize(const DeviceInfo& info);
// Writes the INFO payload; `out` must hold InfoPayloadSize(info) bytes.
void EncodeInfo(const DeviceInfo& info, uint32_t max_payload, uint32_t arena_used, uint8_t* out);

// RESULT header (flags, micros, cycles); the outputs follow it.
void EncodeResultHeader(uint8_t flags, uint32_t micros, uint32_t cycles, uint8_t* out);

// Length of `text` capped at `limit` (0 for null).
size_t BoundedLength(const char* text, size_t limit);

}  // namespace core
