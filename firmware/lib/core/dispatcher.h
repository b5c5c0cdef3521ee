// The device side of the protocol: bytes in, replies out. Decodes frames as bytes arrive,
// answers HELLO with INFO, runs INFER through the engine (timed with the clock) and keeps
// the last kWindow results so a retransmitted request is replayed, never run twice. PROFILE
// runs one inference with each op timed and is never cached (a measurement, not a result).
//
// Board wiring (all storage static, sizes from the generated settings):
//   static uint8_t rx[core::RxBufferBytes(model::kInputBytes)];
//   static uint8_t tx[core::TxBufferBytes(model::kOutputBytes, model::kOperatorCount)];
//   static uint8_t cache[core::CacheBufferBytes(model::kOutputBytes)];
//   static core::OpTicks ops[model::kOperatorCount];
//   static core::Dispatcher dispatcher(info, engine, clock, transport,
//       core::Buffers{rx, sizeof rx, tx, sizeof tx, cache, sizeof cache, ops, model::kOperatorCount});
//   loop() { dispatcher.Poll(); }
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cobs.h"
#include "device_info.h"
#include "interfaces.h"
#include "protocol.h"

namespace core {

struct Buffers {
  uint8_t* rx;
  size_t rx_size;
  uint8_t* tx;
  size_t tx_size;
  uint8_t* cache;
  size_t cache_size;
  // Per-op records of a PROFILE (model::kOperatorCount of them); none: PROFILE is answered
  // with ERROR UNKNOWN_TYPE. The transmit buffer must then be TxBufferBytes(output, operators).
  OpTicks* ops;
  size_t ops_capacity;
};

class Dispatcher {
 public:
  // `info` is read at every HELLO (not copied), so it must outlive the dispatcher.
  Dispatcher(const DeviceInfo& info, Engine& engine, Clock& clock, Transport& transport,
             const Buffers& buffers);

  // False when a buffer is smaller than the sizes above require for `info` (or two of
  // them overlap, or a tensor size is invalid); the
  // dispatcher then answers nothing (a wiring bug, caught by tests and static_asserts).
  bool ok() const { return ok_; }
  uint32_t max_payload() const { return max_payload_; }

  // Reads what the transport has (a bounded chunk) and handles it.
  void Poll();
  // Handles received bytes; replies are written to the transport before it returns.
  void Feed(const uint8_t* data, size_t len);
  // Power-cycle equivalent: drops the partial frame and the result cache.
  void Reset();

 private:
  struct CacheEntry {
    uint16_t seq;
    uint8_t valid;
    uint8_t flags;
    uint32_t micros;
    uint32_t cycles;
  };

  void HandleFrame(const uint8_t* raw, size_t len);
  void HandleInfer(uint16_t seq, const uint8_t* payload, size_t len);
  void HandleProfile(uint16_t seq, const uint8_t* payload, size_t len);
  // Checks an INFER or PROFILE payload and copies it into the input tensor; false after
  // sending the ERROR that says why not.
  bool LoadInput(uint16_t seq, const uint8_t* payload, size_t len);
  void SendInfo(uint16_t seq);
  void SendResult(uint16_t seq, size_t slot, uint8_t extra_flags);
  void SendCode(uint8_t type, uint16_t seq, uint8_t code, const char* message);
  void ClearCache();

  const DeviceInfo& info_;
  Engine& engine_;
  Clock& clock_;
  Transport& transport_;
  Buffers buffers_;
  CobsDecoder decoder_;
  uint32_t input_bytes_;
  uint32_t output_bytes_;
  uint32_t max_payload_;
  bool ok_;
  uint8_t next_slot_ = 0;
  CacheEntry cache_[kWindow];
};

}  // namespace core
