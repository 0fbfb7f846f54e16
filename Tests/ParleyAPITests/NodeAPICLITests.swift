import Foundation
import ParleyClient
import ParleyTesting
import Testing

/// `parley node` as a UI meets it: node.json, the API, and what survives the node being killed.
@Suite struct NodeAPICLITests {
    struct RunningNode {
        let process: Subprocess
        let url: String
        let token: String
    }

    /// Starts `parley node` and waits until node.json names it.
    func startNode(_ node: ParleyCommand, _ arguments: [String] = []) async throws -> RunningNode {
        let process = try Subprocess.spawn(ParleyCommand.executable.path, ["--home", node.home, "node"] + arguments, stdout: .null, stderr: .null)
        let infoPath = "\(node.home)/node.json"
        var info: JSONValue?
        _ = await waitUntil {
            info = (try? Data(contentsOf: URL(fileURLWithPath: infoPath))).flatMap { try? JSONParser().parse(Array($0).dropLast()) }
            return info?["pid"]?.integerValue == Int64(process.pid)
        }
        let url = try #require(info?["url"]?.stringValue, "node.json never named the node")
        return RunningNode(process: process, url: url, token: try #require(info?["token"]?.stringValue))
    }

    @Test func `a message a UI sent through a node that is then killed with SIGKILL is written by the next node`() async throws {
        let directory = TemporaryDirectory()
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        let bucket = directory.file("bucket")
        try #require(try alice.run(["room", "create", "team", "--bucket", "file://\(bucket)", "--create-bucket"]).status == 0)

        // A node that would not write for an hour: the message is only in the store when the node dies.
        let first = try await startNode(alice, ["--interval", "3600", "--flush-after", "3600"])
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(alice.home)/node.json")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let sent = try await apiRequest(
            .POST, first.url + "/v1/rooms/team/messages", body: Array(#"{"text":"acknowledged, then killed"}"#.utf8), token: first.token)
        #expect(sent.status == 201)
        let eventID = try #require(sent.json?["event_id"]?.stringValue)
        first.process.kill(SIGKILL)
        _ = first.process.wait()

        let second = try await startNode(alice)
        #expect(second.token != first.token)
        let written = await waitUntil {
            let files = (FileManager.default.enumerator(atPath: bucket)?.allObjects as? [String]) ?? []
            return files.contains { name in
                name.hasSuffix(".jsonl") && ((try? String(contentsOfFile: "\(bucket)/\(name)", encoding: .utf8))?.contains(eventID) ?? false)
            }
        }
        #expect(written, "the acknowledged message never reached the bucket")
        // The old token opens nothing.
        #expect(try await apiRequest(.GET, second.url + "/v1/rooms", token: first.token).status == 401)
        second.process.kill(SIGTERM)
        #expect(second.process.wait() == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(alice.home)/node.json"))
    }
}
