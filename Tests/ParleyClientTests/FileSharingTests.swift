import Foundation
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient

/// Files shared through a bucket room (docs/PROTOCOL.md §16): sealed into blocks on one node, fetched, checked and
/// written on another; and what a withheld, altered or cut transfer leaves behind.
@Suite struct FileSharingTests {
    /// A file of `size` bytes in `world`'s folder, its bytes a pattern no two blocks share.
    static func file(_ world: BucketWorld, _ name: String, size: Int, seed: UInt8 = 1) throws -> (path: String, bytes: [UInt8]) {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 16 &+ Int(seed)) }
        let path = world.directory.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, bytes)
    }

    /// The keys of the room's block objects.
    static func blockKeys(_ world: BucketWorld, _ roomID: String) async throws -> [String] {
        try await world.objects.listAll(prefix: "rooms/\(roomID)/blocks/").map(\.key)
    }

    /// A source that fails after `limit` fetches, as a link cut part way would.
    struct CutSource: BlockSource {
        let base: any BlockSource
        let limit: Int
        let fetched = Counter()

        final class Counter: @unchecked Sendable {
            private let lock = NSLock()
            private var value = 0
            func next() -> Int {
                lock.withLock {
                    value += 1
                    return value
                }
            }
        }

        func fetch(_ block: BlockRef) async throws -> [UInt8] {
            guard fetched.next() <= limit else { throw ClientError(.bucket, "the link went down") }
            return try await base.fetch(block)
        }
    }

    @Test func `in a room set to whiten, a shared file's blocks go to the bucket in pairs and download whole`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        #expect(try alice.node.whitensFiles("team") == false)
        try alice.node.setWhitensFiles("team", true)
        #expect(try alice.node.whitensFiles("team"))
        let (path, bytes) = try Self.file(world, "scan.bin", size: 200_000)
        let event = try alice.node.shareFile("team", path: path).event
        let flushed = try await alice.flush("team")
        // Four data blocks of 64 KiB, each stored with its random block, under a 1 KiB root.
        #expect(flushed.blocks == 9 && flushed.blockBytes == 8 * 65_536 + 1_024)
        _ = try await bob.sync("team")
        let file = try bob.node.fileAttachment(eventID: event.eventID)
        #expect(file.reference.layout.whitened)
        let target = world.directory.file("scan-copy.bin")
        let report = try await bob.node.download(file, from: try bob.blockSource("team"), to: target)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)
        #expect(report.blocksFetched == 9)
        // Off again, the next file is stored plainly.
        try alice.node.setWhitensFiles("team", false)
        let (other, _) = try Self.file(world, "plain.bin", size: 200_000, seed: 3)
        _ = try alice.node.shareFile("team", path: other)
        #expect(try await alice.flush("team").blocks == 5)
    }

    @Test func `a redacted file's blocks leave the bucket and its sender's node once no message of the room shares it`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        let (path, _) = try Self.file(world, "minutes.txt", size: 200_000)
        let first = try alice.node.shareFile("team", path: path, caption: "the minutes").event
        let second = try alice.node.shareFile("team", path: path, caption: "the minutes, again").event
        _ = try await alice.flush("team")
        let keys = try await Self.blockKeys(world, "team")
        #expect(keys.count == 5)
        let reference = try alice.node.fileAttachment(eventID: first.eventID).reference
        let held = try alice.node.localBlocks(of: reference).blocks.map(\.id)
        #expect(held.allSatisfy { alice.node.blocks.contains($0) })

        // The second message shares the same blocks: redacting the first takes nothing away.
        _ = try alice.node.redact("team", eventID: first.eventID, reason: nil)
        #expect(try await alice.flush("team").blocksDeleted == 0)
        #expect(try await Self.blockKeys(world, "team") == keys)
        #expect(held.allSatisfy { alice.node.blocks.contains($0) })
        // Redacting the last one deletes them from the bucket after the redaction is written, and from this node.
        _ = try alice.node.redact("team", eventID: second.eventID, reason: "shared by mistake")
        let flushed = try await alice.flush("team")
        #expect(flushed.blocksDeleted == 5 && flushed.files.count == 1)
        #expect(try await Self.blockKeys(world, "team").isEmpty)
        #expect(held.allSatisfy { !alice.node.blocks.contains($0) })
        #expect(try alice.node.store.blockDeletions(.bucket, roomID: "team").isEmpty)
        // Bob, who never fetched it, cannot now: the message is redacted and its blocks are gone.
        _ = try await bob.sync("team")
        #expect(try bob.node.store.item(eventID: second.eventID)?.redacted == true)
        await #expect(throws: ClientError.self) { try bob.node.fileAttachment(eventID: second.eventID) }
    }

    @Test func `a file shared in a bucket room downloads byte for byte on another node, its blocks sealed in the bucket`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        let (path, bytes) = try Self.file(world, "report.pdf", size: 200_000)
        let event = try alice.node.shareFile("team", path: path, caption: "the report")
        let flushed = try await alice.flush("team")
        // 200,000 bytes: four 64 KiB data blocks under a 1 KiB root, written before the message.
        #expect(flushed.blocks == 5 && flushed.blockBytes == 4 * 65_536 + 1_024 && flushed.missingBlocks == 0)
        #expect(try await Self.blockKeys(world, "team").count == 5)
        _ = try await bob.sync("team")

        let item = try #require(try bob.node.timeline("team", limit: 10).last)
        #expect(item.eventID == event.event.eventID && item.messageKind == .file && item.body == "the report")
        let file = try #require(item.file)
        #expect(file.name == "report.pdf" && file.size == 200_000 && file.mediaType == "application/pdf")
        let target = world.directory.file("downloaded.pdf")
        let report = try await bob.node.download(file, from: try bob.blockSource("team"), to: target)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)
        #expect(report.blocksFetched == 5 && report.blocksHeld == 0)
        #expect(!FileManager.default.fileExists(atPath: target + ".part"))
        // No block holds the file's bytes in the clear.
        let pattern = Data(bytes[1_000..<1_064])
        for key in try await Self.blockKeys(world, "team") {
            let stored = Data(try await world.objects.get(key: key, maxBytes: 1 << 24))
            #expect(stored.range(of: pattern) == nil)
        }
        // A second download is served by the blocks this node kept, and never replaces a file.
        await #expect(throws: ClientError.self) { try await bob.node.download(file, from: nil, to: target) }
        let again = try await bob.node.download(file, from: nil, to: target + ".2")
        #expect(again.blocksHeld == 5 && again.blocksFetched == 0)
    }

    @Test func `in an encrypted room the file's key and name travel sealed, and members still download it`() async throws {
        let world = try BucketWorld(.folder)
        let clients = try await EncryptedRoomTests().encryptedRoom(world)
        let (alice, bob) = (clients["alice"]!, clients["bob"]!)
        let (path, bytes) = try Self.file(world, "secret-plans.txt", size: 3_000)
        try alice.node.shareFile("vault", path: path)
        _ = try await alice.flush("vault")
        for key in try await world.logFiles("vault") {
            let text = String(decoding: try await world.objects.get(key: key, maxBytes: 1 << 24), as: UTF8.self)
            #expect(!text.contains("secret-plans") && !text.contains("\"root\""))
        }
        _ = try await bob.sync("vault")
        let file = try #require(try bob.node.timeline("vault", limit: 10).last?.file)
        let target = world.directory.file("got.txt")
        try await bob.node.download(file, from: try bob.blockSource("vault"), to: target)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)
    }

    @Test func `the same file shared twice is stored and moved once`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, _) = try await BucketRoomTests().twoMembers(world)
        let (path, _) = try Self.file(world, "video.mp4", size: 300_000)
        let first = try alice.node.shareFile("team", path: path)
        _ = try await alice.flush("team")
        let stored = try FileManager.default.subpathsOfDirectory(atPath: alice.node.blocks.path).filter { !$0.contains("/.") && $0.count > 2 }
        let second = try alice.node.shareFile("team", path: path, caption: "again")
        let counting = CountingStore(try world.url.open())
        let flushed = try await world.client(alice.node, counting: counting).flush("team")
        #expect(flushed.events == 1 && flushed.blocks == stored.count)
        // The blocks were found in the bucket, not written again: the only write is the log file.
        #expect(counting.snapshot["put"] == 1)
        #expect(try alice.node.fileAttachment(eventID: first.event.eventID).reference == alice.node.fileAttachment(eventID: second.event.eventID).reference)
        let after = try FileManager.default.subpathsOfDirectory(atPath: alice.node.blocks.path).filter { !$0.contains("/.") && $0.count > 2 }
        #expect(Set(after) == Set(stored))
    }

    @Test func `a block withheld or altered in the bucket leaves the file incomplete, and nothing is written`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        let (path, bytes) = try Self.file(world, "photo.raw", size: 150_000)
        try alice.node.shareFile("team", path: path)
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        let file = try #require(try bob.node.timeline("team", limit: 10).last?.file)
        let bucket = world.directory.file("bucket")
        let withheld = try #require(try await Self.blockKeys(world, "team").first { !$0.hasSuffix(file.reference.root.hex) })
        let saved = try Data(contentsOf: URL(fileURLWithPath: "\(bucket)/\(withheld)"))
        try FileManager.default.removeItem(atPath: "\(bucket)/\(withheld)")
        let target = world.directory.file("photo.raw")
        let source = try bob.blockSource("team")
        let missing = await #expect(throws: ClientError.self) { try await bob.node.download(file, from: source, to: target + ".got") }
        #expect(missing?.code == .incomplete && missing?.message.contains("not where the room keeps blocks") == true)
        #expect(!FileManager.default.fileExists(atPath: target + ".got") && !FileManager.default.fileExists(atPath: target + ".got.part"))

        // Other bytes under the block's name: refused for not hashing to it.
        var altered = saved
        altered[10] ^= 0xFF
        try altered.write(to: URL(fileURLWithPath: "\(bucket)/\(withheld)"))
        let wrong = await #expect(throws: ClientError.self) { try await bob.node.download(file, from: source, to: target + ".got") }
        #expect(wrong?.code == .incomplete && wrong?.message.contains("block_id_mismatch") == true)
        #expect(!FileManager.default.fileExists(atPath: target + ".got"))

        try FileManager.default.removeItem(atPath: "\(bucket)/\(withheld)")
        try saved.write(to: URL(fileURLWithPath: "\(bucket)/\(withheld)"))
        try await bob.node.download(file, from: source, to: target + ".got")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target + ".got"))) == bytes)
    }

    @Test func `a download cut part way takes up where it stopped`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        // 1,100,000 bytes: seventeen 64 KiB data blocks and a root.
        let (path, bytes) = try Self.file(world, "archive.tar", size: 1_100_000)
        try alice.node.shareFile("team", path: path)
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        let file = try #require(try bob.node.timeline("team", limit: 10).last?.file)
        let source = try #require(try bob.blockSource("team"))
        let target = world.directory.file("archive-copy.tar")
        for cut in [0, 1, 6] {
            await #expect(throws: ClientError.self, "cut after \(cut) blocks") {
                try await bob.node.download(file, from: CutSource(base: source, limit: cut), to: target)
            }
            #expect(!FileManager.default.fileExists(atPath: target) && !FileManager.default.fileExists(atPath: target + ".part"))
        }
        let report = try await bob.node.download(file, from: source, to: target)
        #expect(report.blocksFetched + report.blocksHeld == 18 && report.blocksHeld >= 6)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)
    }

    @Test func `a node refuses to sign a file message whose name is a path or holds controls`() throws {
        let world = try BucketWorld(.folder)
        let node = try world.node("alice")
        try node.createRoom("solo")
        let (path, _) = try Self.file(world, "ok.txt", size: 10)
        let event = try node.shareFile("solo", path: path)
        var content = try #require(event.event.content)
        guard case .object(var file)? = content["file"] else { throw ClientError(.internalError, "no file object") }
        for name in ["../../etc/passwd", "a\u{0}b", String(repeating: "x", count: 10_000)] {
            file["name"] = .string(name)
            content["file"] = .object(file)
            #expect(throws: ClientError.self) { try node.publish(roomID: "solo", type: EventType.message, content: content) }
        }
    }

    @Test func `a name a sender's file system allows is made safe before it is shared`() throws {
        let world = try BucketWorld(.folder)
        let node = try world.node("alice")
        try node.createRoom("solo")
        let (path, _) = try Self.file(world, "tab\there\u{1B}[31m.txt", size: 10)
        let event = try node.shareFile("solo", path: path)
        #expect(try node.fileAttachment(eventID: event.event.eventID).name == "tab_here_[31m.txt")
    }
}

