import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

extension StoreError {
    /// `error` as a store error: itself when it is one, else SQLite's failure by its kind: a damaged file, a full
    /// disk, a read-only or unreadable file, a busy database, a value too large. `nil` for an error that is not the
    /// store's.
    /// - Parameter path: the store's file, for the message and to look at the disk holding it.
    public init?(_ error: any Error, path: String) {
        if let error = error as? StoreError {
            self = error
            return
        }
        guard let error = error as? DatabaseError else { return nil }
        let says = "SQLite says \(error.message ?? "\(error.resultCode)")"
        let code = error.resultCode
        // SQLite reports a full disk as SQLITE_FULL only where it sees ENOSPC itself; growing its shared-memory or
        // log files, it says "disk I/O error". The disk says which it was.
        let disk = [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN].contains(code) ? DiskState(holding: path) : nil
        switch code {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            self.init(.damaged, "The store \(path) is damaged: \(says).")
        case _ where disk?.isReadOnly == true:
            self.init(
                .io, "The store \(path) cannot be written: the disk holding it is mounted read-only (\(says)).",
                remedy: "Mount it read-write, or give a home on a writable disk (--home).")
        case _ where code == .SQLITE_FULL || disk?.isFull == true:
            self.init(
                .io, "The disk holding the store \(path) is full: nothing of this was stored (\(says)).",
                remedy: "Free some space on it, then run the command again.")
        case .SQLITE_READONLY:
            self.init(.io, "The store \(path) cannot be written: \(says).", remedy: "Check that the file and its folder are yours and writable.")
        case .SQLITE_IOERR:
            self.init(
                .io, "Reading or writing the store \(path) failed: \(says).", remedy: "Look in the system log for disk errors; then run the command again.")
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
            self.init(.io, "Cannot open the store \(path): \(says).", remedy: "Check that the file and its folder are yours and writable.")
        case .SQLITE_NOMEM:
            self.init(.io, "The store \(path) ran out of memory: \(says).", remedy: "Close other programs, then run the command again.")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            self.init(
                .busy, "The store \(path) stayed locked by another process: \(says).",
                remedy: "Let the other parley process finish (or stop it), then run the command again.")
        case .SQLITE_TOOBIG:
            self.init(.tooLarge, "Too large for the store \(path): \(says).")
        default:
            self.init(.internalError, "The store \(path) failed: \(says).", remedy: "This is a bug in Parley; please report it with the command you ran.")
        }
    }
}

/// The disk holding a file, as far as a failed write needs it told.
struct DiskState {
    var isReadOnly: Bool
    var isFull: Bool

    /// The disk of `path`'s folder; nil when it cannot be asked.
    init?(holding path: String) {
        var status = statvfs()
        guard statvfs(URL(fileURLWithPath: path).deletingLastPathComponent().path, &status) == 0 else { return nil }
        isReadOnly = status.f_flag & UInt(ST_RDONLY) != 0
        // Less than a page of SQLite's: nothing more fits.
        isFull = UInt64(status.f_bavail) * UInt64(status.f_frsize) < 16_384
    }
}
