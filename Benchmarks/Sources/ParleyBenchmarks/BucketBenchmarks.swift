// The bucket transport's figures (issue: Bucket Chat transport; docs/BENCHMARKS.md).

import Foundation
import ParleyBucket
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyStore
import ParleySync

#if canImport(Glibc)
    import Glibc
#endif

/// A node in a fresh home under `workdir`.
func benchNode(_ workdir: String, _ user: String) -> Node {
    let home = ParleyHome(path: "\(workdir)/\(user)")
    try? FileManager.default.removeItem(atPath: home.path)
    _ = try! Identity.create(userID: user, home: home)
    return try! Node(home: home)
}

/// Runs async work from the synchronous benchmark driver.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.result = await Result { try await body() }
        done.signal()
    }
    done.wait()
    return try! box.result!.get()
}

final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// A 1 KiB message body.
let kibibyteText = String(repeating: "parley bucket benchmark text ", count: 36).prefix(1000).description

func bucketBenchmarks(workdir: String, count: Int, rawTwoThreads: Double, parley: String, hello: String) {
    let directory = workdir + "/bucket"
    try? FileManager.default.removeItem(atPath: directory)
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let url = try! BucketURL("file://\(directory)/objects")

    // 1. One client writing into a folder bucket: the application signs and stores bursts of 1,000 messages while
    // the buffer manager flushes in the background (as `parley sync --watch` does), until the outbox is empty.
    let sender = benchNode(directory, "sender")
    let sendCounter = CountingStore(try! url.open())
    let senderClient = BucketClient(node: sender) { _ throws(BucketError) in sendCounter }
    _ = blocking { try await senderClient.createRoom("bench", bucket: url) }
    // Readers pin the room's creator, as an invite code would tell them.
    let creator = InviteCode.fingerprint(ofKey: sender.identity.signingKeyBase64)!
    sendCounter.reset()
    let burst = 1000
    let outgoing = Array(repeating: OutgoingEvent.message(kibibyteText), count: burst)
    let state = FlusherState()
    let sendSeconds = measure {
        let finished = DispatchSemaphore(value: 0)
        let flusher = Thread {
            while true {
                let stillPublishing = state.publishing
                let report = blocking { try await senderClient.flush("bench") }
                state.add(flushes: report.files.count)
                if report.events == 0 && !stillPublishing { break }
                if report.events == 0 { usleep(1000) }
            }
            finished.signal()
        }
        flusher.start()
        for _ in 0..<(count / burst) { try! sender.publish(roomID: "bench", outgoing) }
        state.publishing = false
        finished.wait()
    }
    let flushes = state.flushes
    precondition(try! sender.outboxStatus("bench").pending == 0)
    let sendRate = Double(count) / sendSeconds
    record(
        "events/s one client writes into a folder bucket (sign + store, flushed in the background; 1 KiB messages in bursts of 1,000)", sendRate, "events/s",
        target: "≥ 20,000/s", met: sendRate >= 20_000)
    let puts = sendCounter.snapshot["put", default: 0]
    record("PUT requests per flush (sender, \(flushes) flushes)", Double(puts) / Double(flushes), "PUT/flush", target: "1", met: puts == flushes)

    // 2. A second client reads it all: list, download, verify, chain, authorize, store.
    var ingestRates: [Double] = []
    var ingestRatios: [Double] = []
    var receiveCounts: [String: Int] = [:]
    var verifyCPU: [Double] = []
    var syncCPU: [Double] = []
    var busy: [Double] = []
    // The baseline: the same number of 1 KiB events as the bucket holds, verified just before each sync.
    let inputs = signatureInputs(file: importFixture(workdir: workdir, count: count))
    for run in 0..<3 {
        let reader = benchNode(directory, "reader\(run)")
        let counter = CountingStore(try! url.open())
        let client = BucketClient(node: reader) { _ throws(BucketError) in counter }
        try! reader.store.addTransportRoom(.bucket, roomID: "bench", location: url.text, creatorFingerprint: creator)
        var accepted = 0
        let cpuBefore = ownCPUSeconds()
        let baseline = sustainedRawVerifyRate(inputs)
        let cpuBetween = ownCPUSeconds()
        let seconds = measure { accepted = blocking { try await client.sync("bench") }.accepted.count }
        let cpuAfter = ownCPUSeconds()
        // The room's create and join come from its metadata.json, pinned to the creator, before the log files.
        precondition(accepted == count || accepted == count + 2, "the reader accepted \(accepted) events")
        verifyCPU.append((cpuBetween - cpuBefore) / Double(inputs.count))
        syncCPU.append((cpuAfter - cpuBetween) / Double(accepted))
        busy.append((cpuAfter - cpuBetween) / seconds / Double(ProcessInfo.processInfo.activeProcessorCount))
        ingestRates.append(Double(accepted) / seconds)
        ingestRatios.append(Double(accepted) / seconds / baseline)
        receiveCounts = counter.snapshot
    }
    recordCPUDecomposition("the sync", verifySeconds: verifyCPU, workSeconds: syncCPU, busy: busy)
    let ingest = median(ingestRates)
    record(
        "events/s a second client ingests from that bucket (median of 3)", ingest, "events/s",
        target: "≥ 0.8× 2-thread raw verify, burst (\(Int(0.8 * rawTwoThreads)))", met: ingest >= 0.8 * rawTwoThreads)
    record(
        "ingest ÷ the sustained raw verify of as many events just before it (median of 3 pairs)", median(ingestRatios), "×",
        target: "≥ 0.8", met: median(ingestRatios) >= 0.8)
    let perThousand = 1000.0 / Double(count)
    record(
        "requests per 1,000 events received (first sync: LIST pages + GETs)",
        Double(receiveCounts["list", default: 0] + receiveCounts["get", default: 0]) * perThousand, "requests")

    // 3. LIST requests per poll as history grows: a client following the room after every flush.
    let follower = benchNode(directory, "follower")
    let followCounter = CountingStore(try! url.open())
    let followClient = BucketClient(node: follower) { _ throws(BucketError) in followCounter }
    try! follower.store.addTransportRoom(.bucket, roomID: "bench", location: url.text, creatorFingerprint: creator)
    _ = blocking { try await followClient.sync("bench") }
    var listsPerPoll: [Int] = []
    for _ in 0..<20 {
        try! sender.publish(roomID: "bench", Array(repeating: OutgoingEvent.message("small"), count: 50))
        _ = blocking { try await senderClient.flush("bench") }
        followCounter.reset()
        _ = blocking { try await followClient.sync("bench") }
        listsPerPoll.append(followCounter.snapshot["list", default: 0])
    }
    record(
        "LIST requests per poll with \(count / burst + 20) files of history", Double(listsPerPoll.max()!), "LIST/poll",
        target: "constant (2: logs after the cursor, hints)", met: listsPerPoll.allSatisfy { $0 == 2 })
}

