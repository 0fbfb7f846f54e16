/// Arithmetic modulo p = 2^255 − 19, enough to decide whether a y coordinate belongs to a point on Ed25519.
///
/// Five 51-bit limbs (the usual radix for this field), products in `UInt128`. Variable-time: it only ever sees
/// public keys. Limbs are kept below 2^54 between operations, so no product sum overflows.
struct FieldElement {
    var l0: UInt64, l1: UInt64, l2: UInt64, l3: UInt64, l4: UInt64

    static let mask: UInt64 = (1 << 51) - 1
    static let zero = FieldElement(l0: 0, l1: 0, l2: 0, l3: 0, l4: 0)
    static let one = FieldElement(l0: 1, l1: 0, l2: 0, l3: 0, l4: 0)
    /// d = −121665 / 121666 mod p.
    static let d = FieldElement(littleEndian: Hex.decode("a3785913ca4deb75abd841414d0a700098e879777940c78c73fe6f2bee6c0352")!)

    init(l0: UInt64, l1: UInt64, l2: UInt64, l3: UInt64, l4: UInt64) {
        (self.l0, self.l1, self.l2, self.l3, self.l4) = (l0, l1, l2, l3, l4)
    }

    /// From 32 little-endian bytes; the top bit is ignored.
    init(littleEndian bytes: [UInt8]) {
        func word(_ offset: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in (0..<8).reversed() { value = value << 8 | UInt64(bytes[offset + index]) }
            return value
        }
        let (w0, w1, w2, w3) = (word(0), word(8), word(16), word(24))
        let mask = FieldElement.mask
        self.init(
            l0: w0 & mask, l1: (w0 >> 51 | w1 << 13) & mask, l2: (w1 >> 38 | w2 << 26) & mask,
            l3: (w2 >> 25 | w3 << 39) & mask, l4: (w3 >> 12) & mask)
    }

    /// Propagates carries so every limb is below 2^51 (the value may still be ≥ p).
    func carried() -> FieldElement {
        let mask = FieldElement.mask
        var (a, b, c, d, e) = (l0, l1, l2, l3, l4)
        b += a >> 51
        a &= mask
        c += b >> 51
        b &= mask
        d += c >> 51
        c &= mask
        e += d >> 51
        d &= mask
        a += (e >> 51) * 19
        e &= mask
        b += a >> 51
        a &= mask
        return FieldElement(l0: a, l1: b, l2: c, l3: d, l4: e)
    }

    /// The unique representative below p.
    func reduced() -> FieldElement {
        var value = carried().carried()
        // value < 2^255 now; subtract p once if value ≥ p, i.e. if value + 19 overflows 2^255.
        let mask = FieldElement.mask
        var carry = (value.l0 + 19) >> 51
        carry = (value.l1 + carry) >> 51
        carry = (value.l2 + carry) >> 51
        carry = (value.l3 + carry) >> 51
        carry = (value.l4 + carry) >> 51
        value.l0 += 19 * carry
        value.l1 += value.l0 >> 51
        value.l0 &= mask
        value.l2 += value.l1 >> 51
        value.l1 &= mask
        value.l3 += value.l2 >> 51
        value.l2 &= mask
        value.l4 += value.l3 >> 51
        value.l3 &= mask
        value.l4 &= mask
        return value
    }

    static func + (a: FieldElement, b: FieldElement) -> FieldElement {
        FieldElement(l0: a.l0 + b.l0, l1: a.l1 + b.l1, l2: a.l2 + b.l2, l3: a.l3 + b.l3, l4: a.l4 + b.l4).carried()
    }

    static func - (a: FieldElement, b: FieldElement) -> FieldElement {
        // Add 4p first so no limb goes negative (b's limbs are below 2^52 after carrying).
        let b = b.carried()
        let fourP0: UInt64 = 0x1F_FFFF_FFFF_FFB4
        let fourP: UInt64 = 0x1F_FFFF_FFFF_FFFC
        return FieldElement(
            l0: a.l0 + fourP0 - b.l0, l1: a.l1 + fourP - b.l1, l2: a.l2 + fourP - b.l2, l3: a.l3 + fourP - b.l3,
            l4: a.l4 + fourP - b.l4
        ).carried()
    }

    static func * (a: FieldElement, b: FieldElement) -> FieldElement {
        let (a0, a1, a2, a3, a4) = (UInt128(a.l0), UInt128(a.l1), UInt128(a.l2), UInt128(a.l3), UInt128(a.l4))
        let (b0, b1, b2, b3, b4) = (UInt128(b.l0), UInt128(b.l1), UInt128(b.l2), UInt128(b.l3), UInt128(b.l4))
        // 2^255 ≡ 19: limbs that overflow past the fifth wrap around multiplied by 19.
        let (c1, c2, c3, c4) = (b1 * 19, b2 * 19, b3 * 19, b4 * 19)
        var r0 = a0 * b0 + a1 * c4 + a2 * c3 + a3 * c2 + a4 * c1
        var r1 = a0 * b1 + a1 * b0 + a2 * c4 + a3 * c3 + a4 * c2
        var r2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * c4 + a4 * c3
        var r3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * c4
        var r4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0
        let mask = UInt128(FieldElement.mask)
        r1 += r0 >> 51
        r0 &= mask
        r2 += r1 >> 51
        r1 &= mask
        r3 += r2 >> 51
        r2 &= mask
        r4 += r3 >> 51
        r3 &= mask
        r0 += (r4 >> 51) * 19
        r4 &= mask
        r1 += r0 >> 51
        r0 &= mask
        return FieldElement(l0: UInt64(r0), l1: UInt64(r1), l2: UInt64(r2), l3: UInt64(r3), l4: UInt64(r4))
    }

    /// self^e for e given as little-endian 64-bit words.
    func power(_ exponent: [UInt64]) -> FieldElement {
        var result = FieldElement.one
        for word in exponent.reversed() {
            for bit in stride(from: 63, through: 0, by: -1) {
                result = result * result
                if (word >> UInt64(bit)) & 1 == 1 { result = result * self }
            }
        }
        return result
    }

    /// self^(p−2) = 1/self (Fermat).
    var inverse: FieldElement {
        power([0xFFFF_FFFF_FFFF_FFEB, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF])
    }

    /// Whether self is zero or a square (Euler's criterion: self^((p−1)/2) ∈ {0, 1}).
    var isSquare: Bool {
        let euler = power([0xFFFF_FFFF_FFFF_FFF6, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x3FFF_FFFF_FFFF_FFFF]).reduced()
        return euler == FieldElement.one || euler == FieldElement.zero
    }

    static func == (lhs: FieldElement, rhs: FieldElement) -> Bool {
        let a = lhs.reduced()
        let b = rhs.reduced()
        return a.l0 == b.l0 && a.l1 == b.l1 && a.l2 == b.l2 && a.l3 == b.l3 && a.l4 == b.l4
    }
}

extension StrictEd25519 {
    /// Whether a canonical encoding's y coordinate belongs to a point on −x² + y² = 1 + d·x²·y².
    static func isOnCurve(_ encoding: [UInt8]) -> Bool {
        let y = FieldElement(littleEndian: encoding)
        let ySquared = y * y
        let numerator = ySquared - .one
        let denominator = FieldElement.d * ySquared + .one
        // x² = numerator / denominator must be a square; the denominator is never zero since d is not a square.
        return (numerator * denominator.inverse).isSquare
    }
}
