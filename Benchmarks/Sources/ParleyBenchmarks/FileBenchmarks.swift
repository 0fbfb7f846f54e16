import Crypto
import Foundation
import ParleyCore

#if canImport(Glibc)
    import Glibc
#endif

// MARK: Files (docs/PROTOCOL.md §16)

/// Bytes under `path`, all files.
func folderBytes(_ path: String) -> Int64 {
    guard let names = FileManager.default.subpaths(atPath: path) else { return 0 }
    return names.reduce(0) { total, name in
        let attributes = try? FileManager.default.attributesOfItem(atPath: "\(path)/\(name)")
        return total + ((attributes?[.type] as? FileAttributeType) == .typeRegular ? (attributes?[.size] as? Int64 ?? 0) : 0)
    }
}

/// A file of `size` random-looking bytes (AES-CTR keystream: fast, and incompressible like a photo or video).
func writeRandomFile(_ path: String, size: Int) {
    precondition(FileManager.default.createFile(atPath: path, contents: nil))
    let handle = FileHandle(forWritingAtPath: path)!
    defer { try? handle.close() }
    var written = 0
    var counter: UInt64 = 0
    let key = SymmetricKey(size: .bits256)
    while written < size {
        let chunk = min(8 << 20, size - written)
        counter += 1
        let nonce = try! AES.GCM.Nonce(data: Array(repeating: 0, count: 4) + withUnsafeBytes(of: counter.bigEndian, Array.init))
        let sealed = try! AES.GCM.seal([UInt8](repeating: 0, count: chunk), using: key, nonce: nonce)
        handle.write(sealed.ciphertext)
        written += chunk
    }
}

