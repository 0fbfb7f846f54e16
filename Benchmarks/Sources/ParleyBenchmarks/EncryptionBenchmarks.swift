import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyStore

/// A node that created `roomID` (encrypted with epoch keys or not) and `members - 1` fixture devices that joined it.
func roomWithMembers(workdir: String, name: String, members: Int, encrypted: Bool) throws -> Node {
    let path = workdir + "/" + name
    try? FileManager.default.removeItem(atPath: path)
    let home = ParleyHome(path: path)
    _ = try Identity.create(userID: "owner", home: home)
    let node = try Node(home: home)
    let roomID = "room"
    _ = try node.createRoom(roomID, encryption: encrypted ? .epochs(history: .joined) : nil)
    let devices = (1..<members).map(RoomFixture.device)
    try node.publish(
        roomID: roomID,
        devices.map { user, key, _ in
            OutgoingEvent(
                type: EventType.member,
                content: MemberContent(membership: .invite, userID: user, devices: [DeviceBinding(signingKey: key.publicKeyBase64)]).jsonObject)
        })
    // After the invites, whose time may run ahead of the clock (each event of a chain is later than the last).
    let joinTime = max(node.clock(), try node.store.latestTimestamp(roomID: roomID) ?? 0) + 1
    var generator = SystemRandomNumberGenerator()
    let joins = devices.map { user, key, exchange in
        key.signEvent(
            roomID: roomID, type: EventType.member,
            content: MemberContent(membership: .join, userID: user, devices: [DeviceBinding(signingKey: key.publicKeyBase64, exchangeKey: exchange)])
                .jsonObject,
            senderID: user, seq: 1, previousHash: nil, timestampMs: joinTime, eventID: EventID.make(roomID: roomID, timestampMs: joinTime, using: &generator))
    }
    let report = try node.store.ingest(events: joins, receivedMs: joinTime)
    precondition(report.outcomes.allSatisfy(\.isAccepted), "joins refused: \(report.outcomes.first { !$0.isAccepted }!)")
    return node
}

/// Sending one message at a time in a 1,000-member encrypted room against a 2-member one, and importing an encrypted
/// room against a plaintext one.
func encryptionRoomBenchmarks(workdir: String) {
    let body = String(repeating: "y", count: 900)
    // The same in plaintext rooms: what the store itself costs per message as rooms grow.
    var plain: [Int: Double] = [:]
    for members in [2, 1_000] {
        let node = try! roomWithMembers(workdir: workdir, name: "plain-\(members)", members: members, encrypted: false)
        _ = try! node.send("room", text: "first")
        plain[members] = best(3) { for _ in 0..<300 { _ = try! node.send("room", text: body) } } / 300
    }
    record("send one 1 KiB message, 2-member plaintext room", plain[2]! * 1e6, "µs")
    record("send one 1 KiB message, 1,000-member plaintext room", plain[1_000]! * 1e6, "µs")
    // Both rooms are measured in each round, back to back; the ratio is the median of the rounds' ratios, so a slow
    // stretch of the machine weighs on both sides of one ratio.
    var nodes: [Int: Node] = [:]
    for members in [2, 1_000] {
        let node = try! roomWithMembers(workdir: workdir, name: "encrypted-\(members)", members: members, encrypted: true)
        // The first message starts the epoch (O(members)); what is compared is the steady state after it.
        let start = now()
        _ = try! node.send("room", text: "first")
        if members == 1_000 { record("first message in a 1,000-member encrypted room (starts the epoch: 1,000 HPKE seals)", (now() - start) * 1000, "ms") }
        nodes[members] = node
    }
    let count = 300
    var perMessage: [Int: [Double]] = [:]
    for _ in 0..<5 {
        for members in [2, 1_000] {
            perMessage[members, default: []].append(measure { for _ in 0..<count { _ = try! nodes[members]!.send("room", text: body) } } / Double(count))
        }
    }
    let ratio = median(zip(perMessage[1_000]!, perMessage[2]!).map { $0 / $1 })
    record("send one 1 KiB message, 2-member encrypted room (baseline)", median(perMessage[2]!) * 1e6, "µs")
    record(
        "send one 1 KiB message, 1,000-member encrypted room", median(perMessage[1_000]!) * 1e6, "µs",
        target: "≤ 1.2× the 2-member room (median ratio of 5 rounds \(String(format: "%.2f", ratio)))", met: ratio <= 1.2)

    // Import: a member's node takes 20,000 messages of another member, verifying, storing and (encrypted) decrypting.
    // Each round imports both rooms back to back into fresh copies of the members' nodes; the ratio is the median
    // of the rounds' ratios, so a slow stretch of the machine weighs on both sides of one ratio.
    let fixtures = [false, true].map { encrypted in importFixture(workdir: workdir, encrypted: encrypted) }
    var roundRates: [[Double]] = [[], []]
    for round in 0..<5 {
        for (kind, fixture) in fixtures.enumerated() {
            let copy = fixture.home + "-round\(round)"
            try? FileManager.default.removeItem(atPath: copy)
            try! FileManager.default.copyItem(atPath: fixture.home, toPath: copy)
            let reader = try! Node(home: ParleyHome(path: copy))
            roundRates[kind].append(Double(fixture.count) / measure { importInto(reader, file: fixture.file, count: fixture.count, encrypted: kind == 1) })
        }
    }
    let rates = [false: median(roundRates[0]), true: median(roundRates[1])]
    let importRatio = median(zip(roundRates[1], roundRates[0]).map { $0 / $1 })
    record("import 20,000 messages into a member's node, plaintext room (baseline)", rates[false]!, "events/s")
    record(
        "import 20,000 messages into a member's node, encrypted room, decrypted", rates[true]!, "events/s",
        target: "≥ 0.8× plaintext (median ratio of 5 rounds \(String(format: "%.2f", importRatio)))", met: importRatio >= 0.8)
}

