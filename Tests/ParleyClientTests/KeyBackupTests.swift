import Foundation
import ParleyArgon2
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

@_spi(Tools) @testable import ParleyClient

@Suite struct KeyBackupTests {
    let passphrase = Array("correct horse battery staple".utf8)

    @Test func `Argon2id gives the reference implementation's test vector`() throws {
        // From the Argon2 reference implementation's test suite (phc-winner-argon2, src/test.c): Argon2id, version
        // 0x13, t = 2, m = 2^16 KiB, p = 1, password "password", salt "somesalt", 32 bytes.
        let parameters = Argon2idParameters(memoryKiB: 1 << 16, iterations: 2, parallelism: 1)
        let key = try parameters.deriveKey(passphrase: Array("password".utf8), salt: Array("somesalt".utf8))
        #expect(Hex.encode(key) == "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7")
    }

    @Test func `a restored device reads its encrypted bucket room again after a sync`() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice"))
        _ = try await alice.createRoom("vault", bucket: world.url, encryption: .epochs(history: .joined))
        _ = try alice.node.send("vault", text: "remember me")
        _ = try await alice.flush("vault")
        let backup = try KeyBackup.export(node: alice.node, passphrase: passphrase)
        #expect(!String(decoding: backup, as: UTF8.self).contains(alice.node.identity.userID))

        let home = ParleyHome(path: world.directory.file("alice-restored"))
        let report = try KeyBackup.restore(backup, passphrase: passphrase, home: home)
        #expect(report.userID == "alice" && report.installedIdentity && report.roomKeys == 1 && report.bucketRooms == 1)
        let restored = world.client(try Node(home: home))
        #expect(restored.node.identity.signingKeyBase64 == alice.node.identity.signingKeyBase64)
        _ = try await restored.sync("vault")
        #expect(try restored.node.timeline("vault", limit: 10).compactMap(\.body) == ["remember me"])
        // Its chain continues where the original left off (seq 5 was the message): no seq is signed twice. The key
        // is older than the rotation period by the restored node's clock, so a new epoch (seq 6) comes first.
        let next = try restored.node.send("vault", text: "back again")
        #expect(next.event.seq == 7)
        #expect(try restored.node.store.forkProofs(roomID: "vault").isEmpty)
        // Restoring again into the same home only adds what is missing.
        let again = try KeyBackup.restore(backup, passphrase: passphrase, home: home)
        #expect(!again.installedIdentity && again.bucketRooms == 0)
    }

    @Test func `a restored device's events read back from the bucket are not written again`() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice"))
        _ = try await alice.createRoom("team", bucket: world.url)
        _ = try alice.node.send("team", text: "written once")
        _ = try await alice.flush("team")
        let backup = try KeyBackup.export(node: alice.node, passphrase: passphrase)
        let home = ParleyHome(path: world.directory.file("alice-restored"))
        _ = try KeyBackup.restore(backup, passphrase: passphrase, home: home)
        let restored = world.client(try Node(home: home))
        let files = try await world.objects.listAll(prefix: BucketLayout.logsPrefix("team")).count

        _ = try await restored.sync("team")
        #expect(try restored.node.store.outboxStatus(roomID: "team", senderKey: restored.node.identity.signingKeyBase64).pending == 0)
        #expect(try await restored.flush("team").files.isEmpty)
        #expect(try await world.objects.listAll(prefix: BucketLayout.logsPrefix("team")).count == files)
    }

    @Test func `a wrong passphrase, a truncated or altered file and another identity's home are refused with a clear error`() throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("alice"))
        _ = try Identity.create(userID: "alice", home: home)
        let node = try Node(home: home)
        let backup = try KeyBackup.export(node: node, passphrase: passphrase)
        let target = ParleyHome(path: directory.file("new"))

        func refusal(_ file: [UInt8], _ phrase: [UInt8], into home: ParleyHome) -> String {
            do {
                _ = try KeyBackup.restore(file, passphrase: phrase, home: home)
                return "restored"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal(backup, Array("wrong passphrase".utf8), into: target).contains("Wrong passphrase"))
        #expect(refusal(Array(backup.prefix(backup.count / 2)), passphrase, into: target).contains("truncated or damaged"))
        let weakened = String(decoding: backup, as: UTF8.self).replacingOccurrences(of: "\"iterations\":3", with: "\"iterations\":2")
        #expect(refusal(Array(weakened.utf8), passphrase, into: target).contains("Wrong passphrase, or the backup was altered"))
        let hostile = String(decoding: backup, as: UTF8.self).replacingOccurrences(of: "\"memory_kib\":65536", with: "\"memory_kib\":4194304")
        #expect(refusal(Array(hostile.utf8), passphrase, into: target).contains("above what this node computes"))
        #expect(!FileManager.default.fileExists(atPath: target.secretKeyPath))

        let bob = ParleyHome(path: directory.file("bob"))
        _ = try Identity.create(userID: "bob", home: bob)
        #expect(refusal(backup, passphrase, into: bob).contains("holds another identity"))
        #expect(throws: ClientError.self) { try KeyBackup.export(node: node, passphrase: Array("short".utf8)) }
    }
}

/// `parley backup` through the executable.
@Suite struct BackupCLITests {
    @Test func `backup export writes an owner-only file that backup import restores into an empty home`() throws {
        let directory = TemporaryDirectory()
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        let secret = directory.file("passphrase.txt")
        try "a long enough passphrase\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let file = directory.file("alice.backup")
        let exported = try alice.run(["backup", "export", file, "--passphrase-file", secret])
        try #require(exported.status == 0, "\(exported.stderr)")
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try alice.run(["backup", "export", file, "--passphrase-file", secret]).status != 0)

        let restored = ParleyCommand(home: directory.file("restored"))
        let imported = try restored.run(["backup", "import", file, "--passphrase-file", secret, "--json"])
        try #require(imported.status == 0, "\(imported.stderr)")
        #expect(try JSONParser().parse(Array(imported.stdout.utf8))["user_id"]?.text == "alice")
        #expect(try restored.run(["whoami"]).stdout == (try alice.run(["whoami"]).stdout))

        try "not the passphrase\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let wrong = try ParleyCommand(home: directory.file("other")).run(["backup", "import", file, "--passphrase-file", secret])
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("Wrong passphrase"))
    }
}
