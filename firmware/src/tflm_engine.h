// TFLM engine adapter: the only place that talks to TensorFlow Lite Micro.
//
// It owns the interpreter (constructed in static storage, never on the heap), checks every
// start-up step and, instead of halting, records a status code and a message that the
// handshake (INFO) reports. The portable core sees it only through core::Engine.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "interfaces.h"

#include "protocol.h"

namespace tflm_engine {

// Start-up status codes (INFO byte 5), the values of the protocol's list in protocol.h.
enum class Status : uint8_t {
  kReady = core::kStartupReady,
  kSchemaMismatch = core::kStartupSchemaMismatch,
  kOpRegistrationFailed = core::kStartupOpRegistrationFailed,
  kAllocateTensorsFailed = core::kStartupAllocateTensorsFailed,
  kInputMismatch = core::kStartupInputMismatch,
  kOutputMismatch = core::kStartupOutputMismatch,
};

// Maps the generated model, registers its ops, allocates tensors, checks the I/O tensors
// against model_settings.h. Safe to call once; later calls return the first result.
Status Begin();

Status status();
// Human-readable reason for a start-up failure ("" when ready); bounded, NUL-terminated.
const char* status_message();

// Input / output tensor data (nullptr unless ready). Sizes are model::kInputBytes and
// model::kOutputBytes, checked at start-up.
int8_t* input();
const int8_t* output();

// Runs the model; false if TFLM reports an error.
bool Invoke();

// Runs the model with each op timed by core::Ticks(clock) (see core::Engine::invoke_profiled).
bool InvokeProfiled(core::Clock& clock, core::OpTicks* ops, size_t capacity, size_t* count);

// Bytes of the arena the interpreter actually uses (0 unless ready).
size_t arena_used();

// The adapter as the portable core sees it: every board layer hands this to its dispatcher.
class CoreEngine final : public core::Engine {
 public:
  int8_t* input() override;
  size_t input_bytes() const override;
  bool invoke() override;
  const int8_t* output() const override;
  size_t output_bytes() const override;
  size_t arena_used() const override;
  bool can_profile() const override { return true; }
  bool invoke_profiled(core::Clock& clock, core::OpTicks* ops, size_t capacity, size_t* count) override;
};

}  // namespace tflm_engine