/// Delivery latency between two clients on an S3 server, the receiver polling every 250 ms.
func deliveryBenchmark(workdir: String, messages: Int) {
    let environment = ProcessInfo.processInfo.environment
    guard let endpoint = environment["PARLEY_TEST_S3_ENDPOINT"] else {
        print("No S3 server (PARLEY_TEST_S3_ENDPOINT); skipping the delivery benchmark.")
        return
    }
    let directory = workdir + "/delivery"
    try? FileManager.default.removeItem(atPath: directory)
    let url = try! BucketURL("s3://parley-test/bench-\(getpid())/?endpoint=\(endpoint)")
    let aws = ["AWS_ACCESS_KEY_ID": environment["PARLEY_TEST_S3_KEY_ID"] ?? "x", "AWS_SECRET_ACCESS_KEY": environment["PARLEY_TEST_S3_SECRET"] ?? "x"]
    let open: @Sendable (BucketURL) throws(BucketError) -> any ObjectStore = { url throws(BucketError) in try url.open(environment: aws) }
    let alice = BucketClient(node: benchNode(directory, "alice"), open: open)
    let bob = BucketClient(node: benchNode(directory, "bob"), open: open)
    _ = blocking { try await alice.createRoom("latency", bucket: url) }
    try! alice.node.invite("latency", userID: "bob", key: bob.node.identity.signingKeyBase64)
    let code = try! alice.inviteCode("latency")!
    _ = blocking { try await alice.flush("latency") }
    _ = blocking { try await bob.join(code) }

    // The receiver polls every 250 ms on its own task; the sender sends at irregular moments and flushes at once.
    let latencies = LatencyLog()
    let receiver = Task {
        while !Task.isCancelled {
            let started = Node.systemClock()
            if let report = try? await bob.sync("latency") {
                let arrived = Node.systemClock()
                for id in report.accepted { if let sent = EventID.timestampMs(of: id) { latencies.add(Double(arrived - sent)) } }
            }
            let elapsed = Node.systemClock() - started
            try? await Task.sleep(nanoseconds: UInt64(max(0, 250 - elapsed)) * 1_000_000)
        }
    }
    for _ in 0..<messages {
        usleep(UInt32.random(in: 50_000...400_000))
        try! alice.node.send("latency", text: "ping")
        _ = blocking { try await alice.flush("latency") }
    }
    while latencies.count < messages { usleep(50_000) }
    receiver.cancel()
    let sorted = latencies.values.sorted()
    let p50 = sorted[sorted.count / 2]
    let p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
    record("delivery latency p50, moto, 250 ms poll (\(messages) messages)", p50, "ms", target: "≤ 400 ms", met: p50 <= 400)
    record("delivery latency p99, moto, 250 ms poll", p99, "ms", target: "≤ 1,000 ms", met: p99 <= 1000)
}

