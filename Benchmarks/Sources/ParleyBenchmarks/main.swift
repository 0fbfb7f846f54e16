// Parley's benchmarks: one measurement per design target, each with its baseline measured in the same run.
//
//   scripts/bench                  # builds everything in release mode and runs all of them
//   parley-bench [micro|import|log|bucket|encryption|api|nodes|catchup|files|receipts|query|reconcile|peers] [--reconcile-events N] [--partition-seconds N] [--receipt-members N] [--receipt-seconds N] [--file-megabytes N] [--events N] [--messages N] [--follow-seconds N] [--room-events N] [--catchup-events N] [--catchup-days N] [--catchup-files-per-day N] [--workdir DIR] [--parley PATH]
//
// Results print as a Markdown table (copied into docs/BENCHMARKS.md) and as JSON lines on standard error.

import Crypto
import Dispatch
import Foundation
import ParleyBucket
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyStore
import ParleySync

#if canImport(Glibc)
    import Glibc
#endif

// MARK: Harness

struct Measurement {
    var claim: String
    var value: Double
    var unit: String
    var target: String
    var verdict: String
}

nonisolated(unsafe) var results: [Measurement] = []

func record(_ claim: String, _ value: Double, _ unit: String, target: String = "", met: Bool? = nil) {
    let verdict = met.map { $0 ? "met" : "NOT met" } ?? ""
    results.append(Measurement(claim: claim, value: value, unit: unit, target: target, verdict: verdict))
    let line = "{\"claim\":\"\(claim)\",\"value\":\(value),\"unit\":\"\(unit)\",\"target\":\"\(target)\",\"verdict\":\"\(verdict)\"}\n"
    FileHandle.standardError.write(Data(line.utf8))
}

func now() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// Runs `body` and returns the seconds it took.
func measure(_ body: () throws -> Void) rethrows -> Double {
    let start = now()
    try body()
    return now() - start
}

/// Best of `repeats` runs: the least disturbed by the rest of the machine.
func best(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    var result = Double.infinity
    for _ in 0..<repeats { result = min(result, try measure(body)) }
    return result
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

/// Peak resident memory of a run of `path`, in KiB, as GNU time (Debian's `time` package) reports it.
///
/// Not from `wait4` here: posix_spawn starts the child with vfork, and Linux carries the parent's peak RSS into
/// the child's across exec, so every child would seem at least as large as this benchmark process.
func peakRSS(_ path: String, _ arguments: [String]) -> Int {
    let report = NSTemporaryDirectory() + "parley-bench-rss-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: report) }
    precondition(runProcess("/usr/bin/time", ["-f", "%M", "-o", report, path] + arguments).status == 0, "/usr/bin/time failed")
    return Int((try! String(contentsOfFile: report, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))!
}

/// Runs a program to completion with output discarded; returns its exit status and wall time.
/// Runs `path` to its end; returns its exit status, wall time and CPU time (user and system, all its threads).
func runProcess(_ path: String, _ arguments: [String], stdinPath: String? = nil) -> (status: Int32, seconds: Double, cpuSeconds: Double) {
    var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    if let stdinPath { posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0) }
    defer { posix_spawn_file_actions_destroy(&actions) }
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for argument in argv { free(argument) } }
    var pid: pid_t = 0
    let start = now()
    guard posix_spawn(&pid, path, &actions, nil, argv, environ) == 0 else {
        fatalError("cannot start \(path)")
    }
    var status: Int32 = 0
    var usage = rusage()
    wait4(pid, &status, 0, &usage)
    let seconds = now() - start
    return ((status >> 8) & 0xFF, seconds, cpuSeconds(usage))
}

func cpuSeconds(_ usage: rusage) -> Double {
    Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// CPU time this process has used so far, every thread.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return cpuSeconds(usage)
}

func argument(_ name: String, default value: String) -> String {
    let arguments = CommandLine.arguments
    if let index = arguments.firstIndex(of: name), index + 1 < arguments.count { return arguments[index + 1] }
    return value
}

// MARK: Fixtures

/// A room of `members` devices writing messages padded so each event's wire form is about `eventBytes`.
struct RoomFixture {
    static let roomID = "bench"
    static let start: Int64 = 1_760_000_000_000

