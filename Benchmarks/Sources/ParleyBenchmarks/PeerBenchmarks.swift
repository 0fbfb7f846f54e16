import Foundation
import ParleyCore

#if canImport(Glibc)
    import Glibc
#endif

/// CPU time of the calling thread: reconciliation runs on one thread, so each side's share is measured where it runs.
func threadCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

private func randomItems(_ count: Int, generator: inout some RandomNumberGenerator) -> [ReconciliationItem] {
    let start: UInt64 = 1_760_000_000_000
    return (0..<count).map { _ in
        ReconciliationItem(
            timestampMs: start + generator.next() % (30 * 86_400_000),
            hash: EventHash256(words: (generator.next(), generator.next(), generator.next(), generator.next())))
    }
}

/// One side of a simulated exchange: its items, and what it sent, in bytes and datagrams, and the CPU it spent.
private struct Side {
    var items: Set<ReconciliationItem>
    var bytes = 0
    var datagrams = 0
    var cpuSeconds = 0.0

    mutating func send(bodies: [[UInt8]]) {
        datagrams += bodies.count
        bytes += bodies.reduce(0) { $0 + $1.count + datagramOverhead }
    }
}

/// Header and signature bytes around every datagram's body, in a room named `general`.
private let datagramOverhead = PeerDatagram.maxBytes - PeerDatagram.bodyBudget(roomID: "general", sealed: false)
private let bodyBudget = PeerDatagram.bodyBudget(roomID: "general", sealed: false)

/// Range-based reconciliation sessions until both sides hold the union (a short-id collision can leave an item to the
/// next session). Returns the message rounds of the first session (the last one asks for events).
private func reconcile(_ sides: inout [Side]) -> (rounds: Int, sessions: Int) {
    var firstRounds = 0
    var sessions = 0
    var generator = SystemRandomNumberGenerator()
    while sides[0].items != sides[1].items {
        sessions += 1
        var reconcilers: [Reconciler] = []
        for index in 0..<2 {
            let start = threadCPUSeconds()
            reconcilers.append(Reconciler(ReconciliationSet(Array(sides[index].items))))
            sides[index].cpuSeconds += threadCPUSeconds() - start
        }
        let start = threadCPUSeconds()
        var inFlight = reconcilers[0].start(salt: generator.next()).parts(maxBytes: bodyBudget)
        sides[0].cpuSeconds += threadCPUSeconds() - start
        var sender = 0
        var rounds = 0
        var received: [[ReconciliationItem]] = [[], []]
        while !inFlight.isEmpty {
            rounds += 1
            sides[sender].send(bodies: inFlight.map(\.encoded))
            let receiver = 1 - sender
            let start = threadCPUSeconds()
            var replies: [ReconciliationMessage] = []
            for part in inFlight {
                let reply = reconcilers[receiver].reply(to: try! ReconciliationMessage(decoding: part.encoded))
                received[sender] += reply.send
                replies += reply.message?.parts(maxBytes: bodyBudget) ?? []
            }
            sides[receiver].cpuSeconds += threadCPUSeconds() - start
            inFlight = replies
            sender = receiver
        }
        if sessions == 1 { firstRounds = rounds }
        for index in 0..<2 { sides[index].items.formUnion(received[index]) }
    }
    return (firstRounds, sessions)
}

/// Bloom exchanges until both sides hold the union: each side sends digests of what it holds, the other sends what
/// they do not contain. Returns how many exchanges it took.
private func exchangeBlooms(_ sides: inout [Side]) -> Int {
    var exchanges = 0
    var generator = SystemRandomNumberGenerator()
    while sides[0].items != sides[1].items {
        exchanges += 1
        var received: [[ReconciliationItem]] = [[], []]
        for sender in 0..<2 {
            let receiver = 1 - sender
            var start = threadCPUSeconds()
            let digests = BloomDigest.digests(of: sides[sender].items.map(\.hash), salt: generator.next(), maxBytes: bodyBudget)
            sides[sender].cpuSeconds += threadCPUSeconds() - start
            sides[sender].send(bodies: digests.map(\.encoded))
            start = threadCPUSeconds()
            let read = digests.map { try! BloomDigest(decoding: $0.encoded) }
            for item in sides[receiver].items {
                let prefix = UInt16(truncatingIfNeeded: item.hash.words.0 >> 48)
                var low = 0
                var high = read.count - 1
                while low < high {
                    let middle = (low + high + 1) / 2
                    if read[middle].firstPrefix <= prefix { low = middle } else { high = middle - 1 }
                }
                let digest = read[low]
                if !digest.contains(item.hash) { received[sender].append(item) }
            }
            sides[receiver].cpuSeconds += threadCPUSeconds() - start
        }
        for index in 0..<2 { sides[index].items.formUnion(received[index]) }
    }
    return exchanges
}

