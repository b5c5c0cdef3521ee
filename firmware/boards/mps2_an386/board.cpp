// Board layer for QEMU's mps2-an386 (Arm's AN386 FPGA image: a Cortex-M4 with FPU), run as
// `qemu-system-arm -M mps2-an386 -icount shift=0`.
//
// The counterpart of firmware/src/main.cpp: the same portable core, TFLM adapter, generated
// model and TFLM library objects, wired to the CMSDK APB UART0 (the transport; QEMU puts it
// on a pty) and SysTick (the clock). Everything else of the image is identical to the Nano's.
//
// Time: with -icount shift=0 QEMU retires one instruction per nanosecond of virtual time, and
// SysTick counts the 25 MHz system clock of the AN386, so one tick is 40 instructions. The
// board reports instructions where the Nano reports DWT cycles, and micros() as the time
// those instructions would take at the Nano's 64 MHz with one cycle each; the host labels
// both as what they are.
#include <stddef.h>
#include <stdint.h>

#include <new>

#include "dispatcher.h"
#include "model_device_info.h"
#include "model_settings.h"
#include "protocol.h"
#include "tflm_engine.h"
#include "version.h"

namespace {

// The host tools recognise the emulator by this name (host_tools/emulator.py BOARD_NAME).
constexpr char kBoardName[] = "emulated Cortex-M4 (QEMU)";
// The clock the reported cycles are scaled to: the Nano 33 BLE's nRF52840 runs at 64 MHz.
constexpr uint32_t kReportedHz = 64000000UL;
constexpr uint32_t kInstructionsPerMicrosecond = kReportedHz / 1000000UL;
// AN386 SYSCLK (25 MHz) ticks at 1 ns per instruction (-icount shift=0): 40 instructions.
constexpr uint32_t kInstructionsPerTick = 40;

// CMSDK APB UART (Arm CoreLink SDK technical reference manual): UART0 carries the protocol,
// UART1 the TFLM log text.
struct CmsdkUart {
  volatile uint32_t data;
  volatile uint32_t state;      // bit 0: TX buffer full, bit 1: RX buffer full
  volatile uint32_t ctrl;       // bit 0: TX enable, bit 1: RX enable, bit 3: RX interrupt enable
  volatile uint32_t intstatus;  // write 1 to clear; bit 1: RX
  volatile uint32_t bauddiv;
};
CmsdkUart* const kUart0 = reinterpret_cast<CmsdkUart*>(0x40004000u);
CmsdkUart* const kUart1 = reinterpret_cast<CmsdkUart*>(0x40005000u);
constexpr uint32_t kUartTxFull = 1u << 0;
constexpr uint32_t kUartRxFull = 1u << 1;
constexpr uint32_t kUartTxEnable = 1u << 0;
constexpr uint32_t kUartRxEnable = 1u << 1;
constexpr uint32_t kUartRxInterruptEnable = 1u << 3;
constexpr uint32_t kUartRxInterrupt = 1u << 1;
// UART0's receive interrupt is external interrupt 0 on the AN386 (QEMU hw/arm/mps2.c).
volatile uint32_t* const kNvicIser0 = reinterpret_cast<volatile uint32_t*>(0xE000E100u);
constexpr uint32_t kUart0RxIrqBit = 1u << 0;
// The smallest divider the UART accepts; QEMU ignores the baud rate otherwise.
constexpr uint32_t kUartMinBaudDiv = 16;

// SysTick and the interrupt-control register (ARMv7-M architecture reference manual B3.3).
volatile uint32_t* const kSysTickCtrl = reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t* const kSysTickLoad = reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t* const kSysTickVal = reinterpret_cast<volatile uint32_t*>(0xE000E018u);
volatile uint32_t* const kIcsr = reinterpret_cast<volatile uint32_t*>(0xE000ED04u);
constexpr uint32_t kSysTickEnable = 1u << 0;
constexpr uint32_t kSysTickInterrupt = 1u << 1;
constexpr uint32_t kSysTickCpuClock = 1u << 2;
constexpr uint32_t kSysTickMax = 0x00FFFFFFu;  // 24-bit down-counter
constexpr uint32_t kIcsrPendSysTick = 1u << 26;

volatile uint32_t g_systick_wraps = 0;

void UartBegin(CmsdkUart* uart, uint32_t extra_ctrl) {
  uart->bauddiv = kUartMinBaudDiv;
  uart->ctrl = kUartTxEnable | kUartRxEnable | extra_ctrl;
}

// Sleeps until a byte arrives. QEMU hands the UART one byte per round trip between its
// emulation thread and its I/O thread; a CPU that sleeps instead of polling leaves the host's
// cores to that I/O thread (measured: 180 instead of 430 µs per byte on a loaded machine).
// Interrupts are masked around the check, so a byte arriving just before WFI still wakes it
// (a pending interrupt ends WFI even while masked); the handler then runs after cpsie.
void WaitForByte() {
  __asm volatile("cpsid i" ::: "memory");
  if ((kUart0->state & kUartRxFull) == 0) __asm volatile("wfi" ::: "memory");
  __asm volatile("cpsie i" ::: "memory");
}

void UartWrite(CmsdkUart* uart, const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    // QEMU holds a byte here only while the pty is full; with no host on the pty it drops
    // the bytes, like the Nano's USB port with no host attached.
    while ((uart->state & kUartTxFull) != 0) {
    }
    uart->data = data[i];
  }
}