    static func device(_ index: Int) -> (String, DeviceSigningKey, String) {
        let seed = Array(SHA256.hash(data: Array("bench device \(index)".utf8)))
        let exchange = Array(SHA256.hash(data: Array("bench exchange \(index)".utf8)))
        let exchangeKey = Base64.encode(try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: exchange).publicKey.rawRepresentation)
        return ("user\(index)", try! DeviceSigningKey(seed: seed), exchangeKey)
    }

    /// Writes the setup (create, invites, joins) and then `count` messages, one JSONL line each, to `path`.
    /// Signing runs one device chain per core.
    static func write(count: Int, members: Int, eventBytes: Int, to path: String) throws {
        let devices = (0..<members).map(device)
        var setup: [VerifiedEvent] = []
        var heads: [(seq: Int64, hash: String?)] = Array(repeating: (0, nil), count: members)
        func sign(_ member: Int, _ type: String, _ content: JSONObject, at timestamp: Int64) -> VerifiedEvent {
            let (user, key, _) = devices[member]
            let head = heads[member]
            var generator = SystemRandomNumberGenerator()
            let event = key.signEvent(
                roomID: roomID, type: type, content: content, senderID: user, seq: head.seq + 1, previousHash: head.hash,
                timestampMs: timestamp, eventID: EventID.make(roomID: roomID, timestampMs: timestamp, using: &generator))
            heads[member] = (head.seq + 1, event.hash)
            return event
        }
        setup.append(sign(0, EventType.create, JSONObject(["version": 1]), at: start))
        setup.append(
            sign(
                0, EventType.member,
                MemberContent(
                    membership: .join, userID: devices[0].0, devices: [DeviceBinding(signingKey: devices[0].1.publicKeyBase64, exchangeKey: devices[0].2)]
                ).jsonObject, at: start))
        for member in 1..<members {
            setup.append(
                sign(
                    0, EventType.member,
                    MemberContent(membership: .invite, userID: devices[member].0, devices: [DeviceBinding(signingKey: devices[member].1.publicKeyBase64)])
                        .jsonObject, at: start + 1))
            setup.append(
                sign(
                    member, EventType.member,
                    MemberContent(
                        membership: .join, userID: devices[member].0,
                        devices: [DeviceBinding(signingKey: devices[member].1.publicKeyBase64, exchangeKey: devices[member].2)]
                    ).jsonObject, at: start + 2))
        }
        // In the room's order, as `parley events` exports it: an invite (start + 1) written before the previous
        // member's join (start + 2) would make the importer judge its whole first batch twice.
        setup.sort { EventOrder($0.event) < EventOrder($1.event) }
        precondition(FileManager.default.createFile(atPath: path, contents: nil), "cannot create \(path)")
        let handle = FileHandle(forWritingAtPath: path)!
        defer { try? handle.close() }
        var buffer: [UInt8] = []
        for event in setup { buffer += event.wire + [0x0A] }

        // Message i is sent by member i % members at start + 10 + i ms; each member's chain is signed on its own.
        let padding = String(repeating: "x", count: max(0, eventBytes - 560))
        let chunk = 20_000
        var written = 0
        while written < count {
            let batch = min(chunk, count - written)
            let shared = UnsafeMutableBufferPointer<[UInt8]>.allocate(capacity: batch)
            shared.initialize(repeating: [])
            let box = Box(shared)
            let base = written
            let heads0 = heads
            let resultHeads = UnsafeMutableBufferPointer<(Int64, String?)>.allocate(capacity: members)
            _ = resultHeads.initialize(from: heads0)
            let headsBox = Box(resultHeads)
            DispatchQueue.concurrentPerform(iterations: members) { member in
                var head = headsBox.buffer[member]
                let (user, key, _) = devices[member]
                var generator = SystemRandomNumberGenerator()
                var index = base + ((member - base % members) + members) % members
                while index < base + batch {
                    let timestamp = start + 10 + Int64(index)
                    let event = key.signEvent(
                        roomID: roomID, type: EventType.message,
                        content: JSONObject(["msgtype": "text", "body": .string("message \(index) \(padding)")]), senderID: user,
                        seq: head.0 + 1, previousHash: head.1, timestampMs: timestamp,
                        eventID: EventID.make(roomID: roomID, timestampMs: timestamp, using: &generator))
                    head = (head.0 + 1, event.hash)
                    box.buffer[index - base] = event.wire
                    index += members
                }
                headsBox.buffer[member] = head
            }
            heads = Array(resultHeads).map { (seq: $0.0, hash: $0.1) }
            for index in 0..<batch {
                buffer += shared[index]
                buffer.append(0x0A)
            }
            shared.deinitialize()
            shared.deallocate()
            resultHeads.deinitialize()
            resultHeads.deallocate()
            handle.write(Data(buffer))
            buffer.removeAll(keepingCapacity: true)
            written += batch
        }
    }
}

