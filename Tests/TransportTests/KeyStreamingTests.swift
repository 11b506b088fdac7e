import FSS
import Foundation
import Protocols
import Testing

@testable import Transport

@Suite("Keys streamed by the dealer", .serialized)
struct KeyStreamingTests {
    /// The dealer's side in a thread of its own: gates of deterministic words on the online stream (and a few on the
    /// preprocessing stream), then the end.
    static func dealer(
        port: UInt16, security: ChannelSecurity, gates: Int, elements: Int, preprocessing: Bool, abort: Bool = false
    ) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        Thread {
            defer { done.signal() }
            guard
                let channel = try? TCPChannel.connect(
                    port: port, handshake: hello(.client, session: [UInt8](repeating: 0, count: 16)),
                    security: security, timeout: 10),
                let sender = try? KeyStreamSender(
                    channel: channel, sessionID: session, modelFingerprint: fingerprint, preprocessing: preprocessing)
            else { return }
            let online = KeyStreamWriter(sink: sender.online)
            let later = sender.preprocessing.map { KeyStreamWriter(sink: $0) }
            for gate in 0..<gates {
                try? online.beginGate(GateTag("TEST"), count: elements)
                try? online.words(Self.words(gate, elements), bits: 61)
                if gate % 4 == 0 { try? later?.words(Self.words(gate + 1000, 7, bits: 33), bits: 33) }
                if abort && gate == gates / 2 {
                    channel.close()
                    return
                }
            }
            try? sender.finish()
        }.start()
        return done
    }

    static func words(_ gate: Int, _ count: Int, bits: Int = 61) -> [UInt64] {
        (0..<count).map { (UInt64($0) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(gate)) >> UInt64(64 - bits) }
    }

    @Test(
        "a party reads exactly what the dealer wrote; without a preprocessing stream it holds at most its window ahead",
        arguments: securities, [false, true])
    func streamed(security: (String, ChannelSecurity), preprocessing: Bool) throws {
        let listener = try TCPListener(port: 0)
        let (gates, elements) = (48, 40_000)  // 48 gates of 305 kB: 14.6 MB against a 2 MiB window
        let done = Self.dealer(
            port: listener.port, security: security.1, gates: gates, elements: elements, preprocessing: preprocessing)
        let channel = try listener.accept(
            handshake: hello(.server, session: [UInt8](repeating: 0, count: 16)), security: security.1, timeout: 10)
        let receiver = try KeyStreamReceiver(channel: channel, window: 2 << 20)
        #expect(receiver.sessionID == session && receiver.modelFingerprint == fingerprint)
        // The preprocessing keys are complete only when the dealer is, and the party reads them first
        // (`PartyContext.preprocess`): until then every online byte is held.
        #expect(try receiver.waitUntilReady() == preprocessing)
        let held = receiver.online.bytesReceived
        if !preprocessing {
            #expect(held >= 2 << 20 && held < 2 << 20 + 2 * ChannelKeySink.frameSize, "\(held) bytes held")
        }
        if let stream = receiver.preprocessing {
            let early = stream.reader()
            for gate in stride(from: 0, to: gates, by: 4) {
                #expect(try early.words(7, bits: 33) == Self.words(gate + 1000, 7, bits: 33))
            }
        }
        let reader = receiver.online.reader()
        for gate in 0..<gates {
            try reader.expectGate(GateTag("TEST"), count: elements)
            #expect(try reader.words(elements, bits: 61) == Self.words(gate, elements), "gate \(gate)")
        }
        #expect(throws: KeyStreamError.exhausted(needed: 1, available: 0)) { try reader.bits(8) }
        done.wait()
    }

    @Test("a stream that breaks off is an error for the reader, not a wait")
    func brokenOff() throws {
        let listener = try TCPListener(port: 0)
        let done = Self.dealer(
            port: listener.port, security: .insecure, gates: 8, elements: 10_000, preprocessing: false, abort: true)
        let channel = try listener.accept(
            handshake: hello(.server, session: [UInt8](repeating: 0, count: 16)), security: .insecure, timeout: 10)
        let receiver = try KeyStreamReceiver(channel: channel, window: 1 << 30)
        #expect(receiver.preprocessing == nil)
        #expect(throws: KeyFileError.self) { try receiver.waitUntilReady() }
        let reader = receiver.online.reader()
        #expect(throws: KeyStreamError.self) {
            for _ in 0..<8 {
                try reader.expectGate(GateTag("TEST"), count: 10_000)
                _ = try reader.words(10_000, bits: 61)
            }
        }
        done.wait()
    }
}