class SysTickClock final : public core::Clock {
 public:
  void Begin() {
    *kSysTickLoad = kSysTickMax;
    *kSysTickVal = 0;
    *kSysTickCtrl = kSysTickEnable | kSysTickInterrupt | kSysTickCpuClock;
  }
  uint32_t micros() override { return static_cast<uint32_t>(Instructions() / kInstructionsPerMicrosecond); }
  bool has_cycles() const override { return true; }
  // Instructions, wrapping at 2^32 like the Nano's DWT cycle counter.
  uint32_t cycles() override { return static_cast<uint32_t>(Instructions()); }

 private:
  static uint64_t Instructions() { return Ticks() * kInstructionsPerTick; }
  static uint64_t Ticks() {
    // A wrap between reading the count and the wraps is seen as a pending SysTick interrupt.
    __asm volatile("cpsid i" ::: "memory");
    uint32_t wraps = g_systick_wraps;
    uint32_t value = *kSysTickVal;
    if ((*kIcsr & kIcsrPendSysTick) != 0) {
      ++wraps;
      value = *kSysTickVal;
    }
    __asm volatile("cpsie i" ::: "memory");
    return (static_cast<uint64_t>(wraps) << 24) + (kSysTickMax - value);
  }
};

class UartTransport final : public core::Transport {
 public:
  size_t read(uint8_t* buf, size_t cap) override {
    // The UART holds one received byte; take what has arrived, never wait for more.
    size_t n = 0;
    while (n < cap && (kUart0->state & kUartRxFull) != 0) {
      buf[n++] = static_cast<uint8_t>(kUart0->data);
    }
    return n;
  }
  void write(const uint8_t* data, size_t len) override { UartWrite(kUart0, data, len); }
};

// Frame buffers follow from the model's tensor sizes (docs/protocol.md section 1).
uint8_t g_rx[core::RxBufferBytes(model::kInputBytes)];
uint8_t g_tx[core::TxBufferBytes(model::kOutputBytes)];
uint8_t g_cache[core::CacheBufferBytes(model::kOutputBytes)];

tflm_engine::CoreEngine g_engine;
SysTickClock g_clock;
UartTransport g_transport;
core::DeviceInfo g_info{};
alignas(core::Dispatcher) uint8_t g_dispatcher_storage[sizeof(core::Dispatcher)];

}  // namespace

extern "C" void SysTick_Handler() { g_systick_wraps = g_systick_wraps + 1; }

// Only wakes the CPU from WFI; the main loop reads the byte.
extern "C" void Uart0Rx_Handler() { kUart0->intstatus = kUartRxInterrupt; }

// TFLM's log sink. On the Nano the library's system_setup.cpp prints to Serial; here the
// text goes to UART1, away from the binary protocol on UART0.
extern "C" void DebugLog(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  UartWrite(kUart1, reinterpret_cast<const uint8_t*>(s), n);
}

int main() {
  UartBegin(kUart0, kUartRxInterruptEnable);
  UartBegin(kUart1, 0);
  *kNvicIser0 = kUart0RxIrqBit;
  g_clock.Begin();

  const tflm_engine::Status status = tflm_engine::Begin();

  core::FillModelInfo(&g_info);
  for (int i = 0; i < 3; ++i) g_info.firmware_version[i] = core::kFirmwareVersion[i];
  g_info.startup_status = static_cast<uint8_t>(status);
  g_info.clock_hz = kReportedHz;
  g_info.board_name = kBoardName;
  g_info.startup_message = tflm_engine::status_message();

  core::Dispatcher* dispatcher = new (g_dispatcher_storage) core::Dispatcher(
      g_info, g_engine, g_clock, g_transport,
      core::Buffers{g_rx, sizeof g_rx, g_tx, sizeof g_tx, g_cache, sizeof g_cache});
  while (true) {
    dispatcher->Poll();
    WaitForByte();
  }
}