struct Box<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ buffer: UnsafeMutableBufferPointer<T>) { self.buffer = buffer }
}

/// Signed 1 KiB events for the in-process benchmarks.
func signedEvents(_ count: Int) -> [VerifiedEvent] {
    let path = NSTemporaryDirectory() + "parley-bench-micro-\(getpid()).jsonl"
    try! RoomFixture.write(count: count, members: 8, eventBytes: 1024, to: path)
    defer { try? FileManager.default.removeItem(atPath: path) }
    let text = try! String(contentsOfFile: path, encoding: .utf8)
    return text.split(separator: "\n").suffix(count).map { try! VerifiedEvent(parsing: Array($0.utf8)) }
}

// MARK: Benchmarks

func verifyRates(_ events: [VerifiedEvent]) -> (raw1: Double, raw2: Double, strict1: Double, strict2: Double) {
    let inputs = events.map { (Array($0.event.signingInput()), Base64.decode($0.event.signature)!, $0.senderKeyBytes) }
    func raw(_ range: Range<Int>) {
        for index in range {
            let (message, signature, key) = inputs[index]
            precondition(try! Curve25519.Signing.PublicKey(rawRepresentation: key).isValidSignature(signature, for: message))
        }
    }
    func strict(_ range: Range<Int>) {
        for index in range {
            let (message, signature, key) = inputs[index]
            try! StrictEd25519.verify(signature: signature, message: message, publicKey: key)
        }
    }
    func parallel(_ body: @escaping @Sendable (Range<Int>) -> Void) {
        let half = inputs.count / 2
        DispatchQueue.concurrentPerform(iterations: 2) { part in body(part == 0 ? 0..<half : half..<inputs.count) }
    }
    let count = Double(inputs.count)
    nonisolated(unsafe) let rawBody = raw
    nonisolated(unsafe) let strictBody = strict
    // Interleaved rounds, best of each: this machine's speed drifts by tens of percent over seconds, and a
    // baseline measured in a slow moment would flatter everything compared with it.
    var (rawOne, strictOne, rawTwo, strictTwo) = (0.0, 0.0, 0.0, 0.0)
    for _ in 0..<7 {
        rawOne = max(rawOne, count / measure { raw(0..<inputs.count) })
        strictOne = max(strictOne, count / measure { strict(0..<inputs.count) })
        rawTwo = max(rawTwo, count / measure { parallel { rawBody($0) } })
        strictTwo = max(strictTwo, count / measure { parallel { strictBody($0) } })
    }
    return (rawOne, rawTwo, strictOne, strictTwo)
}

/// Signature inputs of every event in a JSON-lines file, for a baseline over the very events an import verifies.
func signatureInputs(file: String) -> [(message: [UInt8], signature: [UInt8], key: [UInt8])] {
    let lines = try! String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map { Array($0.utf8) }
    return lines.map { line in
        // Parsed without verifying: the baseline below is what verifies them.
        let event = try! VerifiedEvent(storedWire: line)
        return (Array(event.event.signingInput()), Base64.decode(event.event.signature)!, event.senderKeyBytes)
    }
}

/// Raw swift-crypto verifications per second of all `inputs` once, on every core, spread as the importer spreads
/// a batch (chunks of 64 handed to both threads): a sustained baseline lasting as long as an import, to set beside
/// it. The burst baseline of ``verifyRates(_:)`` is the best of seven short rounds, which on this machine catches
/// its fastest moments; an import of 100,000 events lasts seconds and meets the slow ones too.
func sustainedRawVerifyRate(_ inputs: [(message: [UInt8], signature: [UInt8], key: [UInt8])]) -> Double {
    let seconds = measure {
        DispatchQueue.concurrentPerform(iterations: (inputs.count + 63) / 64) { chunk in
            for index in chunk * 64..<min(inputs.count, chunk * 64 + 64) {
                let (message, signature, key) = inputs[index]
                precondition(try! Curve25519.Signing.PublicKey(rawRepresentation: key).isValidSignature(signature, for: message))
            }
        }
    }
    return Double(inputs.count) / seconds
}

