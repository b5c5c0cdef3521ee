// Firmware version reported in INFO (board and virtual board report the same one).
#pragma once

#include <stdint.h>

namespace core {
constexpr uint8_t kFirmwareVersion[3] = {0, 1, 0};
}  // namespace core