/// Set reconciliation against the Bloom mode on the same sets: two sides of `count` events that differ by `differing`
/// on each side (docs/BENCHMARKS.md; the targets are the peers issue's).
func reconciliationBenchmark(count: Int) {
    var generator = SystemRandomNumberGenerator()
    let shared = randomItems(count, generator: &generator)
    let differing = count / 100
    let a = Set(shared + randomItems(differing, generator: &generator))
    let b = Set(shared + randomItems(differing, generator: &generator))

    var ranged = [Side(items: a), Side(items: b)]
    let (rounds, sessions) = reconcile(&ranged)
    var bloomed = [Side(items: a), Side(items: b)]
    let exchanges = exchangeBlooms(&bloomed)
    let rangedBytes = Double(ranged[0].bytes + ranged[1].bytes)
    let bloomBytes = Double(bloomed[0].bytes + bloomed[1].bytes)
    let label = "\(count / 1000)k events, \(differing) differing on each side"
    record("reconciliation, \(label): bytes, both sides", rangedBytes / 1024, "KiB")
    record("reconciliation: datagrams, both sides", Double(ranged[0].datagrams + ranged[1].datagrams), "")
    record("reconciliation: message rounds of the first session", Double(rounds), "")
    record("reconciliation: sessions to converge", Double(sessions), "")
    record("Bloom mode, same sets: bytes, both sides, until converged", bloomBytes / 1024, "KiB")
    record("Bloom mode: exchanges until converged (10 bits per event)", Double(exchanges), "")
    record("Bloom mode: bytes of one exchange, one side", Double(bloomed[0].bytes) / 1024 / Double(exchanges), "KiB")
    record("reconciliation bytes / Bloom bytes until converged", rangedBytes / bloomBytes, "×", target: "≤ 0.5", met: rangedBytes <= 0.5 * bloomBytes)
    record("reconciliation bytes / one Bloom exchange's (which leaves some behind)", rangedBytes / (bloomBytes / Double(exchanges)), "×")
    let cpu = max(ranged[0].cpuSeconds, ranged[1].cpuSeconds) / Double(sessions)
    record("reconciliation CPU per side and session (the busier side, set built from items)", cpu * 1000, "ms", target: "≤ 50", met: cpu <= 0.050)

    for few in [2, 10] {
        var sides = [
            Side(items: Set(shared + randomItems(few / 2, generator: &generator))), Side(items: Set(shared + randomItems(few / 2, generator: &generator))),
        ]
        let (rounds, _) = reconcile(&sides)
        // The last round asks for events; the events that answer it are one more message.
        let roundTrips = (rounds + 2) / 2
        record(
            "round trips, \(count / 1000)k events differing by \(few) (with the events moved)", Double(roundTrips), "", target: "≤ 3", met: roundTrips <= 3)
        record("bytes, differing by \(few), both sides", Double(sides[0].bytes + sides[1].bytes), "B")
    }
}