func micro() -> Double {
    print("Signing fixtures…")
    let events = signedEvents(8_000)
    let rates = verifyRates(events)
    record("raw swift-crypto Ed25519 verify, 1 thread (baseline)", rates.raw1, "verify/s")
    record("raw swift-crypto Ed25519 verify, 2 threads (baseline)", rates.raw2, "verify/s")
    record(
        "strict verify, 1 thread", rates.strict1, "verify/s", target: "≥ 0.9× raw 1 thread (\(Int(rates.raw1 * 0.9)))", met: rates.strict1 >= 0.9 * rates.raw1)
    record(
        "strict verify, 2 threads", rates.strict2, "verify/s", target: "≥ 0.9× raw 2 threads (\(Int(rates.raw2 * 0.9)))", met: rates.strict2 >= 0.9 * rates.raw2
    )

    // Canonicalize and hash: parse the wire bytes strictly, validate the event, hash its content and envelope.
    let wires = events.map(\.wire)
    let average = Double(wires.reduce(0) { $0 + $1.count }) / Double(wires.count)
    var sink = 0
    let seconds = best(40) {
        for wire in wires {
            sink &+= try! VerifiedEvent.canonicalizeAndHash(wire).hash.utf8.count
        }
    }
    precondition(sink > 0)
    let rate = Double(wires.count) / seconds
    record("canonicalize + hash a \(Int(average))-byte event, 1 core", rate, "events/s", target: "≥ 200,000/s", met: rate >= 200_000)
    encryptionMicro()
    return rates.raw2
}

/// Sealing and opening content, and starting an epoch in a large room (docs/PROTOCOL.md §14).
func encryptionMicro() {
    var system = SystemRandomNumberGenerator()
    let key = RoomKey.random(using: &system)
    // The generator `Node` seals with.
    var generator = BufferedRandom()
    let body = String(repeating: "x", count: 1024 - 40)
    let content = JSONObject(["msgtype": "text", "body": .string(body)])
    let associatedData = RoomCipher.associatedData(
        eventID: "bench::20260101T000000.000Z::00000000-0000-4000-8000-000000000000", roomID: "bench", timestampMs: 1, senderID: "alice",
        senderKey: String(repeating: "A", count: 43) + "=", seq: 2, parentEventID: nil, prevEventHash: String(repeating: "0", count: 64))
    let rounds = 20_000
    var sink = 0
    // The cipher alone: AES-256-GCM seal and open of the 1 KiB plaintext bytes with the envelope as associated data.
    let plaintext = CanonicalJSON.encode(.object(JSONObject(["type": .string(EventType.message), "content": .object(content)])))
    let aeadKey = SymmetricKey(data: key.bytes)
    let nonce = AES.GCM.Nonce()
    let aeadSeconds = best(5) {
        for _ in 0..<rounds {
            let box = try! AES.GCM.seal(plaintext, using: aeadKey, nonce: nonce, authenticating: associatedData)
            sink &+= try! AES.GCM.open(box, using: aeadKey, authenticating: associatedData).count
        }
    }
    let aeadRate = Double(rounds) / aeadSeconds
    record(
        "seal + open a 1 KiB message, AES-256-GCM with the envelope as associated data, 1 core", aeadRate, "messages/s", target: "≥ 100,000/s",
        met: aeadRate >= 100_000)
    let seconds = best(5) {
        for _ in 0..<rounds {
            let sealed = RoomCipher.seal(type: EventType.message, content: content, key: key, associatedData: associatedData, using: &generator)
            guard case .encrypted(let parsed) = try! EventContent.parse(type: EventType.encrypted, content: sealed, roomID: "bench") else { fatalError() }
            sink &+= try! RoomCipher.open(parsed, key: key, associatedData: associatedData).content.count
        }
    }
    precondition(sink > 0)
    let rate = Double(rounds) / seconds
    record(
        "seal + open a 1 KiB message as event content: JSON plaintext, AES-256-GCM, base64, parse, key id check, 1 core", rate, "messages/s",
        target: "≥ 100,000/s", met: rate >= 100_000)

    // A new epoch for 1,000 member devices: seal the key to each with HPKE, split into events under 64 KiB.
    let devices = (0..<1_000).map { index -> (String, [UInt8]) in
        let signing = Base64.encode(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation)
        return (signing, Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation))
    }
    var events = 0
    let rotation = best(3) {
        let fresh = RoomKey.random(using: &system)
        var batch: [SealedRoomKey] = []
        var size = 0
        events = 0
        for (signing, exchange) in devices {
            let sealed = try! KeySeal.seal(fresh, roomID: "bench", senderKey: signing, recipientKey: signing, exchangeKey: exchange)
            let entry = RoomKeyContent.entryBytes(sealed)
            if size + entry > Event.maxWireBytes - 2048 {
                sink &+= CanonicalJSON.encode(.object(RoomKeyContent(keyID: fresh.keyID, recipients: batch).jsonObject)).count
                events += 1
                batch = []
                size = 0
            }
            batch.append(sealed)
            size += entry
        }
        sink &+= CanonicalJSON.encode(.object(RoomKeyContent(keyID: fresh.keyID, recipients: batch).jsonObject)).count
        events += 1
    }
    record("start an epoch for 1,000 devices (\(events) m.room.key contents), 1 core", rotation * 1000, "ms", target: "≤ 100 ms", met: rotation <= 0.1)
}

