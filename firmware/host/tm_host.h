/* Host shim: the portable core as a C library, for the virtual board and the tests.
 *
 * One static device per loaded library (no heap). Every call is synchronous: tm_feed()
 * hands the bytes to the core and, before it returns, passes every reply to write_fn
 * (replies of one tm_feed() call are batched into as few write_fn calls as possible).
 * Callbacks must not call back into the library. Not thread-safe: one caller at a time.
 */
#ifndef TM_HOST_H_
#define TM_HOST_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs the model: reads input_len int8 values, writes output_len. 0 = ok, else failure
 * (answered with ERROR INVOKE_FAILED). The pointers are valid during the call only. */
typedef int32_t (*tm_invoke_fn)(void* user, const int8_t* input, uint32_t input_len, int8_t* output,
                                uint32_t output_len);
/* Microseconds, free-running, wrapping at 2^32. NULL = the shim's steady_clock. */
typedef uint32_t (*tm_clock_fn)(void* user);
/* Device -> host bytes (whole frames, delimiters included). Valid during the call only. */
typedef void (*tm_write_fn)(void* user, const uint8_t* data, uint32_t len);

typedef struct tm_tensor_info {
  uint8_t dtype; /* 1 = int8 */
  uint8_t rank;  /* 1..4 */
  uint16_t dims[4];
  float scale;
  int32_t zero_point;
} tm_tensor_info;

/* Mirrors the INFO payload (docs/protocol.md section 3); protocol version, window and
 * max_payload are the core's own. Strings are copied (truncated to 32 / 64 bytes). */
typedef struct tm_device_info {
  uint8_t firmware_version[3];
  uint8_t startup_status; /* 0 ready, else a start-up error code */
  uint32_t clock_hz;
  uint32_t arena_size;
  uint32_t arena_used;
  uint8_t model_hash[8];
  tm_tensor_info input;
  tm_tensor_info output;
  uint32_t model_size;
  const char* board_name;      /* NULL = "" */
  const char* startup_message; /* NULL = "" */
} tm_device_info;

/* Return codes of the init functions. */
#define TM_OK 0
#define TM_ERR_ARGS (-1)   /* write_fn or invoke_fn is NULL */
#define TM_ERR_SIZES (-2)  /* tensor rank/dims invalid or too large for a frame */

/* Device info from the generated model_settings.h compiled into the library, firmware
 * version core::kFirmwareVersion, board name "virtual", clock_hz 0 (no cycle counter).
 * startup_status 0 = ready; otherwise the device answers INFER with ERROR NOT_READY
 * carrying startup_error. */
int32_t tm_init_model(tm_invoke_fn invoke_fn, tm_clock_fn clock_fn, tm_write_fn write_fn, void* user,
                      uint8_t startup_status, const char* startup_error, uint32_t arena_used);
/* Any device info (tests, vectors). A clock_hz other than 0 makes the device count cycles
 * (RESULT flag bit 0): the clock is read again around the invoke and scaled to clock_hz. */
int32_t tm_init_custom(const tm_device_info* info, tm_invoke_fn invoke_fn, tm_clock_fn clock_fn,
                       tm_write_fn write_fn, void* user);

/* Host -> device bytes. No-op before a successful init. */
void tm_feed(const uint8_t* data, uint32_t len);
/* Simulated power cycle: partial frame and result cache dropped. */
void tm_reset(void);
/* The advertised max_payload of the current device (0 before init). */
uint32_t tm_max_payload(void);

/* The compiled-in generated model. */
const uint8_t* tm_model_data(void);
uint32_t tm_model_size(void);
uint32_t tm_input_bytes(void);
uint32_t tm_output_bytes(void);
uint32_t tm_arena_size(void);
const char* tm_model_hash(void); /* 16 hex digits */

/* The core's primitives, exported for the test vectors. tm_cobs_encode encodes in place
 * with the tightest head start the core relies on; returns the encoded length, 0 if it
 * does not fit dst_cap (or len > 65544). */
uint32_t tm_crc32(const uint8_t* data, uint32_t len);
uint32_t tm_cobs_encode(const uint8_t* src, uint32_t len, uint8_t* dst, uint32_t dst_cap);

/* The protocol facts of firmware/lib/core/protocol.h (message types, codes, start-up
 * statuses, dtypes, result flags, INFO field offsets and sizes, header sizes and limits)
 * and the layout of the structs above, as a table of names and values for the test that
 * compares them with the Python side. Names: "MsgType.HELLO", "InfoField.clock_hz.offset",
 * "sizeof(tm_device_info)", "offsetof(tm_device_info, clock_hz)", "HEADER_BYTES", ...
 * *count receives the number of entries. */
typedef struct tm_constant {
  const char* name;
  int64_t value;
} tm_constant;
const tm_constant* tm_protocol_constants(uint32_t* count);
/* core::EncodedFrameCapacity: the most wire bytes (delimiter included) a raw frame of
 * `raw` bytes can take. */
uint32_t tm_encoded_frame_capacity(uint32_t raw);

#ifdef __cplusplus
}

namespace core {
class Engine;
}
/* The engine that times each op when the host asks for a PROFILE (C++ only: the board's TFLM
 * adapter, set by tm_engine_attach_profiler() of tm_board_engine.cpp). */
void tm_host_set_profiling_engine(core::Engine* engine);
#endif

#endif /* TM_HOST_H_ */
