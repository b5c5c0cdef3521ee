#include "device_info.h"

#include "protocol.h"

namespace core {

uint32_t TensorBytes(const TensorInfo& tensor) {
  if (tensor.rank < 1 || tensor.rank > 4) return 0;
  uint32_t bytes = 1;
  for (uint8_t i = 0; i < tensor.rank; ++i) {
    bytes *= tensor.dims[i];
    if (bytes > kMaxPayloadField) return 0;  // also stops the product before it can overflow
  }
  return bytes;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool ParseModelHash(const char* hex, uint8_t out[8]) {
  for (int i = 0; i < 8; ++i) out[i] = 0;
  if (hex == nullptr) return false;
  uint8_t bytes[8];
  for (int i = 0; i < 8; ++i) {
    const int hi = HexValue(hex[2 * i]);
    if (hi < 0) return false;
    const int lo = HexValue(hex[2 * i + 1]);  // not read past a NUL: hi was a digit
    if (lo < 0) return false;
    bytes[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  if (hex[16] != '\0') return false;
  for (int i = 0; i < 8; ++i) out[i] = bytes[i];
  return true;
}

}  // namespace core
