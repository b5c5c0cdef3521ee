// See tflm_engine.h. Includes TFLM and the generated model files; no Arduino.
#include "tflm_engine.h"

#include <math.h>
#include <stdio.h>

#include <new>

#include "model_data.h"
#include "model_op_resolver.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

// Defined by the TFLM headers above in current releases; older trees kept it in
// tensorflow/lite/version.h. The flatbuffer schema has been version 3 since 2018.
#ifndef TFLITE_SCHEMA_VERSION
#define TFLITE_SCHEMA_VERSION 3
#endif

namespace tflm_engine {
namespace {

// CMSIS-NN kernels want 16-byte aligned scratch buffers; the arena size comes from convert,
// which measured it with the TFLM runtime and added a margin.
alignas(16) uint8_t g_arena[model::kArenaSize];

// Static storage for objects built at start-up: no heap, and a failed step leaves nothing
// half-constructed that a later call could touch.
alignas(model::OpResolver) uint8_t g_resolver_storage[sizeof(model::OpResolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

// TFLM calls BeginEvent/EndEvent around every op's Eval (micro_graph.cpp) when the interpreter
// has a profiler. This one records only while armed by InvokeProfiled(), into the caller's
// fixed array; disarmed it costs two virtual calls per op. TFLM's own MicroProfiler keeps
// 1,024 events (12 KB of RAM) and reads its ticks from micro_time, not the board's clock.
class OpProfiler final : public tflite::MicroProfilerInterface {
 public:
  void Arm(core::Clock* clock, core::OpTicks* ops, size_t capacity) {
    clock_ = clock;
    ops_ = ops;
    capacity_ = capacity;
    count_ = 0;
  }
  void Disarm() { clock_ = nullptr; }
  size_t count() const { return count_; }

  uint32_t BeginEvent(const char* tag) override {
    if (clock_ == nullptr) return 0;
    const size_t index = count_++;
    if (index < capacity_) {
      ops_[index].name = tag;
      ops_[index].ticks = core::Ticks(*clock_);
    }
    return static_cast<uint32_t>(index);
  }
  void EndEvent(uint32_t handle) override {
    if (clock_ == nullptr || handle >= capacity_) return;
    ops_[handle].ticks = core::Ticks(*clock_) - ops_[handle].ticks;  // unsigned: wrap-safe
  }

 private:
  core::Clock* clock_ = nullptr;
  core::OpTicks* ops_ = nullptr;
  size_t capacity_ = 0;
  size_t count_ = 0;
};
// Placement-new'd like the interpreter: a static object with a virtual destructor would
// register its destruction with atexit.
alignas(OpProfiler) uint8_t g_profiler_storage[sizeof(OpProfiler)];
OpProfiler* g_profiler = nullptr;

tflite::MicroInterpreter* g_interpreter = nullptr;
TfLiteTensor* g_input = nullptr;
TfLiteTensor* g_output = nullptr;
bool g_started = false;
Status g_status = Status::kReady;
char g_message[64] = "";  // the INFO payload carries at most 64 bytes of message

Status Fail(Status status, const char* message) {
  g_status = status;
  snprintf(g_message, sizeof(g_message), "%s", message);
  g_input = nullptr;
  g_output = nullptr;
  return status;
}

bool SameQuantization(const TfLiteTensor* t, float scale, int zero_point) {
  // The settings were printed from the same .tflite with round-trip precision, so any
  // difference beyond float noise means the settings and the model data disagree.
  return fabsf(t->params.scale - scale) <= 1e-6f * fabsf(scale) && t->params.zero_point == zero_point;
}

bool Matches(const TfLiteTensor* t, const int* dims, int rank, size_t bytes, float scale,
             int zero_point) {
  if (t == nullptr || t->type != kTfLiteInt8 || t->dims == nullptr || t->dims->size != rank ||
      t->bytes != bytes) {
    return false;
  }
  for (int i = 0; i < rank; ++i) {
    if (t->dims->data[i] != dims[i]) return false;
  }
  return SameQuantization(t, scale, zero_point);
}

}  // namespace

Status Begin() {
  if (g_started) return g_status;
  g_started = true;

  const tflite::Model* model = tflite::GetModel(model::kModelData);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    char msg[64];
    snprintf(msg, sizeof(msg), "model schema %lu, runtime schema %d",
             static_cast<unsigned long>(model->version()), TFLITE_SCHEMA_VERSION);
    return Fail(Status::kSchemaMismatch, msg);
  }

  auto* resolver = new (g_resolver_storage) model::OpResolver();
  if (model::RegisterOps(*resolver) != kTfLiteOk) {
    return Fail(Status::kOpRegistrationFailed, "op resolver registration failed");
  }

  g_profiler = new (g_profiler_storage) OpProfiler();
  g_interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, *resolver, g_arena, sizeof(g_arena), nullptr, g_profiler);
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    char msg[64];
    snprintf(msg, sizeof(msg), "AllocateTensors() failed (arena %u B)",
             static_cast<unsigned>(sizeof(g_arena)));
    return Fail(Status::kAllocateTensorsFailed, msg);
  }

  g_input = g_interpreter->input(0);
  if (!Matches(g_input, model::kInputDims, model::kInputRank, model::kInputBytes, model::kInputScale,
               model::kInputZeroPoint)) {
    return Fail(Status::kInputMismatch, "input tensor differs from model_settings.h");
  }
  g_output = g_interpreter->output(0);
  if (!Matches(g_output, model::kOutputDims, model::kOutputRank, model::kOutputBytes,
               model::kOutputScale, model::kOutputZeroPoint)) {
    return Fail(Status::kOutputMismatch, "output tensor differs from model_settings.h");
  }
  g_status = Status::kReady;
  return g_status;
}

Status status() { return g_status; }
const char* status_message() { return g_message; }

int8_t* input() { return g_input != nullptr ? g_input->data.int8 : nullptr; }
const int8_t* output() { return g_output != nullptr ? g_output->data.int8 : nullptr; }

bool Invoke() {
  if (g_status != Status::kReady || g_interpreter == nullptr) return false;
  return g_interpreter->Invoke() == kTfLiteOk;
}

bool InvokeProfiled(core::Clock& clock, core::OpTicks* ops, size_t capacity, size_t* count) {
  *count = 0;
  if (g_status != Status::kReady || g_interpreter == nullptr || g_profiler == nullptr) return false;
  g_profiler->Arm(&clock, ops, capacity);
  const bool ok = g_interpreter->Invoke() == kTfLiteOk;
  g_profiler->Disarm();
  *count = g_profiler->count();
  return ok;
}

size_t arena_used() {
  return (g_status == Status::kReady && g_interpreter != nullptr) ? g_interpreter->arena_used_bytes() : 0;
}

// Sizes are the generated settings', which Begin() checked against the tensors; 0 until ready,
// so the core never touches a buffer of a model that failed to start.
int8_t* CoreEngine::input() { return tflm_engine::input(); }
size_t CoreEngine::input_bytes() const { return g_status == Status::kReady ? model::kInputBytes : 0; }
bool CoreEngine::invoke() { return Invoke(); }
const int8_t* CoreEngine::output() const { return tflm_engine::output(); }
size_t CoreEngine::output_bytes() const { return g_status == Status::kReady ? model::kOutputBytes : 0; }
size_t CoreEngine::arena_used() const { return tflm_engine::arena_used(); }
bool CoreEngine::invoke_profiled(core::Clock& clock, core::OpTicks* ops, size_t capacity, size_t* count) {
  return InvokeProfiled(clock, ops, capacity, count);
}

}  // namespace tflm_engine
