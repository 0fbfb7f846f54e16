import Crypto

/// Why a key or signature failed strict verification. Each case names one rule of docs/PROTOCOL.md §4.
public enum SignatureFault: Error, Sendable, Equatable, CustomStringConvertible {
    case keyLength(Int)
    case keyNotCanonical
    case keySmallOrder
    /// Only from ``StrictEd25519/checkPublicKey(_:)``; verification reports an off-curve key as a mismatch.
    case keyNotOnCurve
    case signatureLength(Int)
    case rNotCanonical
    case rSmallOrder
    case sNotReduced
    case mismatch

    public var description: String {
        switch self {
        case .keyLength(let count): "public key is \(count) bytes, not 32"
        case .keyNotCanonical: "public key is not canonically encoded (y ≥ p, or x = 0 with the sign bit set)"
        case .keySmallOrder: "public key is a point of small order"
        case .keyNotOnCurve: "public key is not a point on Ed25519"
        case .signatureLength(let count): "signature is \(count) bytes, not 64"
        case .rNotCanonical: "signature R is not canonically encoded"
        case .rSmallOrder: "signature R is a point of small order"
        case .sNotReduced: "signature S is not below the group order L (malleable signature)"
        case .mismatch: "signature does not verify"
        }
    }
}

/// Ed25519 verification with the checks swift-crypto (BoringSSL) leaves out: canonical encodings of A and R,
/// neither of small order, and S < L. Signing itself is plain RFC 8032, so any conforming signer interoperates.
public enum StrictEd25519 {
    /// Canonical encodings of the eight points of order dividing 8 (the torsion subgroup).
    /// `docs/vectors/tools/generate.py` derives this list from the curve equation; the tests compare the two.
    public static let smallOrderPoints: [[UInt8]] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ].map { Hex.decode($0)! }

    /// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    static let groupOrder: [UInt8] = Hex.decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")!

    /// Checks that `key` is acceptable as a device signing key: 32 bytes, canonical, not of small order, on the
    /// curve. Member events bind only keys that pass.
    public static func checkPublicKey(_ key: [UInt8]) throws(SignatureFault) {
        guard key.count == 32 else { throw .keyLength(key.count) }
        guard isCanonicalPoint(key[...]) else { throw .keyNotCanonical }
        guard !isSmallOrder(key[...]) else { throw .keySmallOrder }
        // swift-crypto's PublicKey(rawRepresentation:) takes any 32 bytes, so the curve equation is checked here.
        guard isOnCurve(key) else { throw .keyNotOnCurve }
    }

    /// Verifies `signature` over `message` under `publicKey`, strictly.
    /// - Throws: the first ``SignatureFault`` found; encoding rules are checked before the curve arithmetic.
    public static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) throws(SignatureFault) {
        guard publicKey.count == 32 else { throw .keyLength(publicKey.count) }
        guard signature.count == 64 else { throw .signatureLength(signature.count) }
        guard isCanonicalPoint(publicKey[...]) else { throw .keyNotCanonical }
        guard !isSmallOrder(publicKey[...]) else { throw .keySmallOrder }
        let r = signature[0..<32]
        guard isCanonicalPoint(r) else { throw .rNotCanonical }
        guard !isSmallOrder(r) else { throw .rSmallOrder }
        guard isReducedScalar(signature[32..<64]) else { throw .sNotReduced }
        // An off-curve key fails here as a mismatch: checking the curve first would cost a field exponentiation.
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey),
            key.isValidSignature(signature, for: message)
        else { throw .mismatch }
    }

    /// A point encoding is canonical when its y coordinate is below p = 2^255 − 19 and, for the two points with
    /// x = 0 (y = 1 and y = p − 1), the sign bit is clear.
    static func isCanonicalPoint(_ encoding: ArraySlice<UInt8>) -> Bool {
        let bytes = Array(encoding)
        let signBit = bytes[31] & 0x80
        var y = bytes
        y[31] &= 0x7F
        // y ≥ p exactly when y is one of 2^255−19 … 2^255−1: bytes ≥ 0xed, then 0xff…, then 0x7f.
        if y[31] == 0x7F && y[1..<31].allSatisfy({ $0 == 0xFF }) && y[0] >= 0xED { return false }
        if signBit != 0 {
            let isOne = y[0] == 1 && y[1...].allSatisfy { $0 == 0 }
            let isMinusOne = y[0] == 0xEC && y[1..<31].allSatisfy { $0 == 0xFF } && y[31] == 0x7F
            if isOne || isMinusOne { return false }
        }
        return true
    }

    static func isSmallOrder(_ encoding: ArraySlice<UInt8>) -> Bool {
        smallOrderPoints.contains { $0.elementsEqual(encoding) }
    }

    /// Whether the little-endian scalar is below L.
    static func isReducedScalar(_ scalar: ArraySlice<UInt8>) -> Bool {
        let bytes = Array(scalar)
        for index in stride(from: 31, through: 0, by: -1) where bytes[index] != groupOrder[index] {
            return bytes[index] < groupOrder[index]
        }
        return false
    }
}

/// X25519 public keys as Parley accepts them in member events: 32 bytes, canonical (u < p, top bit clear), and
/// not one of the low-order points whose shared secret would be predictable.
public enum X25519KeyCheck {
    public enum Fault: Error, Sendable, Equatable, CustomStringConvertible {
        case length(Int)
        case notCanonical
        case lowOrder

        public var description: String {
            switch self {
            case .length(let count): "X25519 key is \(count) bytes, not 32"
            case .notCanonical: "X25519 key is not canonically encoded (u ≥ p or top bit set)"
            case .lowOrder: "X25519 key is a low-order point (all-zero or predictable shared secret)"
            }
        }
    }

    /// u-coordinates of the points of low order on Curve25519 and its twist, canonical forms only.
    public static let lowOrderPoints: [[UInt8]] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ].map { Hex.decode($0)! }

    public static func check(_ key: [UInt8]) throws(Fault) {
        guard key.count == 32 else { throw .length(key.count) }
        guard key[31] & 0x80 == 0 else { throw .notCanonical }
        if key[31] == 0x7F && key[1..<31].allSatisfy({ $0 == 0xFF }) && key[0] >= 0xED { throw .notCanonical }
        guard !lowOrderPoints.contains(key) else { throw .lowOrder }
    }
}
