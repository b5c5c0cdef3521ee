// What the device reports in INFO (docs/protocol.md section 3), filled by the board layer
// (or the host shim) from the generated model settings and the engine's start-up result.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace core {

struct TensorInfo {
  uint8_t dtype;       // 1 = int8 (one byte per element)
  uint8_t rank;        // 1..4
  uint16_t dims[4];    // unused dims 0
  float scale;
  int32_t zero_point;
};

struct DeviceInfo {
  uint8_t firmware_version[3];  // major, minor, patch
  uint8_t startup_status;       // 0 ready, else a start-up error code
  uint32_t clock_hz;            // 0 when cycles are not counted
  uint32_t arena_size;
  uint8_t model_hash[8];
  TensorInfo input;
  TensorInfo output;
  uint32_t model_size;
  const char* board_name;       // NUL-terminated, at most kBoardNameMax sent; may be null
  const char* startup_message;  // NUL-terminated, at most kStartupMessageMax sent; may be null
};

// Bytes of an int8 tensor: the product of its dims; 0 for a rank outside 1..4 or a size
// that does not fit a frame.
uint32_t TensorBytes(const TensorInfo& tensor);

// Parses the 16-hex-digit model hash of the generated settings into 8 bytes; false (and
// zeros) when it is not 16 hex digits.
bool ParseModelHash(const char* hex, uint8_t out[8]);

}  // namespace core
