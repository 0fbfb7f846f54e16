import ParleyCore
import ParleyPeer
import ParleyTesting
import Testing

@Suite struct PeerGateTests {
    static let alice = TestDevice("alice")
    static let nowMs: Int64 = 1_760_000_000_000

    static func datagram(sentMs: Int64 = nowMs, nonce: UInt8 = 1, echo: [UInt8]? = nil) -> PeerDatagram {
        PeerDatagram(
            kind: .probe, roomID: "general", senderKey: alice.key.publicKeyBytes, sentMs: UInt64(sentMs), nonce: Array(repeating: nonce, count: 12), echo: echo,
            body: [], sealingWith: nil, sign: alice.key.sign)
    }

    static func refusal(_ body: () throws -> Void) -> PeerDatagramError.Code? {
        do {
            try body()
            return nil
        } catch { return (error as? PeerDatagramError)?.code }
    }

    @Test func `a replayed datagram is refused, and one from an hour ago is stale`() throws {
        var gate = PeerGate()
        try gate.admit(Self.datagram(), bytes: 200, from: "127.0.0.1:9", nowMs: Self.nowMs)
        let replay = Self.refusal { try gate.admit(Self.datagram(), bytes: 200, from: "127.0.0.1:9", nowMs: Self.nowMs + 10) }
        #expect(replay == .replayed)
        #expect(!gate.isFresh(sentMs: UInt64(Self.nowMs - 3_600_000), nowMs: Self.nowMs))
        #expect(!gate.isFresh(sentMs: UInt64(Self.nowMs + 3_600_000), nowMs: Self.nowMs))
        let hourOld = Self.refusal { try gate.admit(Self.datagram(sentMs: Self.nowMs - 3_600_000, nonce: 2), bytes: 200, from: "a", nowMs: Self.nowMs) }
        #expect(hourOld == .stale)
    }

    @Test func `when its memory of nonces is full the gate refuses anything as old as what it forgot`() throws {
        var settings = PeerGate.Settings()
        settings.maxNonces = 10
        var gate = PeerGate(settings: settings)
        for index in 0..<20 {
            try gate.admit(Self.datagram(sentMs: Self.nowMs + Int64(index), nonce: UInt8(index)), bytes: 1, from: "a", nowMs: Self.nowMs + 20)
        }
        // The first nonces are forgotten; their replays are not taken for new.
        let forgotten = Self.refusal { try gate.admit(Self.datagram(sentMs: Self.nowMs, nonce: 0), bytes: 1, from: "a", nowMs: Self.nowMs + 20) }
        #expect(forgotten == .stale)
        try gate.admit(Self.datagram(sentMs: Self.nowMs + 30, nonce: 99), bytes: 1, from: "a", nowMs: Self.nowMs + 30)
    }

    @Test func `an address that never echoed a nonce gets at most three times what it sent`() throws {
        var gate = PeerGate()
        try gate.admit(Self.datagram(), bytes: 1_000, from: "10.0.0.9:1", nowMs: Self.nowMs)
        do {
            let spent = gate.spend(1_200, to: "10.0.0.9:1", nonce: [5])
            #expect(spent)
        }
        do {
            let spent = gate.spend(1_200, to: "10.0.0.9:1", nonce: [6])
            #expect(spent)
        }
        do {
            let spent = gate.spend(1_200, to: "10.0.0.9:1", nonce: [7])
            #expect(!spent)
        }
        // Echoing a nonce sent there shows it receives there: the limit goes.
        let echoed = Array(repeating: UInt8(8), count: 12)
        do {
            let spent = gate.spend(10, to: "10.0.0.9:1", nonce: echoed)
            #expect(spent)
        }
        try gate.admit(Self.datagram(nonce: 3, echo: echoed), bytes: 100, from: "10.0.0.9:1", nowMs: Self.nowMs)
        #expect(gate.isValidated("10.0.0.9:1"))
        do {
            let spent = gate.spend(100_000, to: "10.0.0.9:1", nonce: [9])
            #expect(spent)
        }
    }
}

@Suite struct EventBatchTests {
    @Test func `batches cut into fragments come back whole in any order, duplicates ignored`() throws {
        var next: UInt64 = 0
        let lines = (0..<40).map { index in Array(repeating: UInt8(ascii: "a") + UInt8(index % 26), count: index == 7 ? 5_000 : 300) }
        let bodies = EventBatches.bodies(for: lines, budget: 1_000) {
            next += 1
            return next
        }
        #expect(bodies.allSatisfy { $0.count <= 1_000 })
        var reassembler = EventReassembler()
        var batches: [[UInt8]] = []
        var generator = SeededGenerator(seed: 3)
        for body in (bodies + bodies.prefix(5)).shuffled(using: &generator) {
            if let batch = try reassembler.add(body, from: [1], nowMs: 0) { batches.append(batch) }
        }
        let received = batches.flatMap { $0.split(separator: UInt8(ascii: "\n")).map(Array.init) }
        #expect(Set(received) == Set(lines))
        #expect(received.count == lines.count)
        #expect(reassembler.pendingCount == 0)
    }

