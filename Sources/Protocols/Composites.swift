import Ring

// Gates composed of other gates: written once against `RingBackend`, so their keygen and evaluation cannot
// drift apart.

extension Dealer: RingBackend {}
extension PartyContext: RingBackend {}
