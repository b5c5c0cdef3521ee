// The board's TFLM library on the host, for convert's verification and the arena measurement.
//
// Runs any .tflite the library can run (AllOpsResolver: the op check is convert's job) on a
// batch of inputs, one Invoke per sample, and reports the arena the interpreter used. Host
// only: it may use the heap, because the model size and the arena are known only at run time.
// One runner per loaded library; not thread-safe.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "tensorflow/lite/micro/all_ops_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tm_host_log.h"

namespace {

// TFLM keeps pointers into the model and lays tensors out in the arena: both must outlive
// the interpreter, and CMSIS-NN wants 16-byte alignment.
constexpr size_t kAlign = 16;

uint8_t* g_model = nullptr;
uint8_t* g_arena = nullptr;
// Placement-constructed: TFLM's ARDUINO build makes operator delete private on its classes.
tflite::AllOpsResolver* g_resolver = nullptr;
tflite::MicroInterpreter* g_interpreter = nullptr;
char g_message[256] = "";

void SetMessage(const char* what) {
  // TFLM's own words (DebugLog) say more than ours; keep both when there are any.
  const char* detail = tm_host_last_log();
  if (detail[0] != '\0') {
    snprintf(g_message, sizeof g_message, "%s: %s", what, detail);
  } else {
    snprintf(g_message, sizeof g_message, "%s", what);
  }
}

uint8_t* AlignedCopy(const uint8_t* src, size_t len) {
  const size_t rounded = (len + kAlign - 1) / kAlign * kAlign;
  auto* dst = static_cast<uint8_t*>(aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded));
  if (dst != nullptr && src != nullptr) memcpy(dst, src, len);
  return dst;
}

}  // namespace

extern "C" {

void br_close(void) {
  if (g_interpreter != nullptr) g_interpreter->~MicroInterpreter();
  free(g_interpreter);
  g_interpreter = nullptr;
  if (g_resolver != nullptr) g_resolver->~AllOpsResolver();
  free(g_resolver);
  g_resolver = nullptr;
  free(g_arena);
  g_arena = nullptr;
  free(g_model);
  g_model = nullptr;
}

// 0 = ready; -1 schema, -2 out of memory, -3 AllocateTensors failed, -4 not one input and one output.
int32_t br_open(const uint8_t* model, uint32_t len, uint32_t arena_bytes) {
  br_close();
  tm_host_clear_log();
  g_message[0] = '\0';
  g_model = AlignedCopy(model, len);
  g_arena = AlignedCopy(nullptr, arena_bytes);
  if (g_model == nullptr || g_arena == nullptr) {
    SetMessage("out of memory");
    return -2;
  }
  const tflite::Model* m = tflite::GetModel(g_model);
  if (m->version() != TFLITE_SCHEMA_VERSION) {
    SetMessage("unsupported schema version");
    return -1;
  }
  void* resolver_storage = aligned_alloc(alignof(tflite::AllOpsResolver),
                                         (sizeof(tflite::AllOpsResolver) + kAlign - 1) / kAlign * kAlign);
  if (resolver_storage == nullptr) {
    SetMessage("out of memory");
    return -2;
  }
  g_resolver = new (resolver_storage) tflite::AllOpsResolver();
  void* storage = aligned_alloc(alignof(tflite::MicroInterpreter),
                                (sizeof(tflite::MicroInterpreter) + kAlign - 1) / kAlign * kAlign);
  if (storage == nullptr) {
    SetMessage("out of memory");
    return -2;
  }
  g_interpreter = new (storage) tflite::MicroInterpreter(m, *g_resolver, g_arena, arena_bytes);
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    SetMessage("AllocateTensors() failed");
    return -3;
  }
  if (g_interpreter->inputs_size() != 1 || g_interpreter->outputs_size() != 1) {
    SetMessage("the model must have one input and one output tensor");
    return -4;
  }
  return 0;
}

const char* br_message(void) { return g_message; }

uint32_t br_input_bytes(void) {
  return g_interpreter != nullptr ? static_cast<uint32_t>(g_interpreter->input(0)->bytes) : 0;
}

uint32_t br_output_bytes(void) {
  return g_interpreter != nullptr ? static_cast<uint32_t>(g_interpreter->output(0)->bytes) : 0;
}

uint32_t br_arena_used(void) {
  return g_interpreter != nullptr ? static_cast<uint32_t>(g_interpreter->arena_used_bytes()) : 0;
}

// Runs `count` samples stored back to back; returns how many ran (== count unless Invoke
// failed, and then br_message() says why).
uint32_t br_run(const uint8_t* inputs, uint32_t count, uint8_t* outputs) {
  if (g_interpreter == nullptr) return 0;
  TfLiteTensor* in = g_interpreter->input(0);
  const TfLiteTensor* out = g_interpreter->output(0);
  for (uint32_t i = 0; i < count; ++i) {
    memcpy(in->data.raw, inputs + static_cast<size_t>(i) * in->bytes, in->bytes);
    tm_host_clear_log();
    if (g_interpreter->Invoke() != kTfLiteOk) {
      SetMessage("Invoke() failed");
      return i;
    }
    memcpy(outputs + static_cast<size_t>(i) * out->bytes, out->data.raw, out->bytes);
  }
  return count;
}

}  // extern "C"
