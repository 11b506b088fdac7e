import FSS
import Ring

// Inputs and outputs. A private input x of party P enters as x̂ = x + r: the dealer gives the mask r to P alone,
// and P sends x̂ to the other party (one message). The final output reaches the client alone: both parties hold
// ŷ, and the dealer gives the client the mask r_y.

private let clientInputTag = GateTag("INPC")
private let serverInputTag = GateTag("INPS")
private let revealTag = GateTag("OUTC")

extension Cleartext {
    public func inputFromClient(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        guard let values else { throw ProtocolError.missingInput("the client's input") }
        return RingTensor(ring: ring, shape: shape, values: values)
    }

    public func inputFromServer(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        guard let values else { throw ProtocolError.missingInput("the server's input") }
        return RingTensor(ring: ring, shape: shape, values: values)
    }

    public func addConstant(_ x: RingTensor, _ c: [UInt64]) -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: zip(x.values, c).map { $0 &+ $1 })
    }

    public func revealToClient(_ x: RingTensor) throws -> [UInt64]? { x.values }
}

extension Dealer {
    func privateInput(owner: Party, tag: GateTag, shape: [Int], ring: Ring) throws -> RingTensor {
        let count = shape.reduce(1, *)
        try beginGate(tag, count: count)
        let mask = try writer(owner).uniformWords(count, bits: ring.bitwidth, random: &random)
        return RingTensor(ring: ring, shape: shape, values: mask)
    }

    public func inputFromClient(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        try privateInput(owner: .p1, tag: clientInputTag, shape: shape, ring: ring)
    }

    public func inputFromServer(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        try privateInput(owner: .p0, tag: serverInputTag, shape: shape, ring: ring)
    }

    /// A public constant moves the value, not the mask.
    public func addConstant(_ x: RingTensor, _ c: [UInt64]) -> RingTensor { x }

    public func revealToClient(_ x: RingTensor) throws -> [UInt64]? {
        try beginGate(revealTag, count: x.count, seeding: false)  // the client gets the output's masks themselves
        try p1.words(x.values, bits: x.ring.bitwidth)
        return nil
    }
}

extension PartyContext {
    func privateInput(owner: Party, tag: GateTag, values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        let count = shape.reduce(1, *)
        try keys.expectGate(tag, count: count)
        if party == owner {
            guard let values, values.count == count else {
                throw ProtocolError.missingInput(
                    "\(count) input values of \(owner == .p1 ? "the client" : "the server")")
            }
            let mask = try keys.words(count, bits: ring.bitwidth)
            let masked = zip(values, mask).map { ($0 &+ $1) & ring.mask }
            try channel.send(BitPacking.pack(masked, bits: ring.bitwidth))
            return RingTensor(ring: ring, shape: shape, values: masked)
        }
        let message = try channel.receive()
        guard let masked = BitPacking.unpack(message[...], count: count, bits: ring.bitwidth) else {
            throw ProtocolError.malformedMessage(
                expected: BitPacking.byteCount(count: count, bits: ring.bitwidth), received: message.count)
        }
        return RingTensor(ring: ring, shape: shape, values: masked)
    }

    public func inputFromClient(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        try privateInput(owner: .p1, tag: clientInputTag, values: values, shape: shape, ring: ring)
    }

    public func inputFromServer(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        try privateInput(owner: .p0, tag: serverInputTag, values: values, shape: shape, ring: ring)
    }

    public func addConstant(_ x: RingTensor, _ c: [UInt64]) -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: zip(x.values, c).map { $0 &+ $1 })
    }

    /// The client unmasks with r_y from its keys; the server learns nothing and sends nothing.
    public func revealToClient(_ x: RingTensor) throws -> [UInt64]? {
        try keys.expectGate(revealTag, count: x.count)
        guard party == .p1 else { return nil }
        let mask = try keys.words(x.count, bits: x.ring.bitwidth)
        return zip(x.values, mask).map { ($0 &- $1) & x.ring.mask }
    }
}
