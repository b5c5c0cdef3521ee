// Wire-protocol constants (docs/protocol.md) and the buffer-size helpers the board layer
// uses to declare its static frame buffers from the generated model settings.
#pragma once

#include <stdint.h>

namespace core {

constexpr uint8_t kProtocolVersion = 1;

enum MessageType : uint8_t {
  kHello = 0x1,
  kInfo = 0x2,
  kInfer = 0x3,
  kResult = 0x4,
  kNack = 0x5,
  kError = 0x6,
};

// NACK codes (1..4) and ERROR codes (16..21), docs/protocol.md section 5.
enum Code : uint8_t {
  kBadCrc = 1,
  kBadCobs = 2,
  kTooShort = 3,
  kBadLength = 4,
  kFrameTooLarge = 16,
  kBadVersion = 17,
  kUnknownType = 18,
  kBadPayload = 19,
  kNotReady = 20,
  kInvokeFailed = 21,
};

// Result flags (RESULT byte 0).
constexpr uint8_t kFlagCyclesValid = 0x01;
constexpr uint8_t kFlagReplayed = 0x02;

// The seq of a reply whose request header was never read or cannot be trusted.
constexpr uint16_t kSeqUnknown = 0xFFFF;

constexpr uint32_t kHeaderBytes = 5;  // ver_type, seq, len
constexpr uint32_t kCrcBytes = 4;
constexpr uint32_t kFrameOverhead = kHeaderBytes + kCrcBytes;
constexpr uint32_t kMaxPayloadField = 0xFFFF;  // `len` is a u16

// Requests in flight the host may have; also the depth of the result cache.
constexpr uint32_t kWindow = 32;

constexpr uint32_t kBoardNameMax = 32;
constexpr uint32_t kStartupMessageMax = 64;
constexpr uint32_t kErrorMessageMax = 48;
constexpr uint32_t kInfoFixedBytes = 70;  // INFO payload without the two strings
constexpr uint32_t kInfoPayloadMax = kInfoFixedBytes + kBoardNameMax + kStartupMessageMax;
constexpr uint32_t kResultHeaderBytes = 9;  // flags, micros, cycles
constexpr uint32_t kErrorPayloadMax = 1 + kErrorMessageMax;

constexpr uint32_t MaxOf(uint32_t a, uint32_t b) { return a > b ? a : b; }

// `max_payload` reported in INFO: the largest request payload the device accepts.
constexpr uint32_t MaxPayload(uint32_t input_bytes) { return MaxOf(input_bytes, kInfoPayloadMax); }

// The largest reply payload: INFO, ERROR or RESULT with `output_bytes` of output.
constexpr uint32_t MaxReplyPayload(uint32_t output_bytes) {
  return MaxOf(MaxOf(kInfoPayloadMax, kErrorPayloadMax), kResultHeaderBytes + output_bytes);
}

constexpr uint32_t RawFrameCapacity(uint32_t max_payload) { return max_payload + kFrameOverhead; }

// COBS adds one code byte per started 254 bytes; +1 covers the empty frame and rounding.
constexpr uint32_t CobsMaxOverhead(uint32_t raw_bytes) { return raw_bytes / 254 + 1; }

// Encoded bytes of a raw frame of at most `raw` bytes, delimiter included.
constexpr uint32_t EncodedFrameCapacity(uint32_t raw) { return raw + CobsMaxOverhead(raw) + 1; }

// Receive buffer: decoded (raw) bytes of the largest accepted frame; COBS is undone as bytes
// arrive, so the encoded form is never stored.
constexpr uint32_t RxBufferBytes(uint32_t input_bytes) { return RawFrameCapacity(MaxPayload(input_bytes)); }

// Transmit buffer: a reply is built raw at an offset inside it and COBS-encoded in place
// (see frame.h), so one buffer holds both forms. The second overhead term is slack for
// the offset, which is derived from the buffer size itself.
constexpr uint32_t TxBufferBytes(uint32_t output_bytes) {
  return RawFrameCapacity(MaxReplyPayload(output_bytes)) +
         2 * CobsMaxOverhead(RawFrameCapacity(MaxReplyPayload(output_bytes))) + 1;
}

// Raw bytes a transmit buffer of `tx_size` can hold: the raw frame starts after the COBS
// head start (see frame.h) and one byte stays free for the delimiter.
constexpr uint32_t TxRawCapacity(uint32_t tx_size) {
  return tx_size > CobsMaxOverhead(tx_size) + 1 ? tx_size - CobsMaxOverhead(tx_size) - 1 : 0;
}

// Result cache: the outputs of the last kWindow results.
constexpr uint32_t CacheBufferBytes(uint32_t output_bytes) { return kWindow * output_bytes; }

}  // namespace core