/// `count` signed 1 KiB events of an 8-member room as JSON lines, written once per work directory.
func importFixture(workdir: String, count: Int) -> String {
    // "-ordered": files written before the setup was sorted are not reused.
    let file = workdir + "/import-\(count)-ordered.jsonl"
    if !FileManager.default.fileExists(atPath: file) {
        print("Writing \(count) signed 1 KiB events…")
        try! RoomFixture.write(count: count, members: 8, eventBytes: 1024, to: file + ".tmp")
        try! FileManager.default.moveItem(atPath: file + ".tmp", toPath: file)
    }
    return file
}

/// Records where the CPU time of a verifying workload (an import, a sync) goes, per event, beside the raw
/// verification of as many events. The throughput ratio is (raw verify CPU ÷ the workload's CPU) × (how busy the
/// workload kept the cores), as far as verification costs the same inside the workload as alone: what it adds, and
/// what it leaves idle.
func recordCPUDecomposition(_ workload: String, verifySeconds: [Double], workSeconds: [Double], busy: [Double]) {
    let verify = median(verifySeconds) * 1e6
    let work = median(workSeconds) * 1e6
    record("CPU time per event: raw verify, in the sustained baseline (median of 3)", verify, "µs")
    record("CPU time per event: \(workload), every thread (median of 3)", work, "µs")
    record(
        "\(workload)'s CPU time beyond raw verify, per event, as a share of raw verify", (work - verify) / verify, "×",
        target: "≤ 0.25 for 0.8× with every core busy", met: work - verify <= 0.25 * verify)
    record("how busy \(workload) kept the cores (CPU time ÷ wall time ÷ cores, median of 3)", median(busy), "×")
}

func importBenchmark(parley: String, workdir: String, count: Int, rawTwoThreads: Double) {
    let file = importFixture(workdir: workdir, count: count)
    let inputs = signatureInputs(file: file)
    var rates: [Double] = []
    var baselines: [Double] = []
    var ratios: [Double] = []
    var verifyCPU: [Double] = []
    var importCPU: [Double] = []
    var busy: [Double] = []
    let lines = Double(count + 2 * 8)
    for run in 0..<3 {
        let home = workdir + "/import-home-\(run)"
        try? FileManager.default.removeItem(atPath: home)
        precondition(runProcess(parley, ["--home", home, "init", "--user", "bench"]).status == 0)
        // The baseline right before each import, over the same events: a pair measured in the same few seconds.
        let cpuBefore = ownCPUSeconds()
        let baseline = sustainedRawVerifyRate(inputs)
        verifyCPU.append((ownCPUSeconds() - cpuBefore) / Double(inputs.count))
        let result = runProcess(parley, ["--home", home, "import", file])
        precondition(result.status == 0, "import failed")
        let rate = lines / result.seconds
        rates.append(rate)
        baselines.append(baseline)
        ratios.append(rate / baseline)
        importCPU.append(result.cpuSeconds / lines)
        busy.append(result.cpuSeconds / result.seconds / Double(ProcessInfo.processInfo.activeProcessorCount))
        try? FileManager.default.removeItem(atPath: home)
    }
    recordCPUDecomposition("the import", verifySeconds: verifyCPU, workSeconds: importCPU, busy: busy)
    let rate = median(rates)
    record(
        "parley import of \(count) signed 1 KiB events into an empty store, end to end (median of 3)", rate, "events/s",
        target: "≥ 0.8× 2-thread raw verify, burst (\(Int(0.8 * rawTwoThreads)))", met: rate >= 0.8 * rawTwoThreads)
    record("raw swift-crypto Ed25519 verify of those events, 2 threads, sustained (median of 3, each just before an import)", median(baselines), "verify/s")
    record("import ÷ the sustained raw verify just before it (median of 3 pairs)", median(ratios), "×", target: "≥ 0.8", met: median(ratios) >= 0.8)
    let home = workdir + "/import-home-rss"
    try? FileManager.default.removeItem(atPath: home)
    precondition(runProcess(parley, ["--home", home, "init", "--user", "bench"]).status == 0)
    record("peak RSS of that import", Double(peakRSS(parley, ["--home", home, "import", file])) / 1024, "MiB")
    try? FileManager.default.removeItem(atPath: home)
}

