/// A 128-bit block: an AES input or output, a DPF seed, or a 128-bit DPF leaf.
///
/// Memory layout matches the C kernels: `lo` holds bytes 0...7 and `hi` bytes 8...15, little-endian, so an
/// array of blocks can be handed to C as raw bytes. Bit `i` of a block is bit `i % 64` of `lo` (i < 64) or of
/// `hi`. In a DPF seed, bit 0 is the control bit t.
@frozen
public struct Block: Hashable, Sendable {
    public var lo: UInt64
    public var hi: UInt64

    @inlinable
    public init(lo: UInt64, hi: UInt64) {
        self.lo = lo
        self.hi = hi
    }

    public static let zero = Block(lo: 0, hi: 0)

    /// The control bit t (bit 0).
    @inlinable
    public var controlBit: UInt8 { UInt8(truncatingIfNeeded: lo & 1) }

    /// Bit `index` (0 ..< 128).
    @inlinable
    public func bit(_ index: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (index < 64 ? lo >> UInt64(index) : hi >> UInt64(index - 64)) & 1)
    }

    /// The block with only bit `index` set: e_index.
    @inlinable
    public static func unit(_ index: Int) -> Block {
        index < 64 ? Block(lo: 1 << UInt64(index), hi: 0) : Block(lo: 0, hi: 1 << UInt64(index - 64))
    }

    /// The parity (XOR) of bits 0 ... `index`, both ends included.
    @inlinable
    public func parityThrough(_ index: Int) -> UInt8 {
        let lowMask: UInt64 = index >= 63 ? ~0 : (2 << UInt64(index)) &- 1
        let highMask: UInt64 = index < 64 ? 0 : (index == 127 ? ~0 : (2 << UInt64(index - 64)) &- 1)
        return UInt8(truncatingIfNeeded: ((lo & lowMask).nonzeroBitCount ^ (hi & highMask).nonzeroBitCount) & 1)
    }

    /// The parity of all 128 bits.
    @inlinable
    public var parity: UInt8 { UInt8(truncatingIfNeeded: (lo.nonzeroBitCount ^ hi.nonzeroBitCount) & 1) }

    @inlinable
    public static func ^ (a: Block, b: Block) -> Block { Block(lo: a.lo ^ b.lo, hi: a.hi ^ b.hi) }

    @inlinable
    public static func ^= (a: inout Block, b: Block) { a = a ^ b }

    /// `self` when `bit` is 1, zero when it is 0, without a branch.
    @inlinable
    public func masked(by bit: UInt8) -> Block {
        let mask = 0 &- UInt64(bit & 1)
        return Block(lo: lo & mask, hi: hi & mask)
    }

    /// The block with bit 0 replaced by `bit`.
    @inlinable
    public func withControlBit(_ bit: UInt8) -> Block { Block(lo: (lo & ~1) | UInt64(bit & 1), hi: hi) }
}