/// `parley send --file` and `parley download`, through the executable, over a folder bucket and over S3 (moto).
@Suite(.serialized) struct FileSharingCLITests {
    @Test(arguments: BucketKind.all)
    func `a file sent with send --file is downloaded on another node with the same SHA-256`(kind: BucketKind) throws {
        let nodes = try TwoNodes()
        let url = kind == .folder ? "file://\(nodes.directory.path)/bucket" : S3TestServer.url(prefix: S3TestServer.freshPrefix())
        let aws = S3TestServer.awsEnvironment
        try #require(try nodes.alice.run(["room", "create", "team", "--bucket", url], environment: aws).status == 0)
        let invite = try nodes.alice.run(["room", "invite", "team", "bob", "--key", nodes.bobKey, "--json"], environment: aws)
        let code = try JSONParser().parse(Array(invite.stdout.utf8))["invite_code"]!.text
        try #require(try nodes.bob.run(["room", "join", code], environment: aws).status == 0)

        let bytes = (0..<2_500_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 12) }
        let path = nodes.directory.file("holiday.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let sent = try nodes.alice.run(["send", "team", "--file", path, "pictures from the trip", "--json"], environment: aws)
        try #require(sent.status == 0, "\(sent.stderr)")
        let eventID = try JSONParser().parse(Array(sent.stdout.utf8))["event_id"]!.text
        #expect(sent.stderr.isEmpty, "no progress bar when standard error is no terminal: \(sent.stderr)")

        try #require(try nodes.bob.run(["sync"], environment: aws).status == 0)
        // The audit counts the blocks (2.5 MB: thirty-nine 64 KiB data blocks and a root) and warns of none.
        let audit = try ParleyCommand.run(["bucket", "verify", url, "--json"], environment: aws)
        let audited = try JSONParser().parse(Array(audit.stdout.utf8))
        #expect(audit.status == 0 && audited["blocks"]?.integerValue == 40 && audited["warnings"]?.arrayValue?.isEmpty == true, "\(audit.stdout)")
        let item = try #require(try nodes.log(nodes.bob, "team").last)
        #expect(item["event_id"]?.text == eventID && item["msgtype"]?.text == "file" && item["body"]?.text == "pictures from the trip")
        #expect(item["file"]?["name"]?.text == "holiday.bin" && item["file"]?["size"]?.integerValue == 2_500_000)
        #expect(item["file"]?["key"] == nil, "the file's key stays in the node")
        let text = try nodes.bob.run(["log", "team"]).stdout
        #expect(text.contains("alice: [file: holiday.bin, 2.4 MiB] pictures from the trip"), "\(text)")

        let target = nodes.directory.file("copy.bin")
        let uuid = String(eventID.split(separator: ":").last!.prefix(8))
        let downloaded = try nodes.bob.run(["download", "team", uuid, "-o", target, "--json"], environment: aws)
        try #require(downloaded.status == 0, "\(downloaded.stderr)")
        let summary = try JSONParser().parse(Array(downloaded.stdout.utf8))
        #expect(summary["sha256"]?.text == item["file"]?["sha256"]?.text && summary["path"]?.text == target)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)

        let again = try nodes.bob.run(["download", eventID, "-o", target, "--json"], environment: aws)
        #expect(again.status == 1 && again.stdout.contains("already_exists"))
        // On a terminal, both sides show their progress.
        let watched = try nodes.bob.run(["download", "team", uuid, "-o", target + ".watched"], environment: aws, errorToTerminal: true)
        #expect(watched.status == 0 && watched.stderr.contains("downloading [########################] 100% 2.4 MiB of 2.4 MiB"), "\(watched.stderr)")
        let resent = try nodes.alice.run(["send", "team", "--file", path], environment: aws, errorToTerminal: true)
        #expect(resent.stderr.contains("sealing   [########################] 100%") && resent.stderr.contains("uploading ["), "\(resent.stderr)")

        let nowhere = try nodes.bob.run(["download", "team", uuid, "-o", "/nonexistent-folder/x"], environment: aws)
        #expect(nowhere.status == 1 && nowhere.stderr.contains("Cannot create /nonexistent-folder/x.part"), "\(nowhere.stderr)")
    }

