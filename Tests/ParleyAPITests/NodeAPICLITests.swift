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

    @Test func `a message sent through a node then killed with SIGKILL is written by the next node, at the same address and token`() async throws {
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

        // The same address and token: a page left open reconnects.
        let second = try await startNode(alice)
        #expect(second.token == first.token)
        #expect(second.url == first.url)
        let written = await waitUntil {
            let files = (FileManager.default.enumerator(atPath: bucket)?.allObjects as? [String]) ?? []
            return files.contains { name in
                name.hasSuffix(".jsonl") && ((try? String(contentsOfFile: "\(bucket)/\(name)", encoding: .utf8))?.contains(eventID) ?? false)
            }
        }
        #expect(written, "the acknowledged message never reached the bucket")
        second.process.kill(SIGTERM)
        #expect(second.process.wait() == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(alice.home)/node.json"))

        // --new-token shuts out whoever held the old one.
        let third = try await startNode(alice, ["--new-token"])
        #expect(third.token != first.token)
        #expect(try await apiRequest(.GET, third.url + "/v1/rooms", token: first.token).status == 401)
        #expect(try await apiRequest(.GET, third.url + "/v1/rooms", token: third.token).status == 200)
        let remembered = try FileManager.default.attributesOfItem(atPath: "\(alice.home)/local-api.json")
        #expect((remembered[.posixPermissions] as? Int) == 0o600)
        third.process.kill(SIGTERM)
        #expect(third.process.wait() == 0)
    }

    @Test func `parley web prints the page address of the running node, or runs the node itself and prints it`() async throws {
        let directory = TemporaryDirectory()
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        let running = try await startNode(alice)
        let web = try alice.run(["web", "--no-open"], environment: ["DISPLAY": ""])
        #expect(web.status == 0)
        let address = "\(running.url)/?token=\(running.token)"
        #expect(web.stderr.contains("Web page: \(address)\n"), "\(web.stderr)")
        let page = try await apiRequest(.GET, address, token: "")
        #expect(page.status == 200 && String(decoding: page.body, as: UTF8.self).contains("/app.js"))
        running.process.kill(SIGTERM)
        #expect(running.process.wait() == 0)

        // No node: parley web runs one, and stops it on SIGTERM.
        let log = directory.file("web.log")
        let own = try Subprocess.spawn(
            "/bin/bash", ["-c", "exec '\(ParleyCommand.executable.path)' --home '\(alice.home)' web --no-open 2>'\(log)'"], stdout: .null, stderr: .null)
        var printed = ""
        let found = await waitUntil {
            printed = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return printed.contains("Web page: ")
        }
        #expect(found, "\(printed)")
        #expect(printed.contains("Web page: \(address)\n"), "the same address as before: \(printed)")
        #expect(try await apiRequest(.GET, address, token: "").status == 200)
        own.kill(SIGTERM)
        #expect(own.wait() == 0)
    }

    @Test func `a send through the API onto a full disk answers io saying so, and loses nothing acknowledged before or after`() throws {
        let directory = TemporaryDirectory()
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        try #require(try alice.run(["room", "create", "general"]).status == 0)
        let mount = directory.file("small-disk")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: false)
        let parley = ParleyCommand.executable.path
        // A 4 MiB tmpfs in a mount namespace of the script's own, with the home copied in; a running node; one send,
        // then the disk filled and another, then room made and a third. Each answer is a line of standard output.
        let script = """
            set -e
            mount -t tmpfs -o size=4m tmpfs '\(mount)'
            cp -a '\(alice.home)' '\(mount)/home'
            '\(parley)' --home '\(mount)/home' node 2>/dev/null &
            node=$!
            for i in $(seq 300); do [ -s '\(mount)/home/node.json' ] && break; sleep 0.1; done
            send() {
                python3 - "$1" <<'PY'
            import json, sys, urllib.request, urllib.error
            info = json.load(open("\(mount)/home/node.json"))
            request = urllib.request.Request(info["url"] + "/v1/rooms/general/messages", data=json.dumps({"text": sys.argv[1]}).encode(),
                headers={"Authorization": "Bearer " + info["token"]})
            try:
                answer = urllib.request.urlopen(request)
                print(answer.status, answer.read().decode().strip())
            except urllib.error.HTTPError as error:
                print(error.code, error.read().decode().strip())
            PY
            }
            send 'before the disk filled'
            dd if=/dev/zero of='\(mount)/filler' bs=4k 2>/dev/null || true
            send 'into a full disk'
            rm '\(mount)/filler'
            send 'after room was made'
            kill -TERM $node
            wait $node || echo "node exited $?" >&2
            '\(parley)' --home '\(mount)/home' log general --json
            """
        let child = try Subprocess.spawn("/usr/bin/unshare", ["--mount", "/bin/bash", "-c", script])
        let (status, out, err) = child.communicate()
        let (stdout, stderr) = (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        #expect(status == 0, "\(stderr)")
        let lines = stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "\(stdout)\(stderr)")
        #expect(lines[0].hasPrefix("201 "), "\(lines[0])")
        #expect(lines[1].hasPrefix("500 "), "\(lines[1])")
        let error = try JSONParser().parse(Array(lines[1].dropFirst(4).utf8))["error"]
        #expect(error?["code"] == "io")
        #expect(error?["message"]?.stringValue?.hasPrefix("The disk holding the store \(mount)/home/parley.sqlite is full") == true, "\(lines[1])")
        #expect(lines[2].hasPrefix("201 "), "\(lines[2])")
        let bodies = try JSONParser(keysWithinBMP: false).parse(Array(lines[3].utf8))
        #expect(bodies.arrayValue?.compactMap { $0["body"]?.stringValue } == ["before the disk filled", "after room was made"])
    }
}
