/* Vector and FPU registers: distinct patterns in zmm0-zmm31 (so also every
 * ymm and xmm), k0-k7, two x87 stack slots, a non-default x87 control word
 * and a non-default MXCSR (round toward zero, flush to zero). All of it is
 * loaded by one asm block that then prints READY with a raw write(2) (a
 * system call keeps every vector register), and spins on the flag without
 * any system call and without touching those registers, so a checkpoint
 * stops it with the values live in the registers, not in memory. Right
 * after the loop the same asm block stores every register to memory, before
 * any compiled C code can use them. Built with -mavx512f -mavx512bw. */
#include <stddef.h>

#include "workload.h"

enum { kMxcsr = 0x1f80 | 0x6000 | 0x8000, kMxcsrDefault = 0x1f80 };
enum { kFcw = 0x007f | 0x0200 | 0x0800, kFcwDefault = 0x037f };

struct State {
  _Alignas(64) unsigned char zmm[32][64];
  _Alignas(64) unsigned char zmm_out[32][64];
  uint64_t k[8];
  uint64_t k_out[8];
  uint32_t mxcsr, mxcsr_out, mxcsr_default;
  uint16_t fcw, fcw_out, fcw_default;
  _Alignas(16) unsigned char x87[2][16];  /* 80-bit values, in the first 10 bytes */
  _Alignas(16) unsigned char x87_out[2][16];
  char ready[64];
  uint64_t ready_len;
};

static struct State s;

#define LOAD_Z(n) "vmovdqu64 %c[o_zmm]+" #n "*64(%%rbx), %%zmm" #n "\n\t"
#define STORE_Z(n) "vmovdqu64 %%zmm" #n ", %c[o_zmm_out]+" #n "*64(%%rbx)\n\t"
#define LOAD_K(n) "kmovq %c[o_k]+" #n "*8(%%rbx), %%k" #n "\n\t"
#define STORE_K(n) "kmovq %%k" #n ", %c[o_k_out]+" #n "*8(%%rbx)\n\t"
#define EIGHT(M, a, b, c, d, e, f, g, h) M(a) M(b) M(c) M(d) M(e) M(f) M(g) M(h)
#define ALL_Z(M)                      \
  EIGHT(M, 0, 1, 2, 3, 4, 5, 6, 7)    \
  EIGHT(M, 8, 9, 10, 11, 12, 13, 14, 15) \
  EIGHT(M, 16, 17, 18, 19, 20, 21, 22, 23) EIGHT(M, 24, 25, 26, 27, 28, 29, 30, 31)
#define ALL_K(M) EIGHT(M, 0, 1, 2, 3, 4, 5, 6, 7)

/* Extra instructions run right after the wait loop; a scratch copy defines
 * it to clobber a register and check that the comparison notices. */
#ifndef CLOBBER_AFTER_WAIT
#define CLOBBER_AFTER_WAIT ""
#endif

