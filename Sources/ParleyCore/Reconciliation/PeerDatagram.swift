import Crypto

/// One UDP datagram between peers (docs/PROTOCOL.md §17.2): a header naming the room, the sending device and when and
/// why it was sent, a body, and the device's Ed25519 signature over both. In a pre-shared-key room the body is sealed
/// with AES-256-GCM under a key derived from the room's secret, the header authenticated with it.
///
/// Reading is split so that a receiver does no work for a stranger: ``init(parsing:)`` checks only the form,
/// the receiver then checks the time, that the sender is a member device, the signature (``verify()``) and replay,
/// and only then opens the body (``openBody(with:)``).
public struct PeerDatagram: Equatable, Sendable {
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// A reconciliation message (§17.3).
        case reconcile = 1
        /// A Bloom digest (§17.4).
        case bloom = 2
        /// A fragment of a batch of events (§17.5).
        case events = 3
        /// An empty datagram whose only point is its nonce: it asks the receiver to echo it (address validation).
        case probe = 4
        /// A want for pieces of a block (§17.6).
        case blockWant = 5
        /// A piece of a block (§17.6).
        case blockPiece = 6
        /// The sender does not give the block a want named (§17.6).
        case blockAbsent = 7
    }

    /// The signing input's domain-separation prefix: `parley.peer.v1` and LF.
    public static let signaturePrefix: [UInt8] = Array("parley.peer.v1\n".utf8)
    /// The first four bytes of every datagram.
    public static let magic: [UInt8] = Array("PRL1".utf8)
    /// The largest datagram a device sends or accepts: what fits an IPv6 path's minimum MTU (1,280) after the IPv6 and
    /// UDP headers.
    public static let maxBytes = 1_232
    public static let nonceBytes = 12
    static let tagBytes = 16
    static let signatureBytes = 64
    static let flagSealed: UInt8 = 1

    public var kind: Kind
    public var roomID: String
    /// The sending device's Ed25519 public key (32 bytes).
    public var senderKey: [UInt8]
    /// The sender's clock when it sent the datagram, Unix ms.
    public var sentMs: UInt64
    /// 12 random bytes, never reused by a sender: the replay check's key, and the AEAD nonce of a sealed body.
    public var nonce: [UInt8]
    /// The nonce of the last datagram the sender received from this receiver, or 12 zero bytes: proof that the sender
    /// receives at the address it sends from.
    public var echo: [UInt8]
    /// The body as carried: plaintext, or ciphertext and tag when ``isSealed``.
    public var body: [UInt8]
    public var isSealed: Bool
    public var signature: [UInt8]

    /// The header's bytes: magic, kind, flags, room id (length byte, then its bytes; at most 64, §3.1), sender key, sent ms, nonce, echo.
    public var header: [UInt8] {
        var out = Self.magic
        out += [kind.rawValue, isSealed ? Self.flagSealed : 0, UInt8(roomID.utf8.count)]
        out += Array(roomID.utf8)
        out += senderKey
        out += bigEndian(sentMs)
        out += nonce
        out += echo
        return out
    }

    /// What the signature covers: the prefix, the header, the body as carried.
    public var signingInput: [UInt8] { Self.signaturePrefix + header + body }

    public var encoded: [UInt8] { header + body + signature }

    /// The body bytes available to a datagram of `kind` in `roomID`, sealed or not.
    public static func bodyBudget(roomID: String, sealed: Bool) -> Int {
        maxBytes - (magic.count + 3 + roomID.utf8.count + 32 + 8 + 2 * nonceBytes + signatureBytes) - (sealed ? tagBytes : 0)
    }

    /// Makes a datagram: seals `body` when `key` is given, then asks `sign` for the signature over the signing input.
    public init(
        kind: Kind, roomID: String, senderKey: [UInt8], sentMs: UInt64, nonce: [UInt8], echo: [UInt8]?, body: [UInt8], sealingWith key: SymmetricKey?,
        sign: ([UInt8]) throws -> [UInt8]
    ) rethrows {
        precondition(nonce.count == Self.nonceBytes && senderKey.count == 32 && Identifier.problem(with: roomID, kind: .room) == nil)
        self.kind = kind
        self.roomID = roomID
        self.senderKey = senderKey
        self.sentMs = sentMs
        self.nonce = nonce
        self.echo = echo ?? Array(repeating: 0, count: Self.nonceBytes)
        isSealed = key != nil
        self.body = body
        signature = []
        if let key {
            // The nonce is random and the header is authenticated as associated data.
            let box = try! AES.GCM.seal(body, using: key, nonce: AES.GCM.Nonce(data: nonce), authenticating: header)
            self.body = Array(box.ciphertext) + Array(box.tag)
        }
        signature = try sign(signingInput)
    }

    /// Reads a datagram's form: size, magic, a known kind, flags, a room id of valid form, lengths. Checks nothing
    /// cryptographic.
    /// - Throws: ``PeerDatagramError`` naming the fault.
    public init(parsing bytes: [UInt8]) throws(PeerDatagramError) {
        guard bytes.count <= Self.maxBytes else { throw .init(.oversized, "a datagram of \(bytes.count) bytes exceeds \(Self.maxBytes)") }
        guard bytes.count >= Self.magic.count + 3, Array(bytes[0..<4]) == Self.magic else { throw .init(.malformed, "not a Parley peer datagram") }
        guard let kind = Kind(rawValue: bytes[4]) else { throw .init(.malformed, "unknown datagram kind \(bytes[4])") }
        guard bytes[5] & ~Self.flagSealed == 0 else { throw .init(.malformed, "unknown datagram flags") }
        let roomLength = Int(bytes[6])
        let fixed = 7 + roomLength + 32 + 8 + 2 * Self.nonceBytes
        guard roomLength > 0, bytes.count >= fixed + Self.signatureBytes else { throw .init(.malformed, "the datagram is truncated") }
        guard let roomID = String(validating: bytes[7..<7 + roomLength], as: UTF8.self), Identifier.problem(with: roomID, kind: .room) == nil else {
            throw .init(.malformed, "the datagram's room id is not a room id")
        }
        self.kind = kind
        self.roomID = roomID
        var offset = 7 + roomLength
        senderKey = Array(bytes[offset..<offset + 32])
        offset += 32
        sentMs = bytes[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) }
        offset += 8
        nonce = Array(bytes[offset..<offset + Self.nonceBytes])
        offset += Self.nonceBytes
        echo = Array(bytes[offset..<offset + Self.nonceBytes])
        offset += Self.nonceBytes
        isSealed = bytes[5] & Self.flagSealed != 0
        body = Array(bytes[offset..<bytes.count - Self.signatureBytes])
        signature = Array(bytes[(bytes.count - Self.signatureBytes)...])
        guard !isSealed || body.count >= Self.tagBytes else { throw .init(.malformed, "the sealed body is shorter than its tag") }
    }

    /// Checks the signature strictly (§4.4) against ``senderKey``.
    public func verify() throws(PeerDatagramError) {
        do {
            try StrictEd25519.verify(signature: signature, message: signingInput, publicKey: senderKey)
        } catch {
            throw .init(.badSignature, "the datagram's signature does not verify: \(error)")
        }
    }

    /// The body as plaintext: opened under `key` when sealed (a sealed body without a key, or a plain one with a key,
    /// is refused: a room is either pre-shared-key or not).
    public func openBody(with key: SymmetricKey?) throws(PeerDatagramError) -> [UInt8] {
        switch (isSealed, key) {
        case (false, nil): return body
        case (true, let key?):
            do {
                let box = try AES.GCM.SealedBox(
                    nonce: AES.GCM.Nonce(data: nonce), ciphertext: body.dropLast(Self.tagBytes), tag: body.suffix(Self.tagBytes))
                return Array(try AES.GCM.open(box, using: key, authenticating: header))
            } catch {
                throw .init(.badSeal, "the datagram's body does not open under the room's key")
            }
        case (true, nil): throw .init(.badSeal, "a sealed datagram in a room without a pre-shared key")
        case (false, _?): throw .init(.badSeal, "a datagram in clear in a pre-shared-key room")
        }
    }

    /// The key sealing datagram bodies in a pre-shared-key room: HKDF-SHA256 of the room's key (§14.6) with salt the
    /// room id and info `parley.peer.datagram.v1`, 32 bytes.
    public static func datagramKey(roomKey: SymmetricKey, roomID: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: roomKey, salt: Array(roomID.utf8), info: Array("parley.peer.datagram.v1".utf8), outputByteCount: 32)
    }
}

/// Why a datagram was dropped (§17.2): its code, for counting, and what was wrong, for a log.
public struct PeerDatagramError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case oversized, malformed
        case badSignature = "bad_signature"
        case badSeal = "bad_seal"
        /// Sent too long ago or too far ahead of the receiver's clock.
        case stale
        /// A nonce the receiver has seen from this sender.
        case replayed
        /// Signed by a key that is no member device of the room.
        case notMember = "not_member"
        /// More datagrams from one address than the receiver checks in a second.
        case rateLimited = "rate_limited"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "Dropped a peer datagram (\(code.rawValue)): \(message)." }
}
