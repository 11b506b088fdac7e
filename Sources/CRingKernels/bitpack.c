// Unpacking n-bit values from the wire format of BitPacking (value i at bits [i·n, (i+1)·n) of a little-endian
// bit stream). Eight values always span exactly n bytes, so each group of eight starts on a byte boundary and
// value j of a group sits at the same byte offset and shift in every group: the offsets are computed once, and
// each value is one unaligned 8-byte load, a shift and a mask (plus a ninth byte for widths past 57 bits). The
// Swift loop this replaces divided per value and checked bounds (17 % of a LayerNorm's online CPU under perf).
#include "CRingKernels.h"

#include <string.h>

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;  // little-endian hosts only (x86-64, arm64)
}

// Value `index`, byte by byte (the last values of a buffer, where an 8-byte load would overrun it).
static uint64_t value_at(const uint8_t *bytes, size_t index, unsigned bits) {
    size_t bit = index * bits;
    uint64_t v = 0;
    for (unsigned taken = 0; taken < bits;) {
        size_t byte = bit / 8;
        unsigned offset = (unsigned)(bit % 8), available = 8 - offset < bits - taken ? 8 - offset : bits - taken;
        v |= (uint64_t)((bytes[byte] >> offset) & ((1u << available) - 1)) << taken;
        taken += available;
        bit += available;
    }
    return v;
}

// Value `index` anywhere in a buffer of `byte_count` bytes: one 8-byte load (and a ninth byte past 57 bits) where
// it stays inside, byte by byte at the end.
static inline uint64_t value_in(const uint8_t *bytes, size_t byte_count, size_t index, unsigned bits,
                                uint64_t mask) {
    size_t bit = index * bits, byte = bit / 8;
    if (byte + 9 > byte_count) return value_at(bytes, index, bits);
    unsigned shift = (unsigned)(bit % 8);
    uint64_t v = load64(bytes + byte) >> shift;
    if (shift + bits > 64) v |= (uint64_t)bytes[byte + 8] << (64 - shift);
    return v & mask;
}

void sigma_unpack(const uint8_t *bytes, size_t byte_count, size_t count, unsigned bits, uint64_t *out) {
    const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    if (bits == 1) {  // single bits (the masked bits of comparisons, the most common message): eight a byte
        for (size_t i = 0; i < count; i++) out[i] = (bytes[i / 8] >> (i % 8)) & 1;
        return;
    }
    unsigned offset[8], shift[8];
    for (unsigned j = 0; j < 8; j++) offset[j] = j * bits / 8, shift[j] = j * bits % 8;
    // Groups whose every load (up to 9 bytes from the group's last offset) stays inside the buffer.
    size_t groups = byte_count >= (size_t)bits + 9 ? (byte_count - 9 - offset[7]) / bits + 1 : 0;
    if (groups > count / 8) groups = count / 8;
    if (bits <= 57) {
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *base = bytes + g * bits;
            for (unsigned j = 0; j < 8; j++) out[8 * g + j] = (load64(base + offset[j]) >> shift[j]) & mask;
        }
    } else {
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *base = bytes + g * bits;
            for (unsigned j = 0; j < 8; j++) {
                uint64_t v = load64(base + offset[j]) >> shift[j];
                if (shift[j]) v |= (uint64_t)base[offset[j] + 8] << (64 - shift[j]);
                out[8 * g + j] = v & mask;
            }
        }
    }
    for (size_t i = 8 * groups; i < count; i++) out[i] = value_in(bytes, byte_count, i, bits, mask);
}

void sigma_unpack_chosen(const uint8_t *bytes, size_t byte_count, size_t count, unsigned candidates, unsigned bits,
                         const uint8_t *choices, uint64_t *out) {
    const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    for (size_t i = 0; i < count; i++) out[i] = value_in(bytes, byte_count, i * candidates + choices[i], bits, mask);
}

void sigma_pack(const uint64_t *values, size_t count, unsigned bits, uint8_t *bytes, size_t byte_count) {
    // A 64-bit accumulator written out a whole word at a time: read-modify-writes of overlapping words at each
    // value's offset would make every load wait on the previous value's store (store forwarding fails on partial
    // overlaps), which measured 8 % of a BERT-base party's online CPU.
    const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    uint64_t accumulator = 0;
    unsigned filled = 0;
    size_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t v = values[i] & mask;
        accumulator |= v << filled;
        if (filled + bits >= 64) {
            memcpy(bytes + offset, &accumulator, 8);  // little-endian hosts only
            offset += 8;
            accumulator = filled == 0 ? 0 : v >> (64 - filled);
            filled = filled + bits - 64;
        } else {
            filled += bits;
        }
    }
    if (offset < byte_count) memcpy(bytes + offset, &accumulator, byte_count - offset);
}
