// Host shim: wires the core's Engine, Clock and Transport to C callbacks (tm_host.h).
#include "tm_host.h"

#include <chrono>
#include <new>
#include <stddef.h>
#include <string.h>

#include "crc32.h"
#include "cobs.h"
#include "device_info.h"
#include "dispatcher.h"
#include "messages.h"
#include "model_data.h"
#include "model_device_info.h"
#include "model_settings.h"
#include "protocol.h"
#include "version.h"

namespace {

// The host accepts any tensor a frame can carry, so its buffers are sized for the largest
// `len` (they are static .bss, never touched beyond the model's sizes).
constexpr uint32_t kMaxInputBytes = core::kMaxPayloadField;
constexpr uint32_t kMaxOutputBytes = core::kMaxPayloadField - core::kResultHeaderBytes;
// Replies of one tm_feed() are collected here so Python sees few write callbacks.
constexpr uint32_t kOutBatchBytes = 1u << 16;

uint8_t g_rx[core::RxBufferBytes(kMaxInputBytes)];
uint8_t g_tx[core::TxBufferBytes(kMaxOutputBytes, core::kProfileOpsMax)];
uint8_t g_cache[core::CacheBufferBytes(kMaxOutputBytes)];
core::OpTicks g_ops[core::kProfileOpsMax];
// The engine that times each op of a PROFILE (the board's TFLM adapter, when the library has
// it: tm_board_engine.cpp sets it); without one a PROFILE reports the whole callback as one op.
core::Engine* g_profiling_engine = nullptr;
constexpr char kWholeInvokeName[] = "invoke";
int8_t g_input[kMaxInputBytes];
int8_t g_output[kMaxOutputBytes];
uint8_t g_out_batch[kOutBatchBytes];
uint8_t g_scratch[core::EncodedFrameCapacity(core::RawFrameCapacity(core::kMaxPayloadField))];
char g_board_name[core::kBoardNameMax + 1];
char g_startup_message[core::kStartupMessageMax + 1];

void CopyString(char* dst, size_t cap, const char* src) {
  const size_t n = core::BoundedLength(src, cap - 1);
  if (n != 0) memcpy(dst, src, n);
  dst[n] = '\0';
}

// Sends the replies collected so far (defined after the transport below).
void FlushReplies();

// An inference this slow sends the replies collected so far first (see invoke()). At namespace
// scope: the shim is also compiled as C++14, where an odr-used static constexpr member needs a
// definition of its own.
constexpr std::chrono::steady_clock::duration kSlowInvoke = std::chrono::milliseconds(1);

class CallbackEngine final : public core::Engine {
 public:
  void Configure(tm_invoke_fn fn, void* user, uint32_t in, uint32_t out, uint32_t arena_used) {
    fn_ = fn;
    user_ = user;
    in_ = in;
    out_ = out;
    arena_used_ = arena_used;
  }
  int8_t* input() override { return g_input; }
  size_t input_bytes() const override { return in_; }
  bool invoke() override {
    // A board sends each reply as soon as it is ready. Replies are batched per tm_feed() to
    // save callbacks, but when inferences are slow the batch goes out before the next one
    // starts, or the host would see early answers only after the later ones and think them
    // lost.
    if (last_invoke_ >= kSlowInvoke) FlushReplies();
    const auto start = std::chrono::steady_clock::now();
    const bool ok = fn_(user_, g_input, in_, g_output, out_) == 0;
    last_invoke_ = std::chrono::steady_clock::now() - start;
    return ok;
  }
  const int8_t* output() const override { return g_output; }
  size_t output_bytes() const override { return out_; }
  size_t arena_used() const override { return arena_used_; }
  bool can_profile() const override { return true; }
  bool invoke_profiled(core::Clock& clock, core::OpTicks* ops, size_t capacity, size_t* count) override {
    *count = 0;
    core::Engine* engine = g_profiling_engine;
    if (engine != nullptr) {
      if (engine->input() == nullptr || engine->input_bytes() != in_ || engine->output_bytes() != out_) {
        return false;
      }
      memcpy(engine->input(), g_input, in_);
      const bool ok = engine->invoke_profiled(clock, ops, capacity, count);
      if (ok) memcpy(g_output, engine->output(), out_);
      return ok;
    }
    const uint32_t start = core::Ticks(clock);
    const bool ok = fn_(user_, g_input, in_, g_output, out_) == 0;
    const uint32_t ticks = core::Ticks(clock) - start;
    *count = 1;
    if (capacity != 0) ops[0] = core::OpTicks{kWholeInvokeName, ticks};
    return ok;
  }

