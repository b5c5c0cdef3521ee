// The three things the portable core needs from its surroundings. The board layer
// implements them with TFLM, micros()/DWT and Serial; the host shim with callbacks.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace core {

class Clock;

// One op of a profiled Invoke(): its name (static storage, TFLM's) and the ticks it took.
struct OpTicks {
  const char* name;
  uint32_t ticks;
};

class Engine {
 public:
  // Input tensor data and its size in bytes (nullptr / 0 when the engine is not ready).
  virtual int8_t* input() = 0;
  virtual size_t input_bytes() const = 0;
  // Runs the model on input(); false if the interpreter reports an error.
  virtual bool invoke() = 0;
  virtual const int8_t* output() const = 0;
  virtual size_t output_bytes() const = 0;
  // Arena bytes the interpreter actually allocated (reported in INFO).
  virtual size_t arena_used() const = 0;
  // Whether invoke_profiled() times the ops (the TFLM adapter does).
  virtual bool can_profile() const { return false; }
  // Runs the model like invoke(), timing each op with Ticks(clock) into ops[0..capacity).
  // *count is the number of ops that ran, which may exceed capacity (the rest are not
  // recorded). False if the interpreter reports an error or the engine cannot profile.
  virtual bool invoke_profiled(Clock& clock, OpTicks* ops, size_t capacity, size_t* count) {
    (void)clock;
    (void)ops;
    (void)capacity;
    *count = 0;
    return false;
  }

 protected:
  ~Engine() = default;  // never deleted through this interface (no heap)
};

class Clock {
 public:
  // Microseconds, free-running, wrapping at 2^32.
  virtual uint32_t micros() = 0;
  // CPU cycle counter (wrapping); only read when has_cycles() is true.
  virtual bool has_cycles() const { return false; }
  virtual uint32_t cycles() { return 0; }

 protected:
  ~Clock() = default;
};

// What profiles count: cycles where the board has a cycle counter (DWT on the Nano,
// instructions on the emulator), else microseconds.
inline uint32_t Ticks(Clock& clock) { return clock.has_cycles() ? clock.cycles() : clock.micros(); }

class Transport {
 public:
  // Copies up to `cap` received bytes into `buf` without blocking; returns how many.
  virtual size_t read(uint8_t* buf, size_t cap) = 0;
  // Sends `len` bytes (one whole frame per call).
  virtual void write(const uint8_t* data, size_t len) = 0;

 protected:
  ~Transport() = default;
};

}  // namespace core