/// A home holding one room of `roomEvents` messages by 32 members (400-byte events), built once per workdir.
func bigRoomHome(parley: String, workdir: String, roomEvents: Int) -> String {
    let home = workdir + "/room-\(roomEvents)"
    let marker = home + "/.complete"
    if !FileManager.default.fileExists(atPath: marker) {
        try? FileManager.default.removeItem(atPath: home)
        let file = workdir + "/room-\(roomEvents).jsonl"
        print("Writing a room of \(roomEvents) events…")
        try! RoomFixture.write(count: roomEvents, members: 32, eventBytes: 400, to: file)
        precondition(runProcess(parley, ["--home", home, "init", "--user", "reader"]).status == 0)
        print("Importing it…")
        let result = runProcess(parley, ["--home", home, "import", file])
        precondition(result.status == 0, "import failed")
        record("parley import of a \(roomEvents)-event room (400-byte events)", Double(roomEvents) / result.seconds, "events/s")
        try? FileManager.default.removeItem(atPath: file)
        precondition(FileManager.default.createFile(atPath: marker, contents: nil))
    }
    return home
}

func logBenchmark(parley: String, workdir: String, roomEvents: Int, hello: String) {
    let home = bigRoomHome(parley: parley, workdir: workdir, roomEvents: roomEvents)
    // In process: the query and timeline resolution alone, on a warm and on a cold store.
    let store = try! EventStore(path: home + "/parley.sqlite")
    var warm: [Double] = []
    for _ in 0..<30 { warm.append(measure { precondition(try! store.timeline(roomID: RoomFixture.roomID, limit: 50).count == 50) }) }
    record(
        "log: newest 50 items of a \(roomEvents)-event room, query and resolution (median)", median(warm) * 1000, "ms", target: "≤ 50 ms",
        met: median(warm) <= 0.050)
    // The whole command, process start to exit.
    var wall: [Double] = []
    var helloWall: [Double] = []
    for _ in 0..<21 {
        let result = runProcess(parley, ["--home", home, "log", RoomFixture.roomID, "--limit", "50"])
        precondition(result.status == 0)
        wall.append(result.seconds)
        helloWall.append(runProcess(hello, []).seconds)
    }
    record("start-up and exit of a Swift hello-world importing Foundation (median, for reference)", median(helloWall) * 1000, "ms")
    record(
        "parley log --limit 50 on that room, whole command from exec to exit (median of 21)", median(wall) * 1000, "ms", target: "≤ 50 ms",
        met: median(wall) <= 0.050)
    let helloRSS = (0..<5).map { _ in Double(peakRSS(hello, [])) }
    let baseline = median(helloRSS)
    let peak = Double((0..<5).map { _ in peakRSS(parley, ["--home", home, "log", RoomFixture.roomID, "--limit", "50"]) }.max()!)
    record("peak RSS of a Swift hello-world importing Foundation (baseline)", baseline / 1024, "MiB")
    record(
        "peak RSS of parley log on that room", peak / 1024, "MiB", target: "≤ 1.7× baseline (\(String(format: "%.1f", 1.7 * baseline / 1024)) MiB)",
        met: peak <= 1.7 * baseline)
}

// MARK: Main

/// The first argument that is neither an option nor an option's value.
let mode: String = {
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        if argument.hasPrefix("--") { _ = arguments.next() } else { return argument }
    }
    return "all"
}()
let modes = [
    "all", "micro", "import", "log", "bucket", "encryption", "profile-encrypted-send", "profile-encrypted-import", "profile-seal", "follow", "profile-import",
    "profile-canonical", "profile-send", "api", "nodes", "catchup", "files", "receipts", "query", "reconcile", "peers",
]
guard modes.contains(mode) else {
    FileHandle.standardError.write(Data("unknown benchmark \(mode); one of: \(modes.joined(separator: ", "))\n".utf8))
    exit(2)
}
let workdir = argument("--workdir", default: NSTemporaryDirectory() + "parley-bench")
try? FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true)
let parley = argument("--parley", default: FileManager.default.currentDirectoryPath + "/.build/release/parley")
let hello = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("hello-foundation").path
let events = Int(argument("--events", default: "100000"))!
let roomEvents = Int(argument("--room-events", default: "1000000"))!

