import Foundation
import ParleyTesting
import Testing

/// The README's examples, run as someone runs them who pastes them in order into a fresh shell.
struct ReadmeTests {
    /// The comment line that keeps the ```sh block after it out of the run; the README's source says so.
    static let skipMarker = "<!-- not run by the README test -->"

    /// The README's ```sh blocks as one bash script whose line N is the README's line N: the blocks' lines as they are,
    /// every other line empty, and the first line (the title) replaced by a prologue. So a failing command is named
    /// with its line in the README.
    static func script(fromReadme text: String) -> (script: String, skipped: [String]) {
        let prologue = #"set -euo pipefail; trap 'echo "README.md line $LINENO failed: $BASH_COMMAND" >&2' ERR; cd "$1""#
        var lines: [String] = []
        var skipped: [String] = []
        var inBlock = false
        var skipping = false
        var previous = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if inBlock {
                if line.trimmingCharacters(in: .whitespaces) == "```" {
                    inBlock = false
                    lines.append("")
                } else if skipping {
                    skipped.append(line)
                    lines.append("")
                } else {
                    lines.append(line)
                }
            } else {
                if line.trimmingCharacters(in: .whitespaces) == "```sh" {
                    inBlock = true
                    skipping = previous.trimmingCharacters(in: .whitespaces) == skipMarker
                }
                lines.append("")
            }
            previous = line
        }
        lines[0] = prologue
        return (lines.joined(separator: "\n") + "\n", skipped)
    }

    @Test func `the README's block that builds and tests the package is the one it marks not to run`() throws {
        let readme = try String(contentsOf: ParleyCommand.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let (script, skipped) = ReadmeTests.script(fromReadme: readme)
        #expect(readme.components(separatedBy: ReadmeTests.skipMarker).count == 2, "one block is marked")
        #expect(skipped.contains { $0.hasPrefix("scripts/start") } && skipped.contains { $0.hasPrefix("scripts/test") })
        // Running scripts/test from the test suite would run the suite again, and this test in it.
        #expect(!script.contains("scripts/test"))
    }

    @Test func `every example in the README runs as written, pasted in order into a fresh shell`() throws {
        let readme = try String(contentsOf: ParleyCommand.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let (script, _) = ReadmeTests.script(fromReadme: readme)
        try #require(!script.contains("scripts/test"))
        let directory = TemporaryDirectory()
        let scriptFile = directory.file("readme.sh")
        try script.write(toFile: scriptFile, atomically: true, encoding: .utf8)
        // An empty folder stands in for the checkout the examples start in; `mktemp -d` works in its own folder, and
        // HOME is one of ours, so nothing the examples write can land anywhere else.
        let checkout = directory.file("checkout")
        let temporary = directory.file("tmp")
        let home = directory.file("home")
        for folder in [checkout, temporary, home] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false) }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = ParleyCommand.executable.deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["HOME"] = home
        environment["TMPDIR"] = temporary
        environment["PARLEY_HOME"] = nil

        // setsid: no controlling terminal, so a command that would ask for a passphrase fails instead of waiting.
        let child = try Subprocess.spawn(
            "/usr/bin/setsid", ["--wait", "/usr/bin/timeout", "300", "/bin/bash", scriptFile, checkout], environment: environment)
        let (status, outputBytes, errorBytes) = child.communicate()
        let output = String(decoding: outputBytes, as: UTF8.self)
        let errors = String(decoding: errorBytes, as: UTF8.self)
        #expect(status == 0, "\(errors)")

        let lines = output.split(separator: "\n")
        #expect(lines.contains { $0.contains("bob: hello, alice") }, "alice's log shows bob's message")
        #expect(lines.contains { $0.contains("alice: welcome!") && $0.contains("(reply to bob: \"hello, alice\")") })
        #expect(output.contains("OK: "), "the audits pass")
        #expect(lines.contains { $0.contains("bob: hi from the bucket") })
        #expect(lines.contains { $0.contains("bob: notes, line one") })
        #expect(lines.contains { $0.hasPrefix("team ") && $0.contains("bob: are you there?") }, "sync --watch printed the message as it arrived")
        #expect(lines.contains { $0.contains("bob: hi through the relay") }, "alice's log shows bob's message through the relay")
        #expect(lines.contains { $0.contains("alice") && $0.contains("just between us") }, "bob's dm list shows alice's message")
        #expect(output.contains("Backed up alice's identity and room keys to alice.backup"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: checkout).isEmpty, "the examples write nothing into the checkout")
        let workFolders = try FileManager.default.contentsOfDirectory(atPath: temporary)
        #expect(workFolders.count == 1)
        let work = URL(fileURLWithPath: temporary).appendingPathComponent(workFolders.first ?? "")
        for name in ["alice", "bob", "carol", "laptop", "bucket", "alice.backup", "relay-data"] {
            #expect(FileManager.default.fileExists(atPath: work.appendingPathComponent(name).path), "\(name) is in the examples' own folder")
        }
    }
}
