import Foundation
import ParleyCore
import ParleyPeer
import ParleyTesting
import Testing

/// Peers as a user meets them: separate `parley node` processes on real UDP sockets on 127.0.0.1.
@Suite struct PeerCLITests {
    func runNode(_ node: ParleyCommand, port: Int, _ more: [String] = []) throws -> Subprocess {
        try Subprocess.spawn(
            ParleyCommand.executable.path, ["--home", node.home, "node", "--listen-udp", "127.0.0.1:\(port)"] + more, stdout: .null, stderr: .null)
    }

    /// The blocks a home holds.
    func blockCount(_ node: ParleyCommand) -> Int {
        let enumerator = FileManager.default.enumerator(atPath: node.home + "/blocks")
        var count = 0
        while let name = enumerator?.nextObject() as? String {
            if (enumerator?.fileAttributes?[.type] as? FileAttributeType) == .typeRegular, name.split(separator: "/").last?.count == 64 { count += 1 }
        }
        return count
    }

    func stop(_ runners: [Subprocess]) {
        for runner in runners {
            runner.kill(SIGTERM)
            _ = runner.wait()
        }
    }

    @Test func `two running nodes carry messages both ways over UDP with no bucket or relay, one of them listing the other`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("team")
        let (alicePort, bobPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
        let added = try nodes.alice.run(["peer", "add", "team", "127.0.0.1:\(bobPort)"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stdout == "team syncs with 127.0.0.1:\(bobPort)\n")
        let runners = [try runNode(nodes.alice, port: alicePort), try runNode(nodes.bob, port: bobPort)]
        defer { stop(runners) }
        #expect(try nodes.bob.run(["send", "team", "hello over udp"]).status == 0)
        #expect(try nodes.alice.waitForLog("team", containing: "hello over udp").contains("bob: hello over udp"))
        // Bob lists no peer: he answers Alice's syncs, and sends his new events where she speaks from.
        #expect(try nodes.alice.run(["send", "team", "and back"]).status == 0)
        #expect(try nodes.bob.waitForLog("team", containing: "and back").contains("alice: and back"))
    }

    @Test func `events written while a peer was down reach it by reconciliation once it is back, in either sync mode`() throws {
        for mode in ["reconcile", "bloom"] {
            let nodes = try TwoNodes()
            try nodes.shareRoom("team")
            let (alicePort, bobPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
            #expect(try nodes.alice.run(["peer", "add", "team", "127.0.0.1:\(bobPort)"]).status == 0)
            for index in 0..<30 { #expect(try nodes.bob.run(["send", "team", "offline \(index)"]).status == 0) }
            let runners = [
                try runNode(nodes.alice, port: alicePort, ["--sync", mode]),
                try runNode(nodes.bob, port: bobPort, ["--sync", mode]),
            ]
            defer { stop(runners) }
            let log = try nodes.alice.waitForLog("team", containing: "offline 29")
            for index in 0..<30 { #expect(log.contains("bob: offline \(index)  "), "\(mode): offline \(index) missing") }
        }
    }

    @Test func `a file shared in a peer room is fetched by the other running node as it arrives, and downloads once its sender is gone`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("team")
        let (alicePort, bobPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
        #expect(try nodes.alice.run(["peer", "add", "team", "127.0.0.1:\(bobPort)"]).status == 0)
        #expect(try nodes.bob.run(["peer", "add", "team", "127.0.0.1:\(alicePort)"]).status == 0)
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<700_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        let path = nodes.directory.file("plans.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let alice = try runNode(nodes.alice, port: alicePort)
        let bob = try runNode(nodes.bob, port: bobPort)
        defer { stop([bob]) }
        let sent = try nodes.alice.run(["send", "team", "--file", path, "the plans", "--json"])
        try #require(sent.status == 0, "\(sent.stderr)")
        let eventID = try JSONParser().parse(Array(sent.stdout.utf8))["event_id"]!.text
        _ = try nodes.bob.waitForLog("team", containing: "the plans")
        // Bob's node fetches the blocks on its own (700 kB: eleven 64 KiB data blocks and a root); then Alice can go.
        let deadline = Date().addingTimeInterval(20)
        while blockCount(nodes.bob) < 12, Date() < deadline { usleep(50_000) }
        #expect(blockCount(nodes.bob) == 12)
        stop([alice])
        let target = nodes.directory.file("copy.bin")
        let downloaded = try nodes.bob.run(["download", eventID, "-o", target])
        #expect(downloaded.status == 0, "\(downloaded.stderr)")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)
    }

    @Test func `download fetches a peer room's file from its peer when no node runs here`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("team")
        let alicePort = try FreePort.belowEphemeral(.udp)
        #expect(try nodes.bob.run(["peer", "add", "team", "127.0.0.1:\(alicePort)"]).status == 0)
        let path = nodes.directory.file("notes.txt")
        try Data(String(repeating: "notes ", count: 20_000).utf8).write(to: URL(fileURLWithPath: path))
        let sent = try nodes.alice.run(["send", "team", "--file", path, "--json"])
        try #require(sent.status == 0, "\(sent.stderr)")
        let eventID = try JSONParser().parse(Array(sent.stdout.utf8))["event_id"]!.text
        let alice = try runNode(nodes.alice, port: alicePort)
        defer { stop([alice]) }
        let bobPort = try FreePort.belowEphemeral(.udp)
        // Bob's node runs only until the message is here, so the download below opens a socket of its own.
        let bob = try Subprocess.spawn(
            ParleyCommand.executable.path, ["--home", nodes.bob.home, "node", "--listen-udp", "127.0.0.1:\(bobPort)"],
            environment: ProcessInfo.processInfo.environment.merging(["PARLEY_PEERS_FETCH_FILES": "false"]) { $1 }, stdout: .null, stderr: .null)
        _ = try nodes.bob.waitForLog("team", containing: "notes.txt")
        stop([bob])
        #expect(blockCount(nodes.bob) == 0)
        let target = nodes.directory.file("copy.txt")
        let downloaded = try nodes.bob.run(["download", eventID, "-o", target])
        #expect(downloaded.status == 0, "\(downloaded.stderr)")
        #expect(try String(contentsOfFile: target, encoding: .utf8) == String(repeating: "notes ", count: 20_000))
    }

    @Test func `two nodes that list no peer find each other on the LAN by multicast and sync their room`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("team")
        let (alicePort, bobPort, groupPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
        let discover = ["--discover", "239.255.77.77:\(groupPort)"]
        let runners = [
            try Subprocess.spawn(
                ParleyCommand.executable.path, ["--home", nodes.alice.home, "node", "--listen-udp", "0.0.0.0:\(alicePort)"] + discover, stdout: .null,
                stderr: .null),
            try Subprocess.spawn(
                ParleyCommand.executable.path, ["--home", nodes.bob.home, "node", "--listen-udp", "0.0.0.0:\(bobPort)"] + discover, stdout: .null,
                stderr: .null),
        ]
        defer { stop(runners) }
        #expect(try nodes.bob.run(["send", "team", "found you"]).status == 0)
        #expect(try nodes.alice.waitForLog("team", containing: "found you").contains("bob: found you"))
        #expect(try nodes.alice.run(["send", "team", "found you too"]).status == 0)
        #expect(try nodes.bob.waitForLog("team", containing: "found you too").contains("alice: found you too"))
        #expect(try nodes.alice.run(["peer", "list", "team"]).stdout == "team syncs with no peers\n", "discovered peers are not written to the home")
    }

    @Test func `an invite code lists the inviter's address, and the invited device joins through it with no bucket or relay`() throws {
        let nodes = try TwoNodes()
        #expect(try nodes.alice.run(["room", "create", "team"]).status == 0)
        let (alicePort, bobPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
        let alice = try runNode(nodes.alice, port: alicePort)
        defer { stop([alice]) }
        #expect(try nodes.alice.run(["send", "team", "before bob"]).status == 0)
        let invite = try nodes.alice.run(
            ["room", "invite", "team", "bob", "--key", nodes.bobKey, "--json"], environment: ["PARLEY_PEERS_LISTEN": "127.0.0.1:\(alicePort)"])
        #expect(invite.status == 0, "\(invite.stderr)")
        let text = try #require(try JSONParser().parse(Array(invite.stdout.utf8))["invite_code"]?.stringValue)
        #expect(try InviteCode(parsing: text).locations == [.peer(address: "127.0.0.1:\(alicePort)")])

        let joined = try nodes.bob.run(["room", "join", text])
        #expect(joined.status == 0, "\(joined.stderr)")
        #expect(try nodes.bob.run(["log", "team"]).stdout.contains("alice: before bob"))
        #expect(try nodes.alice.waitForLog("team", containing: "bob joined").contains("bob joined"))
        #expect(try nodes.bob.run(["peer", "list", "team"]).stdout == "team syncs with 127.0.0.1:\(alicePort)\n")

        let bob = try runNode(nodes.bob, port: bobPort)
        defer { stop([bob]) }
        #expect(try nodes.bob.run(["send", "team", "hello from the joiner"]).status == 0)
        #expect(try nodes.alice.waitForLog("team", containing: "hello from the joiner").contains("bob: hello from the joiner"))
    }

    @Test func `two nodes in separate processes reach the same events and state through 30% loss with reordering and duplication`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("team")
        let (alicePort, bobPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
        let proxy = try FaultProxy(devicePorts: [alicePort, bobPort], plan: FaultPlan(loss: 0.3, duplication: 0.1, reordering: 0.2))
        defer { proxy.stop() }
        #expect(try nodes.alice.run(["peer", "add", "team", "127.0.0.1:\(proxy.port(of: 1, seenBy: 0))"]).status == 0)
        #expect(try nodes.bob.run(["peer", "add", "team", "127.0.0.1:\(proxy.port(of: 0, seenBy: 1))"]).status == 0)
        let runners = [try runNode(nodes.alice, port: alicePort), try runNode(nodes.bob, port: bobPort)]
        defer { stop(runners) }
        for index in 0..<15 {
            #expect(try nodes.bob.run(["send", "team", "lossy \(index)"]).status == 0)
            #expect(try nodes.alice.run(["send", "team", "reply \(index)"]).status == 0)
        }
        _ = try nodes.alice.waitForLog("team", containing: "lossy 14")
        _ = try nodes.bob.waitForLog("team", containing: "reply 14")
        // Both logs hold all 30 messages, in the same order, with the same event ids: the same timeline.
        var logs: [String] = []
        let deadline = Date().addingTimeInterval(20)
        repeat {
            logs = try [nodes.alice, nodes.bob].map { try $0.run(["log", "team"]).stdout }
            if logs[0] == logs[1] && (0..<15).allSatisfy({ logs[0].contains("lossy \($0)  ") && logs[0].contains("reply \($0)  ") }) { break }
            usleep(100_000)
        } while Date() < deadline
        #expect(logs[0] == logs[1])
        for index in 0..<15 { #expect(logs[0].contains("bob: lossy \(index)  ") && logs[0].contains("alice: reply \(index)  ")) }
        #expect(proxy.counts.dropped > 0)
    }

    @Test func `a pre-shared-key room is joined and used over peers, its datagrams sealed under the room's key`() throws {
        let nodes = try TwoNodes()
        #expect(try nodes.alice.run(["room", "create", "team", "--psk"]).status == 0)
        let (alicePort, bobPort) = (try FreePort.belowEphemeral(.udp), try FreePort.belowEphemeral(.udp))
        let alice = try runNode(nodes.alice, port: alicePort)
        defer { stop([alice]) }
        #expect(try nodes.alice.run(["send", "team", "sealed twice"]).status == 0)
        let invite = try nodes.alice.run(["room", "invite", "team", "bob", "--key", nodes.bobKey, "--peer", "127.0.0.1:\(alicePort)", "--json"])
        #expect(invite.status == 0, "\(invite.stderr)")
        let text = try #require(try JSONParser().parse(Array(invite.stdout.utf8))["invite_code"]?.stringValue)
        #expect(try InviteCode(parsing: text).preSharedSecret != nil)
        let joined = try nodes.bob.run(["room", "join", text])
        #expect(joined.status == 0, "\(joined.stderr)")
        #expect(try nodes.bob.run(["log", "team"]).stdout.contains("alice: sealed twice"))
        let bob = try runNode(nodes.bob, port: bobPort)
        defer { stop([bob]) }
        #expect(try nodes.bob.run(["send", "team", "back, sealed"]).status == 0)
        #expect(try nodes.alice.waitForLog("team", containing: "back, sealed").contains("bob: back, sealed"))
    }

    @Test func `peer add refuses what is not HOST:PORT and a room this node does not hold, and peer list shows what was added`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("team")
        let bad = try nodes.alice.run(["peer", "add", "team", "localhost"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("is not HOST:PORT"), "\(bad.stderr)")
        let unknown = try nodes.alice.run(["peer", "add", "nowhere", "127.0.0.1:9"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("nowhere"), "\(unknown.stderr)")
        #expect(try nodes.alice.run(["peer", "add", "team", "127.0.0.1:9"]).status == 0)
        #expect(try nodes.alice.run(["peer", "add", "team", "[::1]:9"]).status == 0)
        let list = try nodes.alice.run(["peer", "list", "--json"])
        #expect(try JSONParser().parse(Array(list.stdout.utf8)) == ["team": ["127.0.0.1:9", "[::1]:9"]])
        #expect(try nodes.alice.run(["peer", "remove", "team", "127.0.0.1:9"]).stdout == "team syncs with [::1]:9\n")
    }
}

@Suite struct SimCLITests {
    @Test func `parley sim runs devices over a lossy network and reports that they all ended with the same events`() throws {
        let result = try ParleyCommand.run([
            "sim", "--devices", "3", "--seconds", "2", "--rate", "10", "--loss", "10", "--duplicate", "5", "--reorder", "5", "--files", "30",
            "--file-size", "20000", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONParser().parse(Array(result.stdout.utf8))
        #expect(report["devices"] == 3)
        #expect((report["messages"]?.integerValue ?? 0) >= 15)
        #expect(report["undelivered"] == 0)
        #expect(report["same_events"] == true && report["same_state"] == true)
        #expect(report["latency_ms"]?["p50"]?.integerValue != nil)
        #expect((report["proxy_dropped"]?.integerValue ?? 0) > 0)
        // Every file reached every other device whole, through the same lossy network.
        let files = try #require(report["files"]?.integerValue)
        #expect(files > 0 && report["file_deliveries"]?.integerValue == files * 2 && report["files_undelivered"] == 0, "\(result.stdout)")
        #expect(report["file_latency_ms"]?["p99"]?.integerValue != nil)
    }

    @Test func `parley sim heals a partition of half the devices that lasted a minute, with one device down on a schedule`() throws {
        let result = try ParleyCommand.run([
            "sim", "--devices", "6", "--partition", "60", "--seconds", "64", "--rate", "3", "--loss", "5", "--down", "5:2-8", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONParser().parse(Array(result.stdout.utf8))
        #expect(report["converged_after_heal_ms"]?.integerValue != nil, "\(result.stdout)")
        #expect(report["undelivered"] == 0 && report["same_events"] == true && report["same_state"] == true, "\(result.stdout)")
        let bad = try ParleyCommand.run(["sim", "--down", "9:1-2"])
        #expect(bad.status == 64 && bad.stderr.contains("--down names device 9; the devices are 0 to 3"), "\(bad.stderr)")
    }

    @Test func `parley sim runs devices through a relay it runs itself, and messages and files reach them all`() throws {
        let result = try ParleyCommand.run([
            "sim", "--transport", "relay", "--devices", "3", "--seconds", "2", "--rate", "8", "--files", "25", "--file-size", "40000", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONParser().parse(Array(result.stdout.utf8))
        #expect(report["transport"]?.text == "relay" && (report["messages"]?.integerValue ?? 0) >= 8)
        #expect(report["undelivered"] == 0 && report["same_events"] == true && report["same_state"] == true, "\(result.stdout)")
        #expect((report["files"]?.integerValue ?? 0) > 0 && report["files_undelivered"] == 0, "\(result.stdout)")
    }

    @Test func `parley sim runs devices through a bucket with devices going offline, and files reach them all`() throws {
        let result = try ParleyCommand.run([
            "sim", "--transport", "bucket", "--devices", "4", "--seconds", "3", "--rate", "8", "--offline", "25", "--partition", "1", "--files", "20",
            "--file-size", "70000", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONParser().parse(Array(result.stdout.utf8))
        #expect(report["transport"]?.text == "bucket" && report["devices"] == 4)
        #expect(report["undelivered"] == 0 && report["same_events"] == true && report["same_state"] == true, "\(result.stdout)")
        #expect(report["converged_after_heal_ms"]?.integerValue != nil)
        #expect((report["requests"]?.integerValue ?? 0) > 0 && report["datagrams"] == 0)
        let files = try #require(report["files"]?.integerValue)
        #expect(files > 0 && report["files_undelivered"] == 0, "\(result.stdout)")
    }

    @Test func `parley sim refuses what it cannot simulate, saying what it can`() throws {
        let pigeon = try ParleyCommand.run(["sim", "--transport", "pigeon"])
        #expect(pigeon.status == 64)
        #expect(pigeon.stderr.contains("give peers, bucket or relay"), "\(pigeon.stderr)")
        let offlineRelay = try ParleyCommand.run(["sim", "--transport", "relay", "--offline", "10"])
        #expect(offlineRelay.status == 64)
        #expect(offlineRelay.stderr.contains("A relay run takes no faults"), "\(offlineRelay.stderr)")
        let lossyBucket = try ParleyCommand.run(["sim", "--transport", "bucket", "--loss", "5"])
        #expect(lossyBucket.status == 64)
        #expect(lossyBucket.stderr.contains("datagram faults, for --transport peers"), "\(lossyBucket.stderr)")
        let loss = try ParleyCommand.run(["sim", "--loss", "140"])
        #expect(loss.status == 64)
        #expect(loss.stderr.contains("--loss is a percentage, from 0 to 100"), "\(loss.stderr)")
    }
}