print("Parley benchmarks, \(ProcessInfo.processInfo.activeProcessorCount) cores, release build")
if mode == "profile-import" {
    // Where import time goes: verification alone, then the store alone, on the same lines.
    let path = argument("--file", default: "")
    let lines = try! String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { Array($0.utf8) }
    let rawRate = sustainedRawVerifyRate(signatureInputs(file: path))
    var verified: [[Result<VerifiedEvent, EventError>]] = []
    verified.reserveCapacity(lines.count / 2048 + 1)
    let verifySeconds = measure {
        for start in stride(from: 0, to: lines.count, by: 2048) {
            verified.append(VerifiedEvent.verifyInParallel(Array(lines[start..<min(lines.count, start + 2048)])))
        }
    }
    let directory = NSTemporaryDirectory() + "parley-profile-\(getpid())"
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let store = try! EventStore(path: directory + "/s.sqlite")
    var index = 0
    var before = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &before)
    let storeSeconds = measure {
        for (batch, results) in verified.enumerated() {
            let start = batch * 2048
            _ = try! store.ingest(verified: results, lines: Array(lines[start..<min(lines.count, start + 2048)]), receivedMs: 0)
            index += 1
        }
    }
    var after = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &after)
    let user = Double(after.ru_utime.tv_sec - before.ru_utime.tv_sec) + Double(after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6
    let system = Double(after.ru_stime.tv_sec - before.ru_stime.tv_sec) + Double(after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6
    print(
        "raw verify, 2 threads: \(Int(rawRate))/s; parse + verify: \(Int(Double(lines.count) / verifySeconds)) events/s; store: \(Int(Double(lines.count) / storeSeconds)) events/s (wall \(storeSeconds) s, user \(user) s, system \(system) s); peak RSS before the store \(before.ru_maxrss / 1024) MiB, after \(after.ru_maxrss / 1024) MiB"
    )
    try? FileManager.default.removeItem(atPath: directory)
    exit(0)
}
if mode == "profile-send" {
    // For `perf record`: only the bucket writer (sign, store, flush) and then, unless --read no, one reader's sync.
    let directory = workdir + "/profile-send"
    try? FileManager.default.removeItem(atPath: directory)
    let url = try! BucketURL("file://\(directory)/objects")
    let sender = BucketClient(node: benchNode(directory, "sender"))
    _ = blocking { try await sender.createRoom("bench", bucket: url) }
    let outgoing = Array(repeating: OutgoingEvent.message(kibibyteText), count: 1000)
    var publishSeconds = 0.0
    var flushSeconds = 0.0
    for _ in 0..<(events / 1000) {
        publishSeconds += measure { try! sender.node.publish(roomID: "bench", outgoing) }
        flushSeconds += measure { _ = blocking { try await sender.flush("bench") } }
    }
    print("publish \(Int(Double(events) / publishSeconds))/s, flush \(Int(Double(events) / flushSeconds))/s")
    guard argument("--read", default: "yes") == "yes" else { exit(0) }
    let reader = BucketClient(node: benchNode(directory, "reader"))
    try! reader.node.store.addTransportRoom(
        .bucket, roomID: "bench", location: url.text, creatorFingerprint: InviteCode.fingerprint(ofKey: sender.node.identity.signingKeyBase64)!)
    let syncSeconds = measure { _ = blocking { try await reader.sync("bench") } }
    print("sync \(Int(Double(events) / syncSeconds))/s")
    exit(0)
}
if mode == "profile-canonical" {
    // For `perf record`: only the canonicalize-and-hash loop, for a few seconds.
    let wires = signedEvents(2_000).map(\.wire)
    var sink = 0
    for _ in 0..<Int(argument("--loops", default: "150"))! {
        for wire in wires {
            sink &+= try! VerifiedEvent.canonicalizeAndHash(wire).hash.utf8.count
        }
    }
    print(sink)
    exit(0)
}
if mode == "profile-seal" {
    // For `perf record`: sealing and opening 1 KiB messages as event content, as the micro benchmark does.
    var system = SystemRandomNumberGenerator()
    let key = RoomKey.random(using: &system)
    // The generator `Node` seals with.
    var generator = BufferedRandom()
    let content = JSONObject(["msgtype": "text", "body": .string(String(repeating: "x", count: 1024 - 40))])
    let associatedData = RoomCipher.associatedData(
        eventID: "bench::20260101T000000.000Z::00000000-0000-4000-8000-000000000000", roomID: "bench", timestampMs: 1, senderID: "alice",
        senderKey: String(repeating: "A", count: 43) + "=", seq: 2, parentEventID: nil, prevEventHash: String(repeating: "0", count: 64))
    var sink = 0
    for _ in 0..<Int(argument("--rounds", default: "300000"))! {
        let sealed = RoomCipher.seal(type: EventType.message, content: content, key: key, associatedData: associatedData, using: &generator)
        guard case .encrypted(let parsed) = try! EventContent.parse(type: EventType.encrypted, content: sealed, roomID: "bench") else { fatalError() }
        sink &+= try! RoomCipher.open(parsed, key: key, associatedData: associatedData).content.count
    }
    print(sink)
    exit(0)
}
if mode == "profile-encrypted-import" {
    // For `perf record`: one import of 20,000 messages, encrypted unless --plain yes.
    let encrypted = argument("--plain", default: "no") == "no"
    let (home, file, count) = importFixture(workdir: workdir, encrypted: encrypted)
    let reader = try! Node(home: ParleyHome(path: home))
    let seconds = measure { importInto(reader, file: file, count: count, encrypted: encrypted) }
    print("\(Int(Double(count) / seconds)) events/s")
    exit(0)
}
if mode == "profile-encrypted-send" {
    // For `perf record`: steady-state sends in a 1,000-member encrypted room.
    let node = try! roomWithMembers(
        workdir: workdir, name: "profile-encrypted", members: Int(argument("--members", default: "1000"))!,
        encrypted: argument("--plain", default: "no") == "no")
    _ = try! node.send("room", text: "first")
    for _ in 0..<Int(argument("--messages", default: "1000"))! { _ = try! node.send("room", text: String(repeating: "y", count: 900)) }
    exit(0)
}
var rawTwo = 0.0
if mode == "all" || mode == "micro" || mode == "import" || mode == "bucket" { rawTwo = micro() }
if mode == "all" || mode == "import" { importBenchmark(parley: parley, workdir: workdir, count: events, rawTwoThreads: rawTwo) }
if mode == "all" || mode == "log" { logBenchmark(parley: parley, workdir: workdir, roomEvents: roomEvents, hello: hello) }
if mode == "all" || mode == "bucket" {
    bucketBenchmarks(workdir: workdir, count: events, rawTwoThreads: rawTwo, parley: parley, hello: hello)
    deliveryBenchmark(workdir: workdir, messages: Int(argument("--messages", default: "200"))!)
    followRSSBenchmark(workdir: workdir, parley: parley, hello: hello, seconds: Int(argument("--follow-seconds", default: "20"))!)
}
if mode == "all" || mode == "encryption" {
    if mode == "encryption" { encryptionMicro() }
    encryptionRoomBenchmarks(workdir: workdir)
}
if mode == "all" || mode == "api" {
    blocking { try await apiBenchmarks(workdir: workdir, messages: Int(argument("--api-messages", default: "2000"))!) }
}
if mode == "all" || mode == "nodes" {
    blocking { try await nodeBenchmarks(workdir: workdir, parley: parley, messages: Int(argument("--node-messages", default: "100"))!) }
}
if mode == "all" || mode == "catchup" {
    catchUpBenchmark(workdir: workdir, parley: parley, events: Int(argument("--catchup-events", default: "25000"))!, perFile: 5)
    archivedCatchUpBenchmark(
        workdir: workdir, parley: parley, days: Int(argument("--catchup-days", default: "10"))!,
        filesPerDay: Int(argument("--catchup-files-per-day", default: "1000"))!, perFile: 5)
}
if mode == "all" || mode == "files" { fileBenchmarks(workdir: workdir, parley: parley, megabytes: Int(argument("--file-megabytes", default: "1024"))!) }
if mode == "all" || mode == "query" { queryBenchmarks(parley: parley, workdir: workdir, roomEvents: roomEvents) }
if mode == "all" || mode == "receipts" {
    receiptBenchmarks(
        workdir: workdir, members: Int(argument("--receipt-members", default: "100"))!, seconds: Int(argument("--receipt-seconds", default: "7200"))!)
}
if mode == "all" || mode == "reconcile" || mode == "peers" { reconciliationBenchmark(count: Int(argument("--reconcile-events", default: "100000"))!) }
if mode == "all" || mode == "peers" {
    peerSimulationBenchmarks(parley: parley, workdir: workdir, partitionSeconds: Int(argument("--partition-seconds", default: "60"))!)
}
if mode == "follow" { followRSSBenchmark(workdir: workdir, parley: parley, hello: hello, seconds: Int(argument("--follow-seconds", default: "20"))!) }

print("")
print("| claim | measured | target | |")
print("|---|---|---|---|")
for result in results {
    let value = result.value >= 100 ? String(Int(result.value.rounded())) : String(format: result.unit == "×" ? "%.2f" : "%.1f", result.value)
    print("| \(result.claim) | \(value) \(result.unit) | \(result.target) | \(result.verdict) |")
}
