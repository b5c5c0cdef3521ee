// Wire-protocol constants (docs/protocol.md) and the buffer-size helpers the board layer
// uses to declare its static frame buffers from the generated model settings.
//
// Every enumerated fact (message types, codes, start-up status codes, dtype codes, result
// flags and the INFO layout) is written once, in one of the lists below. The enums are
// expanded from them here, and the host shim expands the same lists into the table it
// exports (tm_protocol_constants), which tests/test_protocol_facts.py compares with the
// Python side (common/protocol.py), the test oracle and docs/protocol.md. A new message
// type or field is therefore one line here and one line in common/protocol.py; the test
// fails until both agree.
#pragma once

#include <stdint.h>

namespace core {

constexpr uint8_t kProtocolVersion = 1;

// X(enumerator, name on the wire and in common/protocol.py, value)
#define CORE_MESSAGE_TYPES(X) \
  X(kHello, HELLO, 0x1)       \
  X(kInfo, INFO, 0x2)         \
  X(kInfer, INFER, 0x3)       \
  X(kResult, RESULT, 0x4)     \
  X(kNack, NACK, 0x5)         \
  X(kError, ERROR, 0x6)       \
  X(kProfile, PROFILE, 0x7)   \
  X(kProfileResult, PROFILE_RESULT, 0x8)

// NACK codes (1..4) and ERROR codes (16..21), docs/protocol.md section 5.
#define CORE_CODES(X)                  \
  X(kBadCrc, BAD_CRC, 1)               \
  X(kBadCobs, BAD_COBS, 2)             \
  X(kTooShort, TOO_SHORT, 3)           \
  X(kBadLength, BAD_LENGTH, 4)         \
  X(kFrameTooLarge, FRAME_TOO_LARGE, 16) \
  X(kBadVersion, BAD_VERSION, 17)      \
  X(kUnknownType, UNKNOWN_TYPE, 18)    \
  X(kBadPayload, BAD_PAYLOAD, 19)      \
  X(kNotReady, NOT_READY, 20)          \
  X(kInvokeFailed, INVOKE_FAILED, 21)

// Start-up status codes (INFO byte 5): 0 ready, else why the model cannot run.
#define CORE_STARTUP_STATUSES(X)                         \
  X(kStartupReady, READY, 0)                             \
  X(kStartupSchemaMismatch, SCHEMA_MISMATCH, 1)          \
  X(kStartupOpRegistrationFailed, OP_REGISTRATION_FAILED, 2) \
  X(kStartupAllocateTensorsFailed, ALLOCATE_TENSORS_FAILED, 3) \
  X(kStartupInputMismatch, INPUT_MISMATCH, 4)            \
  X(kStartupOutputMismatch, OUTPUT_MISMATCH, 5)

// Tensor dtype codes (INFO bytes 28 and 38, generated kInputDtype / kOutputDtype).
#define CORE_DTYPES(X) X(kDtypeInt8, INT8, 1)

// RESULT and PROFILE_RESULT byte 0.
#define CORE_RESULT_FLAGS(X)              \
  X(kFlagCyclesValid, CYCLES_VALID, 0x01) \
  X(kFlagReplayed, REPLAYED, 0x02)        \
  X(kFlagTruncated, TRUNCATED, 0x04)

// INFO payload (docs/protocol.md section 3), in wire order: X(enumerator, field, offset, size).
// Each field starts where the one before it ends (checked below); the two length-prefixed
// strings follow the fixed part.
#define CORE_INFO_FIELDS(X)                             \
  X(kInfoProtocolVersion, protocol_version, 0, 1)       \
  X(kInfoFirmwareVersion, firmware_version, 1, 3)       \
  X(kInfoWindow, window, 4, 1)                          \
  X(kInfoStartupStatus, startup_status, 5, 1)           \
  X(kInfoMaxPayload, max_payload, 6, 2)                 \
  X(kInfoClockHz, clock_hz, 8, 4)                       \
  X(kInfoArenaSize, arena_size, 12, 4)                  \
  X(kInfoArenaUsed, arena_used, 16, 4)                  \
  X(kInfoModelHash, model_hash, 20, 8)                  \
  X(kInfoInputDtype, input_dtype, 28, 1)                \
  X(kInfoInputRank, input_rank, 29, 1)                  \
  X(kInfoInputDims, input_dims, 30, 8)                  \
  X(kInfoOutputDtype, output_dtype, 38, 1)              \
  X(kInfoOutputRank, output_rank, 39, 1)                \
  X(kInfoOutputDims, output_dims, 40, 8)                \
  X(kInfoInputScale, input_scale, 48, 4)                \
  X(kInfoInputZeroPoint, input_zero_point, 52, 4)       \
  X(kInfoOutputScale, output_scale, 56, 4)              \
  X(kInfoOutputZeroPoint, output_zero_point, 60, 4)     \
  X(kInfoModelSize, model_size, 64, 4)                  \
  X(kInfoBoardNameLength, board_name_length, 68, 1)

#define CORE_ENUMERATOR(enumerator, name, value) enumerator = value,

enum MessageType : uint8_t { CORE_MESSAGE_TYPES(CORE_ENUMERATOR) };
enum Code : uint8_t { CORE_CODES(CORE_ENUMERATOR) };
enum StartupStatus : uint8_t { CORE_STARTUP_STATUSES(CORE_ENUMERATOR) };
enum Dtype : uint8_t { CORE_DTYPES(CORE_ENUMERATOR) };

#undef CORE_ENUMERATOR

// Flags are OR-ed into a byte, so they are plain bytes rather than an enum.
#define CORE_FLAG(enumerator, name, value) constexpr uint8_t enumerator = value;
CORE_RESULT_FLAGS(CORE_FLAG)
#undef CORE_FLAG

#define CORE_INFO_OFFSET(enumerator, field, offset, size) constexpr uint32_t enumerator = offset;
CORE_INFO_FIELDS(CORE_INFO_OFFSET)
#undef CORE_INFO_OFFSET

// The fields tile the fixed part without gaps or overlaps.
namespace detail {
#define CORE_INFO_END(enumerator, field, offset, size) offset + size,
#define CORE_INFO_START(enumerator, field, offset, size) offset,
constexpr uint32_t kInfoEnds[] = {0, CORE_INFO_FIELDS(CORE_INFO_END)};
constexpr uint32_t kInfoStarts[] = {CORE_INFO_FIELDS(CORE_INFO_START) 0};
#undef CORE_INFO_END
#undef CORE_INFO_START
constexpr bool InfoFieldsTile(uint32_t i) {
  return i + 1 >= sizeof kInfoEnds / sizeof kInfoEnds[0] ||
         (kInfoStarts[i] == kInfoEnds[i] && InfoFieldsTile(i + 1));
}
}  // namespace detail
static_assert(detail::InfoFieldsTile(0), "CORE_INFO_FIELDS: each field starts where the last ended");

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
// INFO payload without the two strings: the fixed fields and the two length bytes.
constexpr uint32_t kInfoFixedBytes = kInfoBoardNameLength + 2;
static_assert(kInfoFixedBytes == 70, "docs/protocol.md section 3");
constexpr uint32_t kInfoPayloadMax = kInfoFixedBytes + kBoardNameMax + kStartupMessageMax;
constexpr uint32_t kResultHeaderBytes = 9;  // flags, micros, cycles
constexpr uint32_t kErrorPayloadMax = 1 + kErrorMessageMax;

// PROFILE_RESULT (docs/protocol.md section 4): flags, op count, the whole Invoke()'s ticks,
// then per op its ticks, its name's length and the name (TFLM's, cut to kProfileNameMax).
constexpr uint32_t kProfileHeaderBytes = 6;       // flags, count, total ticks
constexpr uint32_t kProfileEntryHeaderBytes = 5;  // ticks, name length
constexpr uint32_t kProfileNameMax = 32;
constexpr uint32_t kProfileOpsMax = 255;  // the count is one byte

// The PROFILE_RESULT payload of a model with `operators` ops at most.
constexpr uint32_t ProfilePayloadMax(uint32_t operators) {
  return kProfileHeaderBytes +
         (operators < kProfileOpsMax ? operators : kProfileOpsMax) * (kProfileEntryHeaderBytes + kProfileNameMax);
}

constexpr uint32_t MaxOf(uint32_t a, uint32_t b) { return a > b ? a : b; }

// `max_payload` reported in INFO: the largest request payload the device accepts.
constexpr uint32_t MaxPayload(uint32_t input_bytes) { return MaxOf(input_bytes, kInfoPayloadMax); }

// The largest reply payload: INFO, ERROR, RESULT with `output_bytes` of output, or the
// PROFILE_RESULT of `operators` ops (0: the board does not profile).
constexpr uint32_t MaxReplyPayload(uint32_t output_bytes, uint32_t operators = 0) {
  return MaxOf(MaxOf(MaxOf(kInfoPayloadMax, kErrorPayloadMax), kResultHeaderBytes + output_bytes),
               operators == 0 ? 0 : ProfilePayloadMax(operators));
}

constexpr uint32_t RawFrameCapacity(uint32_t max_payload) { return max_payload + kFrameOverhead; }

// COBS adds at most one code byte per started 254 bytes, and one for empty data: the first
// code byte is always there, and only a full 254-byte block that does not end the data
// costs another (a zero costs nothing, its code byte takes its place). So exactly
// 254 * k bytes need k, not k + 1 (common/protocol.py cobs_max_overhead is the same rule).
constexpr uint32_t CobsMaxOverhead(uint32_t raw_bytes) { return raw_bytes == 0 ? 1 : (raw_bytes - 1) / 254 + 1; }

// Encoded bytes of a raw frame of at most `raw` bytes, delimiter included.
constexpr uint32_t EncodedFrameCapacity(uint32_t raw) { return raw + CobsMaxOverhead(raw) + 1; }

// Receive buffer: decoded (raw) bytes of the largest accepted frame; COBS is undone as bytes
// arrive, so the encoded form is never stored.
constexpr uint32_t RxBufferBytes(uint32_t input_bytes) { return RawFrameCapacity(MaxPayload(input_bytes)); }

// Transmit buffer: a reply is built raw at an offset inside it and COBS-encoded in place
// (see frame.h), so one buffer holds both forms. The second overhead term is slack for
// the offset, which is derived from the buffer size itself.
constexpr uint32_t TxBufferBytes(uint32_t output_bytes, uint32_t operators = 0) {
  return RawFrameCapacity(MaxReplyPayload(output_bytes, operators)) +
         2 * CobsMaxOverhead(RawFrameCapacity(MaxReplyPayload(output_bytes, operators))) + 1;
}

// Raw bytes a transmit buffer of `tx_size` can hold: the raw frame starts after the COBS
// head start (see frame.h) and one byte stays free for the delimiter.
constexpr uint32_t TxRawCapacity(uint32_t tx_size) {
  return tx_size > CobsMaxOverhead(tx_size) + 1 ? tx_size - CobsMaxOverhead(tx_size) - 1 : 0;
}

// Result cache: the outputs of the last kWindow results.
constexpr uint32_t CacheBufferBytes(uint32_t output_bytes) { return kWindow * output_bytes; }

}  // namespace core
