import Foundation
import ParleyTesting
import Testing

/// The scripts a new user runs first, on a machine without the Swift toolchain they need.
struct ScriptTests {
    /// Runs a script of the package with `PATH` as given; its exit status and standard error.
    func run(_ script: String, path: String) throws -> (status: Int32, stderr: String) {
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = path
        let child = try Subprocess.spawn(
            "/bin/bash", [ParleyCommand.packageRoot.appendingPathComponent(script).path], environment: environment, stdout: .null)
        let (status, _, stderr) = child.communicate()
        return (status, String(decoding: stderr, as: UTF8.self))
    }

    @Test func `scripts/start without swift on PATH says that Parley needs the Swift toolchain and where to get it`() throws {
        // Else the script would find a toolchain and build.
        try #require(!FileManager.default.fileExists(atPath: "/usr/bin/swift") && !FileManager.default.fileExists(atPath: "/bin/swift"))
        let result = try run("scripts/start", path: "/usr/bin:/bin")
        #expect(result.status == 1)
        #expect(result.stderr.contains("Parley is written in Swift and needs the Swift 6.2 toolchain or later"), "\(result.stderr)")
        #expect(result.stderr.contains("there is no 'swift' command on PATH"))
        #expect(result.stderr.contains("Install it from https://www.swift.org/install/"))
    }

    @Test func `scripts/test with a Swift older than 6.2 names the version it found and the one needed`() throws {
        let directory = TemporaryDirectory()
        let swift = directory.file("swift")
        // Answers only --version, and fails anything else: a script that went on would stop at its first build.
        let fake = """
            #!/bin/sh
            [ "$1" = --version ] || exit 1
            echo "Swift version 5.10.1 (swift-5.10.1-RELEASE)"
            echo "Target: x86_64-unknown-linux-gnu"
            """
        // Written through a close-on-exec descriptor: one inherited by a process another test forks meanwhile would make
        // running the script fail with "text file busy".
        let descriptor = open(swift, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o755)
        try #require(descriptor >= 0)
        let written = fake.utf8CString.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count - 1) }
        close(descriptor)
        try #require(written == fake.utf8.count)
        let result = try run("scripts/test", path: "\(directory.path):/usr/bin:/bin")
        #expect(result.status == 1)
        #expect(result.stderr.contains("Parley needs Swift 6.2 or later, but '\(swift)' is Swift 5.10."), "\(result.stderr)")
        #expect(result.stderr.contains("Install it from https://www.swift.org/install/"))
    }
}