final class FlusherState: @unchecked Sendable {
    private let lock = NSLock()
    private var isPublishing = true
    private var count = 0
    var publishing: Bool {
        get { lock.withLock { isPublishing } }
        set { lock.withLock { isPublishing = newValue } }
    }
    var flushes: Int { lock.withLock { count } }
    func add(flushes: Int) { lock.withLock { count += flushes } }
}

final class LatencyLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Double] = []
    func add(_ value: Double) { lock.withLock { items.append(value) } }
    var count: Int { lock.withLock { items.count } }
    var values: [Double] { lock.withLock { items } }
}

/// Peak RSS of `parley sync --watch` following a busy folder-bucket room for `seconds`.
func followRSSBenchmark(workdir: String, parley: String, hello: String, seconds: Int) {
    let directory = workdir + "/follow"
    try? FileManager.default.removeItem(atPath: directory)
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let url = try! BucketURL("file://\(directory)/objects")
    let sender = BucketClient(node: benchNode(directory, "sender"))
    _ = blocking { try await sender.createRoom("busy", bucket: url) }
    let watcherHome = directory + "/watcher"
    precondition(runProcess(parley, ["--home", watcherHome, "init", "--user", "watcher"]).status == 0)
    try! sender.node.invite("busy", userID: "watcher", key: try! Identity.load(home: ParleyHome(path: watcherHome)).signingKeyBase64)
    _ = blocking { try await sender.flush("busy") }
    let code = try! sender.inviteCode("busy")!.text
    precondition(runProcess(parley, ["--home", watcherHome, "room", "join", code]).status == 0)

    // The watcher runs under GNU time, which reports its peak RSS when it is stopped.
    let report = directory + "/rss"
    var pid: pid_t = 0
    let command: [String] = ["/usr/bin/time", "-f", "%M", "-o", report, parley, "--home", watcherHome, "sync", "--watch", "--interval", "0.25"]
    let argv = command.map { strdup($0) } + [nil]
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    precondition(posix_spawn(&pid, "/usr/bin/time", &actions, nil, argv, environ) == 0)
    // A busy room: 20 messages every 100 ms (200 events/s), each burst its own file.
    let deadline = now() + Double(seconds)
    var sent = 0
    while now() < deadline {
        try! sender.node.publish(roomID: "busy", Array(repeating: OutgoingEvent.message(kibibyteText), count: 20))
        _ = blocking { try await sender.flush("busy") }
        sent += 20
        usleep(100_000)
    }
    // Stop the watcher (SIGTERM: a background shell may have set SIGINT to be ignored); time still writes its report.
    let watcherPID = try! String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8).split(separator: " ").first.flatMap { Int32($0) }
    if let watcherPID { kill(watcherPID, SIGTERM) }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let watcherKiB = Int((try? String(contentsOfFile: report, encoding: .utf8))?.split(separator: "\n").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
    let helloKiB = peakRSS(hello, [])
    record(
        "peak RSS of parley sync --watch following a room at 200 events/s for \(seconds) s (\(sent) events)", Double(watcherKiB) / 1024, "MiB",
        target: "≤ 30 MB", met: Double(watcherKiB) * 1024 <= 30_000_000)
    record("peak RSS of the Foundation hello-world (for scale)", Double(helloKiB) / 1024, "MiB")
}
