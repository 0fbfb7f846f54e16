import ParleyCore

/// What a node lets through from the network, and how much it may say back (docs/PROTOCOL.md §17.2): datagrams sent
/// too long ago or too far ahead are stale, a nonce seen before from a sender is a replay, and an address that has not
/// shown it receives what is sent to it (by echoing a nonce this node sent there) gets at most three bytes back per
/// byte it sent, so a forged source address cannot turn a node into an amplifier.
///
/// A value that performs nothing: the driver asks it, in order, ``isFresh(sentMs:nowMs:)``, then (after the membership
/// and signature checks) ``admit(_:from:nowMs:)``, and before each send ``spend(_:to:)``.
public struct PeerGate: Sendable {
    public struct Settings: Sendable, Equatable {
        /// How far a datagram's time may lie behind or ahead of the receiver's clock (ms).
        public var windowMs: Int64 = 120_000
        /// The most nonces remembered; past it, the oldest go, and nothing older than them is accepted.
        public var maxNonces = 100_000
        /// Bytes an unvalidated address may receive per byte it sent.
        public var amplification = 3
        /// Addresses whose byte counts are kept; past it, the least recently heard go.
        public var maxAddresses = 4_096

        public init() {}
    }

    public let settings: Settings
    /// Nonces seen, with when their datagram was sent; `floorMs` rises as old ones are dropped.
    private var nonces: [NonceKey: Int64] = [:]
    private var nonceOrder: [(key: NonceKey, sentMs: Int64)] = []
    private var nonceStart = 0
    private var floorMs: Int64 = .min
    private var addresses: [String: AddressState] = [:]
    private var addressTick: UInt64 = 0

    private struct NonceKey: Hashable {
        var sender: [UInt8]
        var nonce: [UInt8]
    }

    private struct AddressState {
        var received = 0
        var sent = 0
        var isValidated = false
        /// Nonces of datagrams sent there, newest last (the echo it may send back).
        var sentNonces: [[UInt8]] = []
        var lastHeard: UInt64 = 0
    }

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Whether a datagram sent at `sentMs` is within the window of `nowMs`: the first check, before any other work.
    public func isFresh(sentMs: UInt64, nowMs: Int64) -> Bool {
        guard sentMs <= UInt64(Int64.max) else { return false }
        let sent = Int64(sentMs)
        return sent >= nowMs - settings.windowMs && sent <= nowMs + settings.windowMs && sent > floorMs
    }

    /// Admits a verified datagram from `address`: refuses a replay (``PeerDatagramError/Code/replayed``) or a stale
    /// one, remembers its nonce, counts its bytes, and validates the address when it echoes a nonce sent there.
    public mutating func admit(_ datagram: PeerDatagram, bytes: Int, from address: String, nowMs: Int64) throws(PeerDatagramError) {
        guard isFresh(sentMs: datagram.sentMs, nowMs: nowMs) else {
            throw PeerDatagramError(.stale, "sent at \(datagram.sentMs), outside \(settings.windowMs / 1000) s of this node's clock")
        }
        let key = NonceKey(sender: datagram.senderKey, nonce: datagram.nonce)
        guard nonces[key] == nil else { throw PeerDatagramError(.replayed, "its nonce was seen before from this device") }
        let sentMs = Int64(datagram.sentMs)
        nonces[key] = sentMs
        nonceOrder.append((key, sentMs))
        forgetOldNonces(nowMs: nowMs)
        addressTick += 1
        var state = addresses[address] ?? AddressState()
        state.received += bytes
        state.lastHeard = addressTick
        if !state.isValidated, datagram.echo.contains(where: { $0 != 0 }), state.sentNonces.contains(datagram.echo) {
            state.isValidated = true
            state.sentNonces = []
        }
        addresses[address] = state
        if addresses.count > settings.maxAddresses { forgetQuietestAddress() }
    }

    /// Whether `bytes` more may go to `address` now; when they may, counts them and remembers `nonce` as one the
    /// address may echo. With `regardless` (a probe, or an address this node chose to reach), they always may.
    public mutating func spend(_ bytes: Int, to address: String, nonce: [UInt8], regardless: Bool = false) -> Bool {
        var state = addresses[address] ?? AddressState()
        if regardless, !state.isValidated {
            state.sentNonces.append(nonce)
            if state.sentNonces.count > 16 { state.sentNonces.removeFirst() }
        } else if !state.isValidated {
            // A first datagram to an address never heard from (a session this node starts) is a probe's size at most.
            let allowance = max(state.received * settings.amplification, PeerDatagram.maxBytes)
            guard state.sent + bytes <= allowance else { return false }
            state.sentNonces.append(nonce)
            if state.sentNonces.count > 16 { state.sentNonces.removeFirst() }
        }
        state.sent += bytes
        addresses[address] = state
        if addresses.count > settings.maxAddresses { forgetQuietestAddress() }
        return true
    }

    /// Whether this sender's nonce was admitted before: a replay, refused without checking its signature.
    public func hasSeen(_ datagram: PeerDatagram) -> Bool { nonces[NonceKey(sender: datagram.senderKey, nonce: datagram.nonce)] != nil }

    /// Whether `address` has echoed a nonce sent to it.
    public func isValidated(_ address: String) -> Bool { addresses[address]?.isValidated ?? false }

    private mutating func forgetOldNonces(nowMs: Int64) {
        while nonceStart < nonceOrder.count {
            let oldest = nonceOrder[nonceStart]
            let isExpired = oldest.sentMs < nowMs - settings.windowMs
            guard isExpired || nonces.count > settings.maxNonces else { break }
            nonces[oldest.key] = nil
            if !isExpired { floorMs = max(floorMs, oldest.sentMs) }
            nonceStart += 1
        }
        if nonceStart > 1_024, nonceStart * 2 > nonceOrder.count {
            nonceOrder.removeFirst(nonceStart)
            nonceStart = 0
        }
    }

    private mutating func forgetQuietestAddress() {
        if let quietest = addresses.min(by: { $0.value.lastHeard < $1.value.lastHeard })?.key { addresses[quietest] = nil }
    }
}
