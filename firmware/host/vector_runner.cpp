// Vector runner: drives the host shim from a line script on stdin, for the golden-vector
// and fuzz tests under AddressSanitizer / UndefinedBehaviorSanitizer. Not built by PlatformIO.
//
// Commands (one per line; hex strings use "-" for empty) and what is printed for each:
//   info FW0 FW1 FW2 STATUS CLOCK_HZ ARENA_SIZE ARENA_USED HASH16
//        IN_DTYPE IN_RANK D0 D1 D2 D3 IN_SCALE_BITS IN_ZP
//        OUT_DTYPE OUT_RANK D0 D1 D2 D3 OUT_SCALE_BITS OUT_ZP MODEL_SIZE BOARD_HEX MSG_HEX
//                        -> "init RC"   (tm_init_custom; scale bits = IEEE-754 u32 in hex)
//   feed HEX             -> "out HEX"   (every reply byte written during the feed)
//   reset                -> "reset"
//   crc HEX              -> "crc XXXXXXXX"
//   cobs HEX             -> "cobs HEX"  (in-place encoder, tightest head start)
// Mock engine (same as tests/vectors/protocol_v1.json "mock_engine"):
//   output[j] = int8(sum of the input bytes as int8 + 3*j); fails when input[0] == -128.
// Fake clock: 1000 us at init, +25 per call.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tm_host.h"

namespace {

std::vector<uint8_t> g_out;
uint32_t g_now = 0;

int32_t MockInvoke(void*, const int8_t* input, uint32_t input_len, int8_t* output, uint32_t output_len) {
  if (input_len == 0 || input[0] == -128) return 1;
  int32_t sum = 0;
  for (uint32_t i = 0; i < input_len; ++i) sum += input[i];
  for (uint32_t j = 0; j < output_len; ++j) {
    output[j] = static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint32_t>(sum + 3 * static_cast<int32_t>(j))));
  }
  return 0;
}

uint32_t FakeClock(void*) {
  const uint32_t now = g_now;
  g_now += 25;
  return now;
}

void Collect(void*, const uint8_t* data, uint32_t len) { g_out.insert(g_out.end(), data, data + len); }

bool ParseHex(const std::string& text, std::vector<uint8_t>* out) {
  out->clear();
  if (text == "-") return true;
  if (text.size() % 2 != 0) return false;
  for (size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    if (sscanf(text.c_str() + i, "%2x", &value) != 1) return false;
    out->push_back(static_cast<uint8_t>(value));
  }
  return true;
}

std::string ToHex(const uint8_t* data, size_t len) {
  if (len == 0) return "-";
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * len);
  for (size_t i = 0; i < len; ++i) {
    s.push_back(kDigits[data[i] >> 4]);
    s.push_back(kDigits[data[i] & 0x0F]);
  }
  return s;
}

bool ReadTensor(std::istringstream& in, tm_tensor_info* t) {
  unsigned dtype = 0, rank = 0, d[4] = {0, 0, 0, 0};
  uint32_t scale_bits = 0;
  long zp = 0;
  in >> dtype >> rank >> d[0] >> d[1] >> d[2] >> d[3] >> std::hex >> scale_bits >> std::dec >> zp;
  if (!in) return false;
  t->dtype = static_cast<uint8_t>(dtype);
  t->rank = static_cast<uint8_t>(rank);
  for (int i = 0; i < 4; ++i) t->dims[i] = static_cast<uint16_t>(d[i]);
  memcpy(&t->scale, &scale_bits, sizeof scale_bits);
  t->zero_point = static_cast<int32_t>(zp);
  return true;
}

bool RunInfo(std::istringstream& in) {
  static std::string board, message;
  tm_device_info info;
  memset(&info, 0, sizeof info);
  unsigned fw[3], status = 0;
  uint32_t clock_hz = 0, arena_size = 0, arena_used = 0, model_size = 0;
  std::string hash, board_hex, msg_hex;
  in >> fw[0] >> fw[1] >> fw[2] >> status >> clock_hz >> arena_size >> arena_used >> hash;
  if (!in || !ReadTensor(in, &info.input) || !ReadTensor(in, &info.output)) return false;
  in >> model_size >> board_hex >> msg_hex;
  std::vector<uint8_t> hash_bytes, board_bytes, msg_bytes;
  if (!in || !ParseHex(hash, &hash_bytes) || hash_bytes.size() != 8 || !ParseHex(board_hex, &board_bytes) ||
      !ParseHex(msg_hex, &msg_bytes)) {
    return false;
  }
  for (int i = 0; i < 3; ++i) info.firmware_version[i] = static_cast<uint8_t>(fw[i]);
  info.startup_status = static_cast<uint8_t>(status);
  info.clock_hz = clock_hz;
  info.arena_size = arena_size;
  info.arena_used = arena_used;
  memcpy(info.model_hash, hash_bytes.data(), 8);
  info.model_size = model_size;
  board.assign(board_bytes.begin(), board_bytes.end());
  message.assign(msg_bytes.begin(), msg_bytes.end());
  info.board_name = board.c_str();
  info.startup_message = message.c_str();
  g_now = 1000;
  printf("init %d\n", static_cast<int>(tm_init_custom(&info, MockInvoke, FakeClock, Collect, nullptr)));
  return true;
}

}  // namespace

int main() {
  std::string line;
  std::vector<uint8_t> bytes;
  size_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    std::istringstream in(line);
    std::string command, arg;
    in >> command;
    bool ok = true;
    if (command.empty()) {
      continue;
    } else if (command == "info") {
      ok = RunInfo(in);
    } else if (command == "reset") {
      tm_reset();
      printf("reset\n");
    } else if (command == "feed" || command == "crc" || command == "cobs") {
      in >> arg;
      ok = static_cast<bool>(in) && ParseHex(arg, &bytes);
      if (ok && command == "feed") {
        g_out.clear();
        tm_feed(bytes.data(), static_cast<uint32_t>(bytes.size()));
        printf("out %s\n", ToHex(g_out.data(), g_out.size()).c_str());
      } else if (ok && command == "crc") {
        printf("crc %08x\n", static_cast<unsigned>(tm_crc32(bytes.data(), static_cast<uint32_t>(bytes.size()))));
      } else if (ok) {
        std::vector<uint8_t> encoded(bytes.size() + bytes.size() / 254 + 2);
        const uint32_t n = tm_cobs_encode(bytes.data(), static_cast<uint32_t>(bytes.size()), encoded.data(),
                                          static_cast<uint32_t>(encoded.size()));
        printf("cobs %s\n", ToHex(encoded.data(), n).c_str());
      }
    } else {
      ok = false;
    }
    if (!ok) {
      fprintf(stderr, "vector_runner: bad line %zu: %s\n", line_no, command.c_str());
      return 2;
    }
  }
  return 0;
}
