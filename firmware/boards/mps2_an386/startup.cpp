// Start-up code for the mps2-an386 image: vector table, reset handler, fault traps, and the
// missing heap. QEMU loads the ELF and starts at the reset vector, like a Cortex-M4 out of reset.
#include <stddef.h>
#include <stdint.h>

extern "C" {
// Defined by mps2_an386.ld.
extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
typedef void (*InitFunction)();
extern InitFunction __init_array_start[], __init_array_end[];

int main();
void SysTick_Handler();
void Reset_Handler();
void Trap_Handler();
}

namespace {
// Coprocessor access control (ARMv7-M B3.2.20): CP10 and CP11 full access enables the FPU,
// which the library's -mfloat-abi=softfp -mfpu=fpv4-sp-d16 code uses.
volatile uint32_t* const kCpacr = reinterpret_cast<volatile uint32_t*>(0xE000ED88u);
constexpr uint32_t kCpacrFpuFull = 0xFu << 20;
}  // namespace

// A fault, or a call that needs a heap: stop here. The host sees a silent device and says so;
// a debugger attached to QEMU (-s) finds the program counter in this loop.
extern "C" void Trap_Handler() {
  __asm volatile("cpsid i" ::: "memory");
  while (true) {
  }
}

// The firmware allocates nothing at run time: the linker script leaves no heap, and newlib's
// malloc asks for memory through _sbrk, which traps instead of returning any.
extern "C" void* _sbrk(ptrdiff_t) {
  Trap_Handler();
  return nullptr;
}

extern "C" void Reset_Handler() {
  *kCpacr |= kCpacrFpuFull;
  __asm volatile("dsb\n isb" ::: "memory");
  for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  for (InitFunction* f = __init_array_start; f < __init_array_end; ++f) (*f)();
  main();
  Trap_Handler();
}

// ARMv7-M exception numbers 0..15 (initial stack pointer, then the handlers); the board
// enables no external interrupt.
__attribute__((section(".isr_vector"), used)) const void* const kVectorTable[16] = {
    &_estack,
    reinterpret_cast<const void*>(&Reset_Handler),
    reinterpret_cast<const void*>(&Trap_Handler),  // NMI
    reinterpret_cast<const void*>(&Trap_Handler),  // HardFault
    reinterpret_cast<const void*>(&Trap_Handler),  // MemManage
    reinterpret_cast<const void*>(&Trap_Handler),  // BusFault
    reinterpret_cast<const void*>(&Trap_Handler),  // UsageFault
    nullptr, nullptr, nullptr, nullptr,
    reinterpret_cast<const void*>(&Trap_Handler),  // SVCall
    reinterpret_cast<const void*>(&Trap_Handler),  // DebugMonitor
    nullptr,
    reinterpret_cast<const void*>(&Trap_Handler),  // PendSV
    reinterpret_cast<const void*>(&SysTick_Handler),
};
