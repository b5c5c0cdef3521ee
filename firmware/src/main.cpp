// Board layer for the Arduino Nano 33 BLE Sense (nRF52840, Cortex-M4F @ 64 MHz).
//
// The only file that includes Arduino.h. It wires the portable core (firmware/lib/core) to
// USB Serial, micros() and the DWT cycle counter, and the core's engine interface to the
// TFLM adapter (tflm_engine.*). All storage is static and sized from the generated model
// settings; nothing is allocated after start-up.
#include <Arduino.h>
// Pulls the TFLM Arduino library into the build (PlatformIO's dependency finder follows it).
#include <TensorFlowLite.h>

#include <new>

#include "dispatcher.h"
#include "model_device_info.h"
#include "model_settings.h"
#include "protocol.h"
#include "tflm_engine.h"
#include "version.h"

namespace {

constexpr char kBoardName[] = "Arduino Nano 33 BLE Sense";
constexpr uint32_t kCpuHz = 64000000UL;  // nRF52840 core clock: what the cycle counter counts
constexpr unsigned long kErrorBlinkMs = 250;

// Cortex-M4 debug registers for the cycle counter (ARMv7-M architecture reference manual):
// DEMCR.TRCENA enables the DWT unit, DWT_CTRL.CYCCNTENA starts CYCCNT.
volatile uint32_t* const kDemcr = reinterpret_cast<volatile uint32_t*>(0xE000EDFCu);
volatile uint32_t* const kDwtCtrl = reinterpret_cast<volatile uint32_t*>(0xE0001000u);
volatile uint32_t* const kDwtCyccnt = reinterpret_cast<volatile uint32_t*>(0xE0001004u);
constexpr uint32_t kDemcrTrcena = 1u << 24;
constexpr uint32_t kDwtCyccntena = 1u << 0;

class BoardClock final : public core::Clock {
 public:
  void Begin() {
    *kDemcr |= kDemcrTrcena;
    *kDwtCyccnt = 0;
    *kDwtCtrl |= kDwtCyccntena;
  }
  uint32_t micros() override { return ::micros(); }
  bool has_cycles() const override { return true; }
  uint32_t cycles() override { return *kDwtCyccnt; }
};

class SerialTransport final : public core::Transport {
 public:
  size_t read(uint8_t* buf, size_t cap) override {
    const int available = Serial.available();
    if (available <= 0) return 0;
    const size_t n = static_cast<size_t>(available) < cap ? static_cast<size_t>(available) : cap;
    // Only bytes already received are asked for, so readBytes() never waits for its timeout.
    return Serial.readBytes(reinterpret_cast<char*>(buf), n);
  }
  void write(const uint8_t* data, size_t len) override {
    // With no host on the port (DTR low) a USB CDC write can wait for a reader that never
    // comes; the reply is dropped instead, and the host's retransmission recovers it.
    if (!Serial) return;
    Serial.write(data, len);
  }
};

// Frame buffers follow from the model's tensor sizes (docs/protocol.md section 1).
uint8_t g_rx[core::RxBufferBytes(model::kInputBytes)];
uint8_t g_tx[core::TxBufferBytes(model::kOutputBytes, model::kOperatorCount)];
uint8_t g_cache[core::CacheBufferBytes(model::kOutputBytes)];
core::OpTicks g_ops[model::kOperatorCount];

tflm_engine::CoreEngine g_engine;
BoardClock g_clock;
SerialTransport g_transport;
core::DeviceInfo g_info{};
// Constructed in setup(), after the engine has started, into static storage.
alignas(core::Dispatcher) uint8_t g_dispatcher_storage[sizeof(core::Dispatcher)];
core::Dispatcher* g_dispatcher = nullptr;

bool g_led_on = false;
unsigned long g_last_blink_ms = 0;

void SetLed(bool on) {
  if (on != g_led_on) {
    digitalWrite(LED_BUILTIN, on ? HIGH : LOW);
    g_led_on = on;
  }
}

}  // namespace

void setup() {
  pinMode(LED_BUILTIN, OUTPUT);
  SetLed(false);
  // USB CDC ignores the baud rate; the host may open the port at any time, and the firmware
  // never writes before it is asked (HELLO), so there is no need to wait for it here.
  Serial.begin(115200);
  g_clock.Begin();

  const tflm_engine::Status status = tflm_engine::Begin();

  core::FillModelInfo(&g_info);
  for (int i = 0; i < 3; ++i) g_info.firmware_version[i] = core::kFirmwareVersion[i];
  g_info.startup_status = static_cast<uint8_t>(status);
  g_info.clock_hz = kCpuHz;
  g_info.board_name = kBoardName;
  g_info.startup_message = tflm_engine::status_message();

  g_dispatcher = new (g_dispatcher_storage) core::Dispatcher(
      g_info, g_engine, g_clock, g_transport,
      core::Buffers{g_rx, sizeof g_rx, g_tx, sizeof g_tx, g_cache, sizeof g_cache, g_ops,
                    model::kOperatorCount});
  SetLed(status == tflm_engine::Status::kReady && g_dispatcher->ok());
}

void loop() {
  const bool healthy = tflm_engine::status() == tflm_engine::Status::kReady && g_dispatcher->ok();
  if (!healthy) {
    // A start-up error blinks the LED; the dispatcher still answers (INFO carries the reason,
    // INFER gets NOT_READY), so the host can say what went wrong.
    const unsigned long now = millis();
    if (now - g_last_blink_ms >= kErrorBlinkMs) {
      g_last_blink_ms = now;
      SetLed(!g_led_on);
    }
  } else {
    // LED off while there is work (frames being received, decoded or run), on when idle.
    SetLed(Serial.available() <= 0);
  }
  g_dispatcher->Poll();
}
