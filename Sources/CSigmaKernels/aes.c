// AES-128 encryption: key schedule, a portable byte-oriented implementation, AES-NI (8 blocks in flight),
// VAES-256 and VAES-512 (16 blocks in flight). Each accelerated function carries its own target attribute,
// so the target needs no -maes flag and the binary still runs (on the portable path) where the
// instructions are missing; which one runs is decided at run time by CPUID.
#include "CSigmaKernels.h"
#include "internal.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define SIGMA_X86 1
#endif

// ---------------------------------------------------------------------------------------------------------
// Portable AES (FIPS-197), used for the key schedule and as the fallback cipher.

static const uint8_t sbox[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76, 0xca, 0x82, 0xc9,
    0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0, 0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f,
    0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15, 0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07,
    0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75, 0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3,
    0x29, 0xe3, 0x2f, 0x84, 0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58,
    0xcf, 0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8, 0x51, 0xa3,
    0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2, 0xcd, 0x0c, 0x13, 0xec, 0x5f,
    0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73, 0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88,
    0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb, 0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac,
    0x62, 0x91, 0x95, 0xe4, 0x79, 0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a,
    0xae, 0x08, 0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a, 0x70,
    0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e, 0xe1, 0xf8, 0x98, 0x11,
    0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf, 0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42,
    0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16};

static uint8_t xtime(uint8_t x) { return (uint8_t)((x << 1) ^ ((x >> 7) * 0x1b)); }

void sigma_aes_expand_key(const void *key16, sigma_aes_key *out) {
    static const uint8_t rcon[10] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36};
    uint8_t *w = &out->round_keys[0][0];
    memcpy(w, key16, 16);
    for (int i = 4; i < 44; i++) {
        uint8_t t[4];
        memcpy(t, w + 4 * (i - 1), 4);
        if (i % 4 == 0) {
            uint8_t first = t[0];
            t[0] = (uint8_t)(sbox[t[1]] ^ rcon[i / 4 - 1]);
            t[1] = sbox[t[2]];
            t[2] = sbox[t[3]];
            t[3] = sbox[first];
        }
        for (int j = 0; j < 4; j++) w[4 * i + j] = (uint8_t)(w[4 * (i - 4) + j] ^ t[j]);
    }
}

static void portable_encrypt_block(const sigma_aes_key *key, const uint8_t *in, uint8_t *out) {
    uint8_t s[16];
    for (int i = 0; i < 16; i++) s[i] = (uint8_t)(in[i] ^ key->round_keys[0][i]);
    for (int round = 1; round <= 10; round++) {
        uint8_t t[16];
        // SubBytes and ShiftRows (state is column-major: byte 4c + r is row r, column c).
        for (int c = 0; c < 4; c++)
            for (int r = 0; r < 4; r++) t[4 * c + r] = sbox[s[4 * ((c + r) & 3) + r]];
        if (round < 10) {
            for (int c = 0; c < 4; c++) {
                uint8_t *col = t + 4 * c;
                uint8_t a0 = col[0], a1 = col[1], a2 = col[2], a3 = col[3], all = (uint8_t)(a0 ^ a1 ^ a2 ^ a3);
                col[0] = (uint8_t)(a0 ^ all ^ xtime((uint8_t)(a0 ^ a1)));
                col[1] = (uint8_t)(a1 ^ all ^ xtime((uint8_t)(a1 ^ a2)));
                col[2] = (uint8_t)(a2 ^ all ^ xtime((uint8_t)(a2 ^ a3)));
                col[3] = (uint8_t)(a3 ^ all ^ xtime((uint8_t)(a3 ^ a0)));
            }
        }
        for (int i = 0; i < 16; i++) s[i] = (uint8_t)(t[i] ^ key->round_keys[round][i]);
    }
    memcpy(out, s, 16);
}

static void portable_ecb(const sigma_aes_key *key, const uint8_t *in, uint8_t *out, size_t count) {
    for (size_t i = 0; i < count; i++) portable_encrypt_block(key, in + 16 * i, out + 16 * i);
}

// ---------------------------------------------------------------------------------------------------------
// x86 backends.

#ifdef SIGMA_X86
#define TARGET_AESNI __attribute__((target("aes,sse4.1")))
#define TARGET_VAES256 __attribute__((target("aes,vaes,avx2")))
#define TARGET_VAES512 __attribute__((target("aes,vaes,avx512f,avx512bw")))

TARGET_AESNI static void aesni_ecb(const sigma_aes_key *key, const uint8_t *in, uint8_t *out, size_t count) {
    __m128i rk[11];
    for (int r = 0; r < 11; r++) rk[r] = _mm_loadu_si128((const __m128i *)key->round_keys[r]);
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m128i b[8];
        for (int j = 0; j < 8; j++) b[j] = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(in + 16 * (i + j))), rk[0]);
        for (int r = 1; r < 10; r++)
            for (int j = 0; j < 8; j++) b[j] = _mm_aesenc_si128(b[j], rk[r]);
        for (int j = 0; j < 8; j++) _mm_storeu_si128((__m128i *)(out + 16 * (i + j)), _mm_aesenclast_si128(b[j], rk[10]));
    }
    for (; i < count; i++) {
        __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(in + 16 * i)), rk[0]);
        for (int r = 1; r < 10; r++) b = _mm_aesenc_si128(b, rk[r]);
        _mm_storeu_si128((__m128i *)(out + 16 * i), _mm_aesenclast_si128(b, rk[10]));
    }
}