static void LoadSpinStore(void) {
  __asm__ volatile(
      "ldmxcsr %c[o_mxcsr](%%rbx)\n\t"
      "fldcw %c[o_fcw](%%rbx)\n\t"
      "fldt %c[o_x87](%%rbx)\n\t"
      "fldt %c[o_x87]+16(%%rbx)\n\t"
      ALL_Z(LOAD_Z)
      ALL_K(LOAD_K)
      /* write(1, ready, ready_len): clobbers rax, rcx, r11 only. */
      "mov $1, %%eax\n\t"
      "mov $1, %%edi\n\t"
      "lea %c[o_ready](%%rbx), %%rsi\n\t"
      "mov %c[o_ready_len](%%rbx), %%rdx\n\t"
      "syscall\n\t"
      "1:\n\t"
      "pause\n\t"
      "cmpl $0, %[flag]\n\t"
      "je 1b\n\t"
      CLOBBER_AFTER_WAIT
      ALL_Z(STORE_Z)
      ALL_K(STORE_K)
      "stmxcsr %c[o_mxcsr_out](%%rbx)\n\t"
      "fnstcw %c[o_fcw_out](%%rbx)\n\t"
      "fstpt %c[o_x87_out]+16(%%rbx)\n\t"
      "fstpt %c[o_x87_out](%%rbx)\n\t"
      "ldmxcsr %c[o_mxcsr_default](%%rbx)\n\t"
      "fldcw %c[o_fcw_default](%%rbx)\n\t"
      "vzeroupper\n\t"
      :
      : "b"(&s), [flag] "m"(wl_go), [o_zmm] "i"(offsetof(struct State, zmm)),
        [o_zmm_out] "i"(offsetof(struct State, zmm_out)), [o_k] "i"(offsetof(struct State, k)),
        [o_k_out] "i"(offsetof(struct State, k_out)),
        [o_mxcsr] "i"(offsetof(struct State, mxcsr)),
        [o_mxcsr_out] "i"(offsetof(struct State, mxcsr_out)),
        [o_mxcsr_default] "i"(offsetof(struct State, mxcsr_default)),
        [o_fcw] "i"(offsetof(struct State, fcw)), [o_fcw_out] "i"(offsetof(struct State, fcw_out)),
        [o_fcw_default] "i"(offsetof(struct State, fcw_default)),
        [o_x87] "i"(offsetof(struct State, x87)), [o_x87_out] "i"(offsetof(struct State, x87_out)),
        [o_ready] "i"(offsetof(struct State, ready)),
        [o_ready_len] "i"(offsetof(struct State, ready_len))
      : "rax", "rcx", "rdx", "rsi", "rdi", "r11", "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3",
        "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
        "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
        "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2",
        "k3", "k4", "k5", "k6", "k7");
}

static int HasAvx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

int main(void) {
  wl_install_handler();
  if (!HasAvx512()) return wl_fail("this CPU has no AVX-512F/BW");

  for (int r = 0; r < 32; ++r) wl_fill(s.zmm[r], 64, 0x2a000 + (uint64_t)r, 0);
  for (int r = 0; r < 8; ++r) s.k[r] = wl_mix(0x6b000 + (uint64_t)r);
  s.mxcsr = kMxcsr;
  s.mxcsr_default = kMxcsrDefault;
  s.fcw = kFcw;
  s.fcw_default = kFcwDefault;
  /* Two 80-bit values with every byte distinct: a normal number with a
   * random mantissa (explicit integer bit set) and exponent 0x3fff+5. */
  for (int i = 0; i < 2; ++i) {
    uint64_t mantissa = wl_mix(0x87000 + (uint64_t)i) | (1ull << 63);
    uint16_t exponent = (uint16_t)(0x3fff + 5 + i);
    memcpy(s.x87[i], &mantissa, 8);
    memcpy(s.x87[i] + 8, &exponent, 2);
  }
  int n = snprintf(s.ready, sizeof(s.ready), "READY %d\n", (int)getpid());
  s.ready_len = (uint64_t)n;

  LoadSpinStore();

  for (int r = 0; r < 32; ++r) {
    for (int b = 0; b < 64; ++b) {
      if (s.zmm_out[r][b] != s.zmm[r][b]) {
        return wl_fail("zmm%d byte %d is %02x, expected %02x", r, b, s.zmm_out[r][b],
                       s.zmm[r][b]);
      }
    }
  }
  for (int r = 0; r < 8; ++r) {
    if (s.k_out[r] != s.k[r]) {
      return wl_fail("k%d is %016llx, expected %016llx", r, (unsigned long long)s.k_out[r],
                     (unsigned long long)s.k[r]);
    }
  }
  /* The exception flags (bits 0-5) may have been raised meanwhile; the
   * control bits must be exactly what was set. */
  if ((s.mxcsr_out & ~0x3fu) != (uint32_t)kMxcsr) {
    return wl_fail("mxcsr is %04x, expected %04x", s.mxcsr_out, (unsigned)kMxcsr);
  }
  if ((s.fcw_out & 0x1f7f) != (kFcw & 0x1f7f)) {
    return wl_fail("x87 control word is %04x, expected %04x", s.fcw_out, (unsigned)kFcw);
  }
  for (int i = 0; i < 2; ++i) {
    if (memcmp(s.x87_out[i], s.x87[i], 10) != 0) return wl_fail("x87 st(%d) differs", 1 - i);
  }
  wl_say("OK zmm0-31 k0-7 mxcsr %04x fcw %04x x87 st0-1", s.mxcsr_out, s.fcw_out);
  return 0;
}
