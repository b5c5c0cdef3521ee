// CRC-32 (IEEE 802.3 / zlib): reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace core {

// Continues a running CRC: pass 0 to start, feed the previous result to continue
// (same convention as zlib's crc32()).
uint32_t Crc32(const uint8_t* data, size_t len, uint32_t crc = 0);

}  // namespace core