    @Test func `fragments that never complete stay within bounds and expire`() throws {
        var reassembler = EventReassembler()
        for batch in 0..<1_000 {
            let body = EventBatches.bodies(for: [Array(repeating: 65, count: 3_000)], budget: 1_000) { UInt64(batch) }[0]
            let batch = try reassembler.add(body, from: [UInt8(batch % 3)], nowMs: 0)
            #expect(batch == nil)
        }
        #expect(reassembler.pendingCount <= EventReassembler.Limits().batchesPerSender * 3)
        let late = EventBatches.bodies(for: [Array(repeating: 65, count: 3_000)], budget: 1_000) { 5_000 }[0]
        _ = try reassembler.add(late, from: [9], nowMs: 60_000)
        #expect(reassembler.pendingCount == 1)
        for malformed in [[0, 0, 0], Array(repeating: 0, count: 8) + [0, 5, 0, 5, 1], Array(repeating: 0, count: 8) + [0, 0, 0x10, 0, 1]] as [[UInt8]] {
            do {
                _ = try reassembler.add(malformed, from: [1], nowMs: 0)
                Issue.record("a malformed fragment was taken")
            } catch { #expect(error == .malformed) }
        }
    }

    @Test func `the pacer lets a burst through, then spaces datagrams at its rate`() {
        var pacer = Pacer(perSecond: 1_000, burst: 3)
        var waits: [Int64] = []
        for now: Int64 in [0, 0, 0, 0, 0, 10_000] { waits.append(pacer.take(nowMicroseconds: now)) }
        #expect(waits == [0, 0, 0, 1_000, 2_000, 0])
    }

    @Test func `a rate limit refuses past its burst, and what it refused is not owed later`() {
        var limit = Pacer(perSecond: 10, burst: 2)
        let flood = (0..<1_000).map { _ in limit.takeIfFree(nowMicroseconds: 0) }
        #expect(flood.filter { $0 }.count == 2)
        // A tenth of a second later one turn is free again, whatever the flood was.
        let later = [limit.takeIfFree(nowMicroseconds: 100_000), limit.takeIfFree(nowMicroseconds: 100_000)]
        #expect(later == [true, false])
    }
}

@Suite struct FaultPlanTests {
    @Test func `a plan drops, duplicates and holds back datagrams in the proportions it is given`() {
        var generator = SeededGenerator(seed: 9)
        #expect(FaultPlan(loss: 1).deliveries(using: &generator).isEmpty)
        #expect(FaultPlan().deliveries(using: &generator) == [0])
        #expect(FaultPlan(duplication: 1).deliveries(using: &generator) == [0, 0])
        let held = FaultPlan(reordering: 1).deliveries(using: &generator)
        #expect(held.count == 1 && (5...40).contains(held[0]))
        let plan = FaultPlan(loss: 0.3, duplication: 0.1)
        let outcomes = (0..<10_000).map { _ in plan.deliveries(using: &generator).count }
        let lost = outcomes.filter { $0 == 0 }.count
        let doubled = outcomes.filter { $0 == 2 }.count
        #expect((2_700...3_300).contains(lost), "\(lost) of 10,000 lost at 30%")
        #expect((500...900).contains(doubled), "\(doubled) of 10,000 doubled at 10% of the 70% that pass")
    }
}

@Suite struct FaultProxyTests {
    @Test func `the proxy passes datagrams between devices, each seeing the other at the address it sends to, and a partition cuts them`() throws {
        let (a, b) = (try RawUDPSocket(), try RawUDPSocket())
        let proxy = try FaultProxy(devicePorts: [a.port, b.port], plan: FaultPlan())
        defer { proxy.stop() }
        a.send([1, 2, 3], to: proxy.port(of: 1, seenBy: 0))
        let received = b.receiveAll(quietSeconds: 0.3)
        #expect(received == [[1, 2, 3]])
        b.send([4], to: proxy.port(of: 0, seenBy: 1))
        #expect(a.receiveAll(quietSeconds: 0.3) == [[4]])
        proxy.partition([0])
        a.send([5], to: proxy.port(of: 1, seenBy: 0))
        #expect(b.receiveAll(quietSeconds: 0.3, timeoutSeconds: 0.5).isEmpty)
        proxy.partition([])
        a.send([6], to: proxy.port(of: 1, seenBy: 0))
        #expect(b.receiveAll(quietSeconds: 0.3) == [[6]])
        #expect(proxy.counts.dropped == 1)
    }
}

@Suite struct PeerGateProbeTests {
    @Test func `a probe sent past the limit can still be echoed to validate the address`() throws {
        var gate = PeerGate()
        try gate.admit(PeerGateTests.datagram(), bytes: 100, from: "10.0.0.7:1", nowMs: PeerGateTests.nowMs)
        let spent = gate.spend(400, to: "10.0.0.7:1", nonce: [1])
        let refused = gate.spend(1_232, to: "10.0.0.7:1", nonce: [2])
        let probe = Array(repeating: UInt8(3), count: 12)
        let probed = gate.spend(150, to: "10.0.0.7:1", nonce: probe, regardless: true)
        #expect(spent && !refused && probed)
        try gate.admit(PeerGateTests.datagram(nonce: 4, echo: probe), bytes: 100, from: "10.0.0.7:1", nowMs: PeerGateTests.nowMs)
        #expect(gate.isValidated("10.0.0.7:1"))
    }
}