/// Sending a file through a folder bucket and downloading it on another node, end to end through `parley`, with peak
/// RSS; beside it, what the machine's AES-GCM, SHA-256 and a plain copy of the file do in the same run.
func fileBenchmarks(workdir: String, parley: String, megabytes: Int) {
    let directory = "\(workdir)/files"
    try? FileManager.default.removeItem(atPath: directory)
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let size = megabytes << 20
    let source = "\(directory)/original.bin"
    writeRandomFile(source, size: size)
    let megabytesMoved = Double(size) / 1_000_000

    // Baselines: one core's AES-256-GCM and SHA-256 over 16 MiB blocks, and `cp` of the file.
    let block = [UInt8](repeating: 7, count: 16 << 20)
    let key = SymmetricKey(size: .bits256)
    let aes = best(3) { _ = try! AES.GCM.seal(block, using: key) }
    record("AES-256-GCM, one core (baseline)", Double(block.count) / aes / 1_000_000, "MB/s")
    let sha = best(3) { _ = SHA256.hash(data: block) }
    record("SHA-256, one core (baseline)", Double(block.count) / sha / 1_000_000, "MB/s")
    let copy = runProcess("/bin/cp", [source, "\(directory)/copy.bin"])
    record("cp of the \(megabytes) MiB file (baseline)", megabytesMoved / copy.seconds, "MB/s")
    try? FileManager.default.removeItem(atPath: "\(directory)/copy.bin")
    // What the disk takes durably: a shared file is synced before its message is signed, so this bounds the send.
    let synced = runProcess("/bin/dd", ["if=\(source)", "of=\(directory)/copy.bin", "bs=16M", "conv=fsync"])
    record("dd conv=fsync of the \(megabytes) MiB file (baseline: the disk, synced)", megabytesMoved / synced.seconds, "MB/s")
    try? FileManager.default.removeItem(atPath: "\(directory)/copy.bin")

    let alice = "\(directory)/alice"
    let bob = "\(directory)/bob"
    try! capture(parley, home: alice, ["init", "--user", "alice"])
    try! capture(parley, home: bob, ["init", "--user", "bob"])
    let bobKey = (try! JSONParser().parse(Array(try! capture(parley, home: bob, ["whoami", "--json"]).utf8)))["signing_key"]!.stringValue!
    try! capture(parley, home: alice, ["room", "create", "files", "--bucket", "file://\(directory)/bucket", "--create-bucket"])
    let invite = try! JSONParser().parse(Array(try! capture(parley, home: alice, ["room", "invite", "files", "bob", "--key", bobKey, "--json"]).utf8))
    try! capture(parley, home: bob, ["room", "join", invite["invite_code"]!.stringValue!])

    let sendArguments = ["--home", alice, "send", "files", "--file", source]
    let send = runProcess(parley, sendArguments)
    precondition(send.status == 0, "parley send --file failed")
    record(
        "send --file of \(megabytes) MiB through a folder bucket (seal, store, upload)", megabytesMoved / send.seconds, "MB/s", target: "≥ 300 MB/s",
        met: megabytesMoved / send.seconds >= 300)
    try! capture(parley, home: bob, ["sync"])
    let eventID = (try! JSONParser(maxBytes: 1 << 26).parse(Array(try! capture(parley, home: bob, ["log", "files", "--json"]).utf8))).arrayValue!.last![
        "event_id"]!
        .stringValue!
    let target = "\(directory)/downloaded.bin"
    let downloadArguments = ["--home", bob, "download", eventID, "-o", target]
    let download = runProcess(parley, downloadArguments)
    precondition(download.status == 0, "parley download failed")
    record(
        "download of \(megabytes) MiB from a folder bucket (fetch, check, open, write)", megabytesMoved / download.seconds, "MB/s",
        target: "≥ 300 MB/s", met: megabytesMoved / download.seconds >= 300)
    precondition(runProcess("/usr/bin/cmp", [source, target]).status == 0, "the downloaded file differs")

    // Peak RSS, in runs of their own (GNU time): the same work again, the blocks gone from the nodes and the bucket.
    for path in ["\(alice)/blocks", "\(bob)/blocks", "\(directory)/bucket/rooms/files/blocks", target] { try? FileManager.default.removeItem(atPath: path) }
    let sendRSS = Double(peakRSS(parley, sendArguments)) / 1024
    record("peak RSS of send --file of \(megabytes) MiB", sendRSS, "MiB", target: "≤ 64 MiB", met: sendRSS <= 64)
    try? FileManager.default.removeItem(atPath: "\(bob)/blocks")
    try! capture(parley, home: bob, ["sync"])
    let newest = (try! JSONParser(maxBytes: 1 << 26).parse(Array(try! capture(parley, home: bob, ["log", "files", "--json"]).utf8))).arrayValue!.last![
        "event_id"]!
        .stringValue!
    let downloadRSS = Double(peakRSS(parley, ["--home", bob, "download", newest, "-o", target])) / 1024
    record("peak RSS of download of \(megabytes) MiB", downloadRSS, "MiB", target: "≤ 64 MiB", met: downloadRSS <= 64)

    // Whitened (§16.7): the same file again in the room set to whiten, each data block stored beside a random one.
    for path in ["\(alice)/blocks", "\(bob)/blocks", "\(directory)/bucket/rooms/files/blocks", target] { try? FileManager.default.removeItem(atPath: path) }
    try! capture(parley, home: alice, ["room", "whitening", "files", "on"])
    let whitenedSend = runProcess(parley, sendArguments)
    precondition(whitenedSend.status == 0, "parley send --file (whitened) failed")
    record(
        "send --file of \(megabytes) MiB, whitened (twice the blocks), through a folder bucket", megabytesMoved / whitenedSend.seconds, "MB/s",
        target: "cost beside the plain send: \(String(format: "%.0f", megabytesMoved / send.seconds)) MB/s")
    try! capture(parley, home: bob, ["sync"])
    let whitenedEvent = (try! JSONParser(maxBytes: 1 << 26).parse(Array(try! capture(parley, home: bob, ["log", "files", "--json"]).utf8))).arrayValue!
        .last!["event_id"]!.stringValue!
    let whitenedDownload = runProcess(parley, ["--home", bob, "download", whitenedEvent, "-o", target])
    precondition(whitenedDownload.status == 0, "parley download (whitened) failed")
    record(
        "download of \(megabytes) MiB, whitened, from a folder bucket", megabytesMoved / whitenedDownload.seconds, "MB/s",
        target: "cost beside the plain download: \(String(format: "%.0f", megabytesMoved / download.seconds)) MB/s")
    precondition(runProcess("/usr/bin/cmp", [source, target]).status == 0, "the downloaded whitened file differs")
    record("bucket bytes of the whitened \(megabytes) MiB file", Double(folderBytes("\(directory)/bucket/rooms/files/blocks")) / 1_048_576, "MiB")
    try! capture(parley, home: alice, ["room", "whitening", "files", "off"])
    try? FileManager.default.removeItem(atPath: target)

    motoFile(directory: directory, parley: parley, alice: alice, bob: bob)

    // Dedup: the same 100 MiB shared twice is stored and moved once.
    let hundred = "\(directory)/hundred.bin"
    writeRandomFile(hundred, size: 100 << 20)
    let bucketBlocks = "\(directory)/bucket/rooms/files/blocks"
    let beforeFirst = folderBytes(bucketBlocks)
    precondition(runProcess(parley, ["--home", alice, "send", "files", "--file", hundred]).status == 0)
    let afterFirst = folderBytes(bucketBlocks)
    let aliceBlocks = folderBytes("\(alice)/blocks")
    precondition(runProcess(parley, ["--home", alice, "send", "files", "--file", hundred, "again"]).status == 0)
    let second = Double(folderBytes(bucketBlocks) - afterFirst) / 1_048_576
    record(
        "bucket bytes the second send of the same 100 MiB adds", second, "MiB", target: "0 (first: \((afterFirst - beforeFirst) >> 20) MiB)", met: second == 0)
    let storedAgain = Double(folderBytes("\(alice)/blocks") - aliceBlocks) / 1_048_576
    record("node bytes the second send of the same 100 MiB adds", storedAgain, "MiB", target: "0", met: storedAgain == 0)
    try? FileManager.default.removeItem(atPath: directory)
}

