/// Minimal arithmetic modulo p = 2^255 − 19, enough to decide whether a y coordinate belongs to a point on
/// Ed25519. Variable-time: it only ever sees public keys.
struct FieldElement: Equatable {
    /// Little-endian 64-bit limbs, fully reduced below p.
    var limbs: (UInt64, UInt64, UInt64, UInt64)

    static let zero = FieldElement(limbs: (0, 0, 0, 0))
    static let one = FieldElement(limbs: (1, 0, 0, 0))
    static let p = FieldElement(limbs: (0xFFFF_FFFF_FFFF_FFED, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF))
    /// d = −121665 / 121666 mod p.
    static let d = FieldElement(littleEndian: Hex.decode("a3785913ca4deb75abd841414d0a700098e879777940c78c73fe6f2bee6c0352")!)

    init(limbs: (UInt64, UInt64, UInt64, UInt64)) {
        self.limbs = limbs
    }

    /// From 32 little-endian bytes; the top bit is ignored and the value reduced.
    init(littleEndian bytes: [UInt8]) {
        func limb(_ index: Int) -> UInt64 {
            var value: UInt64 = 0
            for offset in (0..<8).reversed() { value = value << 8 | UInt64(bytes[index * 8 + offset]) }
            return value
        }
        self.init(limbs: (limb(0), limb(1), limb(2), limb(3) & 0x7FFF_FFFF_FFFF_FFFF))
        reduceOnce()
    }

    var array: [UInt64] { [limbs.0, limbs.1, limbs.2, limbs.3] }

    static func == (lhs: FieldElement, rhs: FieldElement) -> Bool { lhs.array == rhs.array }

    init(_ array: [UInt64]) {
        self.init(limbs: (array[0], array[1], array[2], array[3]))
    }

    /// Subtracts p if the value is at least p (inputs are below 2p).
    mutating func reduceOnce() {
        let value = array
        let modulus = FieldElement.p.array
        var difference = [UInt64](repeating: 0, count: 4)
        var borrow: UInt64 = 0
        for index in 0..<4 {
            let (partial, overflow1) = value[index].subtractingReportingOverflow(modulus[index])
            let (result, overflow2) = partial.subtractingReportingOverflow(borrow)
            difference[index] = result
            borrow = (overflow1 || overflow2) ? 1 : 0
        }
        if borrow == 0 { self = FieldElement(difference) }
    }

    static func + (lhs: FieldElement, rhs: FieldElement) -> FieldElement {
        let a = lhs.array
        let b = rhs.array
        var sum = [UInt64](repeating: 0, count: 4)
        var carry: UInt64 = 0
        for index in 0..<4 {
            let (partial, overflow1) = a[index].addingReportingOverflow(b[index])
            let (result, overflow2) = partial.addingReportingOverflow(carry)
            sum[index] = result
            carry = (overflow1 || overflow2) ? 1 : 0
        }
        // Both inputs are below p < 2^255, so the sum fits in 256 bits and is below 2p.
        var result = FieldElement(sum)
        result.reduceOnce()
        return result
    }

    static prefix func - (value: FieldElement) -> FieldElement {
        if value == .zero { return .zero }
        let modulus = FieldElement.p.array
        let a = value.array
        var difference = [UInt64](repeating: 0, count: 4)
        var borrow: UInt64 = 0
        for index in 0..<4 {
            let (partial, overflow1) = modulus[index].subtractingReportingOverflow(a[index])
            let (result, overflow2) = partial.subtractingReportingOverflow(borrow)
            difference[index] = result
            borrow = (overflow1 || overflow2) ? 1 : 0
        }
        return FieldElement(difference)
    }

    static func - (lhs: FieldElement, rhs: FieldElement) -> FieldElement { lhs + -rhs }

    static func * (lhs: FieldElement, rhs: FieldElement) -> FieldElement {
        let a = lhs.array
        let b = rhs.array
        var product = [UInt64](repeating: 0, count: 8)
        for i in 0..<4 {
            var carry: UInt64 = 0
            for j in 0..<4 {
                let (high, low) = a[i].multipliedFullWidth(by: b[j])
                let (sum1, overflow1) = product[i + j].addingReportingOverflow(low)
                let (sum2, overflow2) = sum1.addingReportingOverflow(carry)
                product[i + j] = sum2
                carry = high &+ (overflow1 ? 1 : 0) &+ (overflow2 ? 1 : 0)
            }
            product[i + 4] = carry
        }
        // 2^256 ≡ 38 (mod p): fold the high half in, twice.
        var folded = [UInt64](repeating: 0, count: 5)
        var carry: UInt64 = 0
        for index in 0..<4 {
            let (high, low) = product[index + 4].multipliedFullWidth(by: 38)
            let (sum1, overflow1) = product[index].addingReportingOverflow(low)
            let (sum2, overflow2) = sum1.addingReportingOverflow(carry)
            folded[index] = sum2
            carry = high &+ (overflow1 ? 1 : 0) &+ (overflow2 ? 1 : 0)
        }
        folded[4] = carry
        var value = [folded[0], folded[1], folded[2], folded[3]]
        var extra = folded[4] &* 38
        for index in 0..<4 {
            let (sum, overflow) = value[index].addingReportingOverflow(extra)
            value[index] = sum
            extra = overflow ? 1 : 0
        }
        if extra != 0 {
            // Wrapped past 2^256 once more: add 38 again (cannot wrap a third time).
            let (sum, _) = value[0].addingReportingOverflow(38)
            value[0] = sum
        }
        // Now below 2^256; bring below p: fold bit 255 (2^255 ≡ 19), then subtract p at most once.
        let top = value[3] >> 63
        value[3] &= 0x7FFF_FFFF_FFFF_FFFF
        var add = top * 19
        for index in 0..<4 {
            let (sum, overflow) = value[index].addingReportingOverflow(add)
            value[index] = sum
            add = overflow ? 1 : 0
        }
        var result = FieldElement(value)
        result.reduceOnce()
        return result
    }

    func power(_ exponent: [UInt64]) -> FieldElement {
        var result = FieldElement.one
        for limb in exponent.reversed() {
            for bit in (0..<64).reversed() {
                result = result * result
                if (limb >> UInt64(bit)) & 1 == 1 { result = result * self }
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
        let euler = power([0xFFFF_FFFF_FFFF_FFF6, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x3FFF_FFFF_FFFF_FFFF])
        return euler == .one || euler == .zero
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