TARGET_VAES256 static void vaes256_ecb(const sigma_aes_key *key, const uint8_t *in, uint8_t *out, size_t count) {
    __m256i rk[11];
    for (int r = 0; r < 11; r++)
        rk[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)key->round_keys[r]));
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256i b[8];
        for (int j = 0; j < 8; j++)
            b[j] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(in + 16 * (i + 2 * j))), rk[0]);
        for (int r = 1; r < 10; r++)
            for (int j = 0; j < 8; j++) b[j] = _mm256_aesenc_epi128(b[j], rk[r]);
        for (int j = 0; j < 8; j++)
            _mm256_storeu_si256((__m256i *)(out + 16 * (i + 2 * j)), _mm256_aesenclast_epi128(b[j], rk[10]));
    }
    if (i < count) aesni_ecb(key, in + 16 * i, out + 16 * i, count - i);
}

TARGET_VAES512 static void vaes512_ecb(const sigma_aes_key *key, const uint8_t *in, uint8_t *out, size_t count) {
    __m512i rk[11];
    for (int r = 0; r < 11; r++)
        rk[r] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)key->round_keys[r]));
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512i b[4];
        for (int j = 0; j < 4; j++)
            b[j] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(in + 16 * (i + 4 * j))), rk[0]);
        for (int r = 1; r < 10; r++)
            for (int j = 0; j < 4; j++) b[j] = _mm512_aesenc_epi128(b[j], rk[r]);
        for (int j = 0; j < 4; j++)
            _mm512_storeu_si512((void *)(out + 16 * (i + 4 * j)), _mm512_aesenclast_epi128(b[j], rk[10]));
    }
    if (i < count) aesni_ecb(key, in + 16 * i, out + 16 * i, count - i);
}

static int cpu_has(unsigned leaf, unsigned subleaf, int reg, unsigned bit) {
    unsigned r[4];
    if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3])) return 0;
    return (int)((r[reg] >> bit) & 1u);
}

// The OS must save the wide registers too (XCR0), or using them faults.
static int os_saves(uint64_t mask) {
    if (!cpu_has(1, 0, 2, 27)) return 0;  // OSXSAVE
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((((uint64_t)hi << 32) | lo) & mask) == mask;
}
#endif

static int detect_backend(sigma_aes_backend backend) {
    switch (backend) {
    case SIGMA_AES_PORTABLE:
        return 1;
#ifdef SIGMA_X86
    case SIGMA_AES_AESNI:
        return cpu_has(1, 0, 2, 25) && cpu_has(1, 0, 2, 19);  // AES, SSE4.1
    case SIGMA_AES_VAES256:
        return detect_backend(SIGMA_AES_AESNI) && cpu_has(7, 0, 2, 9) && cpu_has(7, 0, 1, 5) &&
               os_saves(0x6);  // VAES, AVX2, XMM+YMM state
    case SIGMA_AES_VAES512:
        // AVX-512F, AVX-512BW, and for the DPF pass BMI2 and AVX-512 VPOPCNTDQ (every VAES-512 CPU has them);
        // the opmask and ZMM state saved.
        return detect_backend(SIGMA_AES_VAES256) && cpu_has(7, 0, 1, 16) && cpu_has(7, 0, 1, 30) &&
               cpu_has(7, 0, 1, 8) && cpu_has(7, 0, 2, 14) && os_saves(0xe6);
#endif
    default:
        return 0;
    }
}

// CPUID traps to the hypervisor in a virtual machine (microseconds per call), so detection runs once per
// backend and is cached: -1 unknown, 0 no, 1 yes. Racing threads compute and store the same value.
static int support_cache[4] = {-1, -1, -1, -1};

int sigma_aes_backend_supported(sigma_aes_backend backend) {
    if ((unsigned)backend > SIGMA_AES_PORTABLE) return 0;
    int known = __atomic_load_n(&support_cache[backend], __ATOMIC_RELAXED);
    if (known < 0) {
        known = detect_backend(backend);
        __atomic_store_n(&support_cache[backend], known, __ATOMIC_RELAXED);
    }
    return known;
}

sigma_aes_backend sigma_aes_best_backend(void) {
    for (int b = SIGMA_AES_VAES512; b < SIGMA_AES_PORTABLE; b++)
        if (sigma_aes_backend_supported((sigma_aes_backend)b)) return (sigma_aes_backend)b;
    return SIGMA_AES_PORTABLE;
}

// Falls back to the best supported backend, so a request for an unsupported one never faults.
static sigma_aes_backend usable(sigma_aes_backend backend) {
    return sigma_aes_backend_supported(backend) ? backend : sigma_aes_best_backend();
}

void sigma_internal_ecb(sigma_aes_backend backend, const sigma_aes_key *key, const uint8_t *in, uint8_t *out,
                        size_t count) {
    switch (usable(backend)) {
#ifdef SIGMA_X86
    case SIGMA_AES_VAES512:
        vaes512_ecb(key, in, out, count);
        return;
    case SIGMA_AES_VAES256:
        vaes256_ecb(key, in, out, count);
        return;
    case SIGMA_AES_AESNI:
        aesni_ecb(key, in, out, count);
        return;
#endif
    default:
        portable_ecb(key, in, out, count);
    }
}

void sigma_aes_ecb(sigma_aes_backend backend, const sigma_aes_key *key, const void *in, void *out, size_t count) {
    sigma_internal_ecb(backend, key, (const uint8_t *)in, (uint8_t *)out, count);
}