/// A 100 MiB file through moto (the S3 server the tests use, in Python, in memory), when one runs: what an S3 bucket
/// reached over HTTP gives beside the folder bucket.
func motoFile(directory: String, parley: String, alice: String, bob: String) {
    let environment = ProcessInfo.processInfo.environment
    guard let endpoint = environment["PARLEY_TEST_S3_ENDPOINT"] else {
        print("No S3 server (PARLEY_TEST_S3_ENDPOINT); skipping the file through moto.")
        return
    }
    setenv("AWS_ACCESS_KEY_ID", environment["PARLEY_TEST_S3_KEY_ID"] ?? "x", 1)
    setenv("AWS_SECRET_ACCESS_KEY", environment["PARLEY_TEST_S3_SECRET"] ?? "x", 1)
    let size = 100 << 20
    let source = "\(directory)/moto.bin"
    writeRandomFile(source, size: size)
    let bucket = "s3://parley-test/bench-files-\(getpid())/?endpoint=\(endpoint)"
    try! capture(parley, home: alice, ["room", "create", "s3files", "--bucket", bucket])
    let bobKey = (try! JSONParser().parse(Array(try! capture(parley, home: bob, ["whoami", "--json"]).utf8)))["signing_key"]!.stringValue!
    let invite = try! JSONParser().parse(Array(try! capture(parley, home: alice, ["room", "invite", "s3files", "bob", "--key", bobKey, "--json"]).utf8))
    try! capture(parley, home: bob, ["room", "join", invite["invite_code"]!.stringValue!])
    let send = runProcess(parley, ["--home", alice, "send", "s3files", "--file", source])
    precondition(send.status == 0, "parley send --file to moto failed")
    let megabytes = Double(size) / 1_000_000
    record("send --file of 100 MiB through moto (S3 over HTTP on loopback)", megabytes / send.seconds, "MB/s", target: "stated, with what bounds it")
    try! capture(parley, home: bob, ["sync"])
    let eventID = (try! JSONParser(maxBytes: 1 << 26).parse(Array(try! capture(parley, home: bob, ["log", "s3files", "--json"]).utf8))).arrayValue!.last![
        "event_id"]!.stringValue!
    let target = "\(directory)/moto-copy.bin"
    let download = runProcess(parley, ["--home", bob, "download", eventID, "-o", target])
    precondition(download.status == 0, "parley download from moto failed")
    record("download of 100 MiB from moto", megabytes / download.seconds, "MB/s", target: "stated, with what bounds it")
    precondition(runProcess("/usr/bin/cmp", [source, target]).status == 0, "the file from moto differs")
    try? FileManager.default.removeItem(atPath: target)
    try? FileManager.default.removeItem(atPath: source)
}