/// The home of a member's node that has joined a room (closed, to be copied), and a file of the 20,000 messages of
/// another member it has not seen yet (in an encrypted room, the key events for it among them), one per line.
func importFixture(workdir: String, encrypted: Bool) -> (home: String, file: String, count: Int) {
    let body = String(repeating: "y", count: 900)
    let sender = try! roomWithMembers(workdir: workdir, name: "import-sender-\(encrypted)", members: 1, encrypted: encrypted)
    let readerHome = ParleyHome(path: workdir + "/import-reader-\(encrypted)")
    try? FileManager.default.removeItem(atPath: readerHome.path)
    _ = try! Identity.create(userID: "reader", home: readerHome)
    var setup: [[UInt8]] = []
    let join: VerifiedEvent
    do {
        let reader = try! Node(home: readerHome)
        try! sender.invite("room", userID: "reader", key: reader.identity.signingKeyBase64)
        try! sender.store.forEachEvent(roomID: "room") { setup.append($0) }
        _ = try! reader.store.ingest(lines: setup, receivedMs: 0)
        join = try! reader.join("room")
    }
    _ = try! sender.store.ingest(events: [join], receivedMs: 0)
    try! sender.publish(roomID: "room", (0..<20_000).map { OutgoingEvent.message("message \($0) \(body)") })
    var lines: [[UInt8]] = []
    try! sender.store.forEachEvent(roomID: "room") { lines.append($0) }
    let fresh = lines.filter { line in !setup.contains(line) && line != join.wire }
    let file = workdir + "/import-\(encrypted).jsonl"
    FileManager.default.createFile(atPath: file, contents: Data(fresh.map { $0 + [0x0A] }.joined()))
    return (readerHome.path, file, fresh.count)
}

/// What is timed: `parley import` of the lines, in process (batches verified on every core while a writer stores
/// and, in an encrypted room, opens earlier ones), then a decryption pass, which finds nothing when the import
/// opened everything.
func importInto(_ reader: Node, file: String, count: Int, encrypted: Bool) {
    let descriptor = open(file, O_RDONLY)
    defer { close(descriptor) }
    var input = JSONLReader(descriptor: descriptor)
    let summary = try! reader.importEvents(from: &input) { print($0) }
    precondition(summary.isClean && summary.accepted == count, "import incomplete: \(summary)")
    if encrypted { precondition(try! reader.catchUpDecryption().failed.isEmpty) }
    precondition(try! reader.store.undecryptableCount(roomID: "room") == 0, "messages left undecrypted")
}