/// Peers for real (`parley sim`: devices in one process, each with its own store, over UDP on 127.0.0.1): delivery
/// latency between two peers at 100 messages a second, and how long 20 devices on a lossy network take to agree once a
/// partition heals.
func peerSimulationBenchmarks(parley: String, workdir: String, partitionSeconds: Int) {
    func simulate(_ arguments: [String]) -> JSONValue {
        let output = try! capture(parley, home: workdir + "/sim-home", ["sim", "--json"] + arguments)
        return try! JSONParser().parse(Array(output.utf8))
    }
    let direct = simulate(["--devices", "2", "--rate", "100", "--seconds", "30"])
    let p50 = Double(direct["latency_ms"]?["p50"]?.integerValue ?? -1)
    let p99 = Double(direct["latency_ms"]?["p99"]?.integerValue ?? -1)
    record("two peers on loopback, 100 messages/s: send → stored on the other, p50", p50, "ms", target: "≤ 10", met: p50 >= 0 && p50 <= 10)
    record("two peers on loopback, 100 messages/s: p99", p99, "ms", target: "≤ 50", met: p99 >= 0 && p99 <= 50)
    record("two peers: bytes on the wire per message (signed datagram, event, syncs)", Double(direct["bytes_per_event"]?.integerValue ?? 0), "B")

    let partitioned = simulate([
        "--devices", "20", "--loss", "10", "--partition", "\(partitionSeconds)", "--seconds", "\(partitionSeconds + 20)", "--rate", "5",
    ])
    let converged = Double(partitioned["converged_after_heal_ms"]?.integerValue ?? -1)
    record(
        "20 devices, 10% loss: every device holds what any held when a \(partitionSeconds) s partition healed, after", converged / 1000, "s",
        target: "≤ 5", met: converged >= 0 && converged <= 5_000)
    record(
        "20 devices: all hold the same events and room state at the end", partitioned["same_state"] == true && partitioned["same_events"] == true ? 1 : 0, "")
    record("20 devices, 10% loss: delivery p50 / p99 (the partition's messages included)", Double(partitioned["latency_ms"]?["p50"]?.integerValue ?? -1), "ms")
    record("20 devices: p99", Double(partitioned["latency_ms"]?["p99"]?.integerValue ?? -1), "ms")
    record("20 devices: datagrams per message (all devices, syncs included)", Double(partitioned["datagrams_per_event"]?.integerValue ?? -1), "")

    for mode in ["reconcile", "bloom"] {
        let run = simulate(["--devices", "4", "--rate", "20", "--seconds", "20", "--loss", "5", "--sync", mode])
        record("4 devices, 5% loss, 20 s: bytes spent syncing (\(mode))", Double(run["sync_bytes"]?.integerValue ?? -1) / 1024, "KiB")
    }

    // The same run over each transport: 8 devices, 10 messages/s for 20 s, one in ten sharing a 256 KiB file.
    for transport in ["peers", "bucket", "relay"] {
        let run = simulate([
            "--transport", transport, "--devices", "8", "--rate", "10", "--seconds", "20", "--files", "10", "--file-size", "262144",
        ])
        let agreed = run["same_events"] == true && run["same_state"] == true && run["undelivered"] == 0 && run["files_undelivered"] == 0
        record("8 devices over \(transport): every message and file on every device, same state", agreed ? 1 : 0, "")
        record("8 devices over \(transport): message delivery p50", Double(run["latency_ms"]?["p50"]?.integerValue ?? -1), "ms")
        record("8 devices over \(transport): message delivery p99", Double(run["latency_ms"]?["p99"]?.integerValue ?? -1), "ms")
        record("8 devices over \(transport): 256 KiB file on every other device, p50", Double(run["file_latency_ms"]?["p50"]?.integerValue ?? -1), "ms")
        record("8 devices over \(transport): file p99", Double(run["file_latency_ms"]?["p99"]?.integerValue ?? -1), "ms")
        if transport != "relay" {
            record("8 devices over \(transport): bytes moved per message (files included)", Double(run["bytes_per_event"]?.integerValue ?? -1) / 1024, "KiB")
        }
    }

    // One 16 MiB file from one device to another: how fast its blocks move (loopback; a folder bucket for comparison).
    for transport in ["peers", "bucket"] {
        let run = simulate(["--transport", transport, "--devices", "2", "--rate", "1", "--seconds", "3", "--files", "100", "--file-size", "16777216"])
        let ms = Double(run["file_latency_ms"]?["p50"]?.integerValue ?? -1)
        record("a 16 MiB file to another device over \(transport) (shared → every block there), p50", ms, "ms")
        record("  that is", ms > 0 ? 16_000 / ms : 0, "MiB/s")
    }
}