    @Test func `a download onto a disk that fills fails saying so, leaves nothing there, and keeps its blocks for the next try`() throws {
        let nodes = try TwoNodes()
        try nodes.shareBucketRoom("team")
        let path = nodes.directory.file("big.bin")
        let bytes = (0..<6_000_000).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ $0 >> 14) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let sent = try nodes.alice.run(["send", "team", "--file", path])
        try #require(sent.status == 0, "\(sent.stderr)")
        try #require(try nodes.bob.run(["sync"]).status == 0)
        let eventID = sent.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let mount = nodes.directory.file("small-disk")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: false)
        // A 4 MiB tmpfs in a mount namespace of the script's own: the 6 MB file cannot fit.
        let script = """
            set -e
            mount -t tmpfs -o size=4m tmpfs '\(mount)'
            '\(ParleyCommand.executable.path)' --home '\(nodes.bob.home)' download '\(eventID)' -o '\(mount)/big.bin' || echo "exit $?"
            ls -A '\(mount)'
            """
        let child = try Subprocess.spawn("/usr/bin/unshare", ["--mount", "/bin/bash", "-c", script])
        let (status, out, err) = child.communicate()
        let (stdout, stderr) = (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        #expect(status == 0 && stdout == "exit 1\n", "\(stdout)\(stderr)")
        #expect(stderr.contains("The disk is full: \(mount)/big.bin.part could not be written"), "\(stderr)")
        let target = nodes.directory.file("roomy.bin")
        let again = try nodes.bob.run(["download", eventID, "-o", target])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: target))) == bytes)
    }
}