 private:
  tm_invoke_fn fn_ = nullptr;
  void* user_ = nullptr;
  uint32_t in_ = 0;
  uint32_t out_ = 0;
  uint32_t arena_used_ = 0;
  std::chrono::steady_clock::duration last_invoke_{};
};

class CallbackClock final : public core::Clock {
 public:
  void Configure(tm_clock_fn fn, void* user, uint32_t clock_hz) {
    fn_ = fn;
    user_ = user;
    clock_hz_ = clock_hz;
  }
  uint32_t micros() override {
    if (fn_ != nullptr) return fn_(user_);
    const auto now = std::chrono::steady_clock::now().time_since_epoch();
    return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(now).count());
  }
  // A device that reports a clock_hz counts cycles. The host has no cycle counter, so the
  // cycles are the microsecond clock read again and scaled to clock_hz: the RESULT cycles
  // flag then takes the same path through the core as on the board (a fake clock sees four
  // reads per INFER: micros, cycles, cycles, micros).
  bool has_cycles() const override { return clock_hz_ != 0; }
  uint32_t cycles() override {
    return static_cast<uint32_t>(static_cast<uint64_t>(micros()) * clock_hz_ / 1000000u);
  }

 private:
  tm_clock_fn fn_ = nullptr;
  void* user_ = nullptr;
  uint32_t clock_hz_ = 0;
};

class BatchingTransport final : public core::Transport {
 public:
  void Configure(tm_write_fn fn, void* user) {
    fn_ = fn;
    user_ = user;
    used_ = 0;
  }
  size_t read(uint8_t*, size_t) override { return 0; }  // bytes arrive through tm_feed()
  void write(const uint8_t* data, size_t len) override {
    if (used_ + len > sizeof g_out_batch) Flush();
    if (len > sizeof g_out_batch) {
      fn_(user_, data, static_cast<uint32_t>(len));
      return;
    }
    memcpy(g_out_batch + used_, data, len);
    used_ += len;
  }
  void Flush() {
    if (used_ == 0) return;
    const uint32_t n = static_cast<uint32_t>(used_);
    used_ = 0;
    fn_(user_, g_out_batch, n);
  }

 private:
  tm_write_fn fn_ = nullptr;
  void* user_ = nullptr;
  size_t used_ = 0;
};

core::DeviceInfo g_info;
CallbackEngine g_engine;
CallbackClock g_clock;
BatchingTransport g_transport;

void FlushReplies() { g_transport.Flush(); }
// The dispatcher holds references, so a re-init constructs a fresh one in place.
alignas(core::Dispatcher) unsigned char g_dispatcher_storage[sizeof(core::Dispatcher)];
core::Dispatcher* g_dispatcher = nullptr;

int32_t Start(tm_invoke_fn invoke_fn, tm_clock_fn clock_fn, tm_write_fn write_fn, void* user,
              uint32_t arena_used) {
  g_dispatcher = nullptr;
  if (invoke_fn == nullptr || write_fn == nullptr) return TM_ERR_ARGS;
  const uint32_t in = core::TensorBytes(g_info.input);
  const uint32_t out = core::TensorBytes(g_info.output);
  if (in == 0 || out == 0 || out > kMaxOutputBytes) return TM_ERR_SIZES;
  g_engine.Configure(invoke_fn, user, in, out, arena_used);
  g_clock.Configure(clock_fn, user, g_info.clock_hz);
  g_transport.Configure(write_fn, user);
  core::Dispatcher* d = new (g_dispatcher_storage) core::Dispatcher(
      g_info, g_engine, g_clock, g_transport,
      core::Buffers{g_rx, sizeof g_rx, g_tx, sizeof g_tx, g_cache, sizeof g_cache, g_ops,
                    core::kProfileOpsMax});
  if (!d->ok()) return TM_ERR_SIZES;
  g_dispatcher = d;
  return TM_OK;
}

}  // namespace

