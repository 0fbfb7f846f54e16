import Foundation
import ParleyClient
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
    try node.publish(roomID: roomID, devices.map { user, key, _ in
        OutgoingEvent(type: EventType.member, content: MemberContent(membership: .invite, userID: user, devices: [DeviceBinding(signingKey: key.publicKeyBase64)]).jsonObject)
    })
    // After the invites, whose time may run ahead of the clock (each event of a chain is later than the last).
    let joinTime = max(node.clock(), try node.store.latestTimestamp(roomID: roomID) ?? 0) + 1
    var generator = SystemRandomNumberGenerator()
    let joins = devices.map { user, key, exchange in
        key.signEvent(
            roomID: roomID, type: EventType.member,
            content: MemberContent(membership: .join, userID: user, devices: [DeviceBinding(signingKey: key.publicKeyBase64, exchangeKey: exchange)]).jsonObject,
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
    var perMessage: [Int: Double] = [:]
    for members in [2, 1_000] {
        let node = try! roomWithMembers(workdir: workdir, name: "encrypted-\(members)", members: members, encrypted: true)
        // The first message starts the epoch (O(members)); what is compared is the steady state after it.
        let start = now()
        _ = try! node.send("room", text: "first")
        if members == 1_000 { record("first message in a 1,000-member encrypted room (starts the epoch: 1,000 HPKE seals)", (now() - start) * 1000, "ms") }
        let count = 300
        let seconds = best(3) { for _ in 0..<count { _ = try! node.send("room", text: body) } }
        perMessage[members] = seconds / Double(count)
    }
    let ratio = perMessage[1_000]! / perMessage[2]!
    record("send one 1 KiB message, 2-member encrypted room (baseline)", perMessage[2]! * 1e6, "µs")
    record("send one 1 KiB message, 1,000-member encrypted room", perMessage[1_000]! * 1e6, "µs", target: "≤ 1.2× the 2-member room (ratio \(String(format: "%.2f", ratio)))", met: ratio <= 1.2)

    // Import: a member's node takes 20,000 messages of another member, verifying, storing and (encrypted) decrypting.
    var rates: [Bool: Double] = [:]
    for encrypted in [false, true] {
        let sender = try! roomWithMembers(workdir: workdir, name: "import-sender-\(encrypted)", members: 1, encrypted: encrypted)
        let readerHome = ParleyHome(path: workdir + "/import-reader-\(encrypted)")
        try? FileManager.default.removeItem(atPath: readerHome.path)
        _ = try! Identity.create(userID: "reader", home: readerHome)
        let reader = try! Node(home: readerHome)
        try! sender.invite("room", userID: "reader", key: reader.identity.signingKeyBase64)
        var setup: [[UInt8]] = []
        try! sender.store.forEachEvent(roomID: "room") { setup.append($0) }
        _ = try! reader.store.ingest(lines: setup, receivedMs: 0)
        let join = try! reader.join("room")
        _ = try! sender.store.ingest(events: [join], receivedMs: 0)
        try! sender.publish(roomID: "room", (0..<20_000).map { OutgoingEvent.message("message \($0) \(body)") })
        var lines: [[UInt8]] = []
        try! sender.store.forEachEvent(roomID: "room") { lines.append($0) }
        let fresh = lines.filter { line in !setup.contains(line) && line != join.wire }
        let seconds = measure {
            _ = try! reader.store.ingest(lines: fresh, receivedMs: 0)
            if encrypted {
                let report = try! reader.catchUpDecryption()
                precondition(report.decrypted >= 20_000 && report.failed.isEmpty, "decryption incomplete: \(report)")
            }
        }
        rates[encrypted] = Double(fresh.count) / seconds
    }
    record("import 20,000 messages into a member's node, plaintext room (baseline)", rates[false]!, "events/s")
    record(
        "import 20,000 messages into a member's node, encrypted room, decrypted", rates[true]!, "events/s",
        target: "≥ 0.8× plaintext (\(Int(rates[false]! * 0.8)))", met: rates[true]! >= 0.8 * rates[false]!)
}
