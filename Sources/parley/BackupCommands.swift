import ArgumentParser
import Foundation
import ParleyClient

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export or restore this device's identity and room keys, sealed under a passphrase.",
        subcommands: [BackupExport.self, BackupImport.self])
}

/// Where a backup command gets its passphrase: a file in scripts, else the terminal.
struct PassphraseOptions: ParsableArguments {
    @Option(help: "Read the passphrase from the first line of this file instead of asking.") var passphraseFile: String?

    func passphrase(confirming: Bool) throws -> [UInt8] {
        try failing {
            if let passphraseFile { return try Passphrase.read(fromFile: passphraseFile) }
            let first = try Passphrase.prompt("Passphrase: ")
            if confirming, try Passphrase.prompt("Again: ") != first {
                throw ClientError(.invalidArgument, "The passphrases differ.")
            }
            return first
        }
    }
}

struct BackupExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the identity, every room key and the bucket rooms to FILE (mode 0600), sealed with Argon2id and AES-256-GCM.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The backup file to create; an existing file is not replaced.") var file: String
    @OptionGroup var secret: PassphraseOptions

    func run() throws {
        let node = try global.node()
        let passphrase = try secret.passphrase(confirming: true)
        try failing {
            let bytes = try KeyBackup.export(node: node, passphrase: passphrase)
            try node.home.createFile(atPath: file, contents: bytes, mode: 0o600)
        }
        output("Backed up \(node.identity.userID)'s identity and room keys to \(file)")
    }
}

struct BackupImport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Restore a backup: the identity (into an empty home, or the same identity's) and the room keys.",
        discussion: "Bucket rooms come back too: run `parley sync` to fetch their events before sending.")
    @OptionGroup var global: GlobalOptions
    @Argument var file: String
    @OptionGroup var secret: PassphraseOptions
    @Flag var json = false

    func run() throws {
        let passphrase = try secret.passphrase(confirming: false)
        let report = try failing {
            guard let data = FileManager.default.contents(atPath: file) else { throw ClientError(.io, "Cannot read \(file).") }
            return try KeyBackup.restore(Array(data), passphrase: passphrase, home: global.parleyHome)
        }
        if json {
            printJSON([
                "user_id": .string(report.userID), "installed_identity": .bool(report.installedIdentity),
                "room_keys": .integer(Int64(report.roomKeys)), "bucket_rooms": .integer(Int64(report.bucketRooms)),
            ])
        } else {
            output(
                "Restored \(report.userID): \(report.installedIdentity ? "identity, " : "")\(report.roomKeys) room key(s), \(report.bucketRooms) bucket room(s)"
            )
        }
    }
}