void tm_host_set_profiling_engine(core::Engine* engine) { g_profiling_engine = engine; }

extern "C" {

int32_t tm_init_model(tm_invoke_fn invoke_fn, tm_clock_fn clock_fn, tm_write_fn write_fn, void* user,
                      uint8_t startup_status, const char* startup_error, uint32_t arena_used) {
  g_info = core::DeviceInfo{};
  core::FillModelInfo(&g_info);
  memcpy(g_info.firmware_version, core::kFirmwareVersion, 3);
  g_info.startup_status = startup_status;
  g_info.clock_hz = 0;
  CopyString(g_board_name, sizeof g_board_name, "virtual");
  CopyString(g_startup_message, sizeof g_startup_message, startup_status != 0 ? startup_error : nullptr);
  g_info.board_name = g_board_name;
  g_info.startup_message = g_startup_message;
  return Start(invoke_fn, clock_fn, write_fn, user, arena_used);
}

int32_t tm_init_custom(const tm_device_info* info, tm_invoke_fn invoke_fn, tm_clock_fn clock_fn,
                       tm_write_fn write_fn, void* user) {
  g_dispatcher = nullptr;
  if (info == nullptr) return TM_ERR_ARGS;
  g_info = core::DeviceInfo{};
  memcpy(g_info.firmware_version, info->firmware_version, 3);
  g_info.startup_status = info->startup_status;
  g_info.clock_hz = info->clock_hz;
  g_info.arena_size = info->arena_size;
  memcpy(g_info.model_hash, info->model_hash, 8);
  const tm_tensor_info* src[2] = {&info->input, &info->output};
  core::TensorInfo* dst[2] = {&g_info.input, &g_info.output};
  for (int i = 0; i < 2; ++i) {
    dst[i]->dtype = src[i]->dtype;
    dst[i]->rank = src[i]->rank;
    memcpy(dst[i]->dims, src[i]->dims, sizeof dst[i]->dims);
    dst[i]->scale = src[i]->scale;
    dst[i]->zero_point = src[i]->zero_point;
  }
  g_info.model_size = info->model_size;
  CopyString(g_board_name, sizeof g_board_name, info->board_name);
  CopyString(g_startup_message, sizeof g_startup_message, info->startup_message);
  g_info.board_name = g_board_name;
  g_info.startup_message = g_startup_message;
  return Start(invoke_fn, clock_fn, write_fn, user, info->arena_used);
}

void tm_feed(const uint8_t* data, uint32_t len) {
  if (g_dispatcher == nullptr || data == nullptr) return;
  g_dispatcher->Feed(data, len);
  g_transport.Flush();
}

void tm_reset(void) {
  if (g_dispatcher != nullptr) g_dispatcher->Reset();
}

uint32_t tm_max_payload(void) { return g_dispatcher != nullptr ? g_dispatcher->max_payload() : 0; }

const uint8_t* tm_model_data(void) { return model::kModelData; }
uint32_t tm_model_size(void) { return model::kModelDataLen; }
uint32_t tm_input_bytes(void) { return model::kInputBytes; }
uint32_t tm_output_bytes(void) { return model::kOutputBytes; }
uint32_t tm_arena_size(void) { return model::kArenaSize; }
const char* tm_model_hash(void) { return model::kModelHash; }

uint32_t tm_crc32(const uint8_t* data, uint32_t len) { return core::Crc32(data, len); }

uint32_t tm_cobs_encode(const uint8_t* src, uint32_t len, uint8_t* dst, uint32_t dst_cap) {
  const uint32_t offset = core::CobsMaxOverhead(len);
  if (len > core::RawFrameCapacity(core::kMaxPayloadField) || offset + len > sizeof g_scratch) return 0;
  if (len != 0) memmove(g_scratch + offset, src, len);
  const size_t n = core::CobsEncode(g_scratch + offset, len, g_scratch, sizeof g_scratch);
  if (n == 0 || n > dst_cap) return 0;
  memcpy(dst, g_scratch, n);
  return static_cast<uint32_t>(n);
}

#define TM_NAMED(group, enumerator, name, value) {group "." #name, value},
#define TM_MESSAGE_TYPE(enumerator, name, value) TM_NAMED("MsgType", enumerator, name, value)
#define TM_CODE(enumerator, name, value) TM_NAMED("Code", enumerator, name, value)
#define TM_STARTUP(enumerator, name, value) TM_NAMED("StartupStatus", enumerator, name, value)
#define TM_DTYPE(enumerator, name, value) TM_NAMED("Dtype", enumerator, name, value)
#define TM_FLAG(enumerator, name, value) TM_NAMED("ResultFlag", enumerator, name, value)
#define TM_INFO_FIELD(enumerator, field, offset, size) \
  {"InfoField." #field ".offset", offset}, {"InfoField." #field ".size", size},
#define TM_SIZEOF(type) {"sizeof(" #type ")", sizeof(type)},
#define TM_OFFSETOF(type, field) {"offsetof(" #type ", " #field ")", offsetof(type, field)},

static const tm_constant kProtocolConstants[] = {
    {"PROTOCOL_VERSION", core::kProtocolVersion},
    {"SEQ_UNKNOWN", core::kSeqUnknown},
    {"HEADER_BYTES", core::kHeaderBytes},
    {"CRC_BYTES", core::kCrcBytes},
    {"MAX_PAYLOAD_FIELD", core::kMaxPayloadField},
    {"WINDOW", core::kWindow},
    {"BOARD_NAME_MAX", core::kBoardNameMax},
    {"STARTUP_MESSAGE_MAX", core::kStartupMessageMax},
    {"ERROR_MESSAGE_MAX", core::kErrorMessageMax},
    {"INFO_FIXED_BYTES", core::kInfoFixedBytes},
    {"INFO_PAYLOAD_MAX", core::kInfoPayloadMax},
    {"RESULT_HEADER_BYTES", core::kResultHeaderBytes},
    {"PROFILE_HEADER_BYTES", core::kProfileHeaderBytes},
    {"PROFILE_ENTRY_HEADER_BYTES", core::kProfileEntryHeaderBytes},
    {"PROFILE_NAME_MAX", core::kProfileNameMax},
    {"PROFILE_OPS_MAX", core::kProfileOpsMax},
    CORE_MESSAGE_TYPES(TM_MESSAGE_TYPE)
    CORE_CODES(TM_CODE)
    CORE_STARTUP_STATUSES(TM_STARTUP)
    CORE_DTYPES(TM_DTYPE)
    CORE_RESULT_FLAGS(TM_FLAG)
    CORE_INFO_FIELDS(TM_INFO_FIELD)
    TM_SIZEOF(tm_tensor_info)
    TM_OFFSETOF(tm_tensor_info, dtype)
    TM_OFFSETOF(tm_tensor_info, rank)
    TM_OFFSETOF(tm_tensor_info, dims)
    TM_OFFSETOF(tm_tensor_info, scale)
    TM_OFFSETOF(tm_tensor_info, zero_point)
    TM_SIZEOF(tm_device_info)
    TM_OFFSETOF(tm_device_info, firmware_version)
    TM_OFFSETOF(tm_device_info, startup_status)
    TM_OFFSETOF(tm_device_info, clock_hz)
    TM_OFFSETOF(tm_device_info, arena_size)
    TM_OFFSETOF(tm_device_info, arena_used)
    TM_OFFSETOF(tm_device_info, model_hash)
    TM_OFFSETOF(tm_device_info, input)
    TM_OFFSETOF(tm_device_info, output)
    TM_OFFSETOF(tm_device_info, model_size)
    TM_OFFSETOF(tm_device_info, board_name)
    TM_OFFSETOF(tm_device_info, startup_message)
};

const tm_constant* tm_protocol_constants(uint32_t* count) {
  if (count != nullptr) *count = sizeof kProtocolConstants / sizeof kProtocolConstants[0];
  return kProtocolConstants;
}

uint32_t tm_encoded_frame_capacity(uint32_t raw) { return core::EncodedFrameCapacity(raw); }

}  // extern "C"
