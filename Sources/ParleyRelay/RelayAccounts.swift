import Dispatch
import Foundation
import ParleyArgon2
import ParleyCore
import Synchronization

/// Accounts as the relay's routes use them: registration, login with Argon2id off the event loop and limited per
/// address and per account, sessions, and devices added by signed challenge (docs/PROTOCOL.md §15.3).
public final class RelayAccounts: Sendable {
    public let store: any AccountStorage
    let settings: RelaySettings
    let passwordWork: PasswordWork
    let limits: Mutex<LoginLimits>
    let boundOrigin = Mutex<String?>(nil)

    public init(store: any AccountStorage, settings: RelaySettings) {
        self.store = store
        self.settings = settings
        passwordWork = PasswordWork(slots: settings.passwordConcurrency, maxWaiting: settings.passwordQueue)
        limits = Mutex(LoginLimits(addressLoginsPerMinute: settings.loginsPerAddressPerMinute))
    }

    /// The origin device challenges are bound to: the configured one, or the address the relay listens on.
    public var origin: String { boundOrigin.withLock { $0 } ?? settings.origin }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// 32 random bytes as 64 hex digits: a session or invite token.
    static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return Hex.encode((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    static func checkPassword(_ password: String) throws(RelayError) {
        guard (8...1024).contains(password.utf8.count) else {
            throw RelayError("weak_password", "A password must be 8 to 1,024 bytes long.", remedy: "Choose a longer password.", status: .badRequest)
        }
    }

    func hash(password: String) async throws -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let parameters = settings.passwordParameters
        return try await passwordWork.run { try parameters.encodedHash(password: Array(password.utf8), salt: salt) }
    }

    func verify(password: String, hash: String) async throws -> Bool {
        try await passwordWork.run { Argon2idParameters.verify(password: Array(password.utf8), encodedHash: hash) }
    }

    /// Registers `userID`, as the relay's registration setting allows.
    public func register(userID: String, password: String, invite: String?) async throws {
        guard Identifier.problem(with: userID, kind: .user) == nil else { throw RelayError.invalidRequest("user_id is not a user id (a-z 0-9 . _ = -).") }
        try Self.checkPassword(password)
        switch settings.registration {
        case .open: break
        case .closed:
            throw RelayError(
                "registration_closed", "This relay does not take new accounts.", remedy: "Ask its operator for an account.", status: .forbidden)
        case .invite:
            guard let invite, try await store.takeInvite(token: invite, userID: userID, nowMs: Self.nowMs()) else {
                throw RelayError(
                    "invalid_invite", "This relay takes new accounts by invite token only, and none valid was given.",
                    remedy: "Ask its operator for an invite token (parley relay admin invite) and pass it with --invite.", status: .forbidden)
            }
        }
        let hash = try await hash(password: password)
        guard try await store.addAccount(userID: userID, passwordHash: hash, nowMs: Self.nowMs()) else {
            throw RelayError("account_exists", "The relay already has an account \(userID).", remedy: "Log in instead.", status: .conflict)
        }
    }

    /// Checks a password and opens a session.
    /// - Returns: the session token and when it expires.
    public func login(userID: String, password: String, from address: String) async throws -> (token: String, expiresMs: Int64) {
        let now = Self.nowMs()
        try limits.withLock { limits throws(RelayError) in try limits.admit(userID: userID, address: address, nowMs: now) }
        let credentials = try await store.credentials(userID: userID)
        // An unknown account costs the same hash as a known one: timing does not tell which user ids exist.
        let matches = try await verify(password: password, hash: credentials?.passwordHash ?? settings.decoyHash)
        guard let credentials, matches, !credentials.isDisabled else {
            limits.withLock { $0.failed(userID: userID, nowMs: now) }
            throw RelayError(
                "invalid_credentials", "The user id or the password is wrong, or the account is disabled.",
                remedy: "Check both; an operator can say whether the account is disabled.", status: .unauthorized)
        }
        limits.withLock { $0.succeeded(userID: userID, address: address) }
        let token = Self.newToken()
        let expires = now + settings.sessionLifetimeMs
        try await store.addSession(token: token, userID: userID, nowMs: now, expiresMs: expires)
        return (token, expires)
    }

    /// The user a session token is for, if it is live.
    public func user(token: String) async throws -> String? { try await store.sessionUser(token: token, nowMs: Self.nowMs()) }

    public func logout(token: String) async throws { try await store.deleteSession(token: token) }
    public func logoutEverywhere(userID: String) async throws { try await store.deleteSessions(userID: userID) }

    /// Changes a password after checking the old one; every other session of the account ends.
    public func changePassword(userID: String, old: String, new: String, keeping token: String) async throws {
        try Self.checkPassword(new)
        guard let credentials = try await store.credentials(userID: userID), try await verify(password: old, hash: credentials.passwordHash) else {
            throw RelayError("invalid_credentials", "The current password is wrong.", remedy: "Give the password you log in with.", status: .unauthorized)
        }
        try await store.setPassword(userID: userID, passwordHash: try await hash(password: new), keepingSession: token)
    }

    /// Deletes an account after checking its password.
    public func deleteAccount(userID: String, password: String) async throws {
        guard let credentials = try await store.credentials(userID: userID), try await verify(password: password, hash: credentials.passwordHash) else {
            throw RelayError("invalid_credentials", "The password is wrong.", remedy: "Give the password you log in with.", status: .unauthorized)
        }
        try await store.deleteAccount(userID: userID)
    }

    /// A fresh challenge for adding a device to `userID`'s account, open for ``RelaySettings/challengeLifetimeMs``.
    public func challenge(userID: String) async throws -> RelayChallenge {
        var generator = SystemRandomNumberGenerator()
        let nonce = Base64.encode((0..<RelayChallenge.nonceBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        let now = Self.nowMs()
        let challenge = RelayChallenge(origin: origin, userID: userID, nonce: nonce, expiresMs: now + settings.challengeLifetimeMs)
        try await store.addChallenge(nonce: nonce, userID: userID, nowMs: now, expiresMs: challenge.expiresMs)
        return challenge
    }

    /// Adds a device to `userID`'s account: `signature` must sign `challenge`, one this relay gave the account and
    /// that is still open, under `deviceKey`.
    public func addDevice(userID: String, challenge: RelayChallenge, deviceKey: String, signature: String) async throws {
        let now = Self.nowMs()
        guard challenge.origin == origin, challenge.userID == userID, challenge.expiresMs > now else {
            throw RelayError(
                "invalid_challenge", "The challenge is not one this relay gave this account, or it expired.", remedy: "Ask for a new challenge.",
                status: .badRequest)
        }
        do { try challenge.verify(deviceKey: deviceKey, signature: signature) } catch {
            throw RelayError("bad_signature", error.message, remedy: "Sign the challenge with the device's key.", status: .badRequest)
        }
        guard try await store.takeChallenge(nonce: challenge.nonce, userID: userID, nowMs: now) else {
            throw RelayError(
                "invalid_challenge", "The challenge was used already, or expired.", remedy: "Ask for a new challenge.", status: .badRequest)
        }
        if let owner = try await store.deviceOwner(key: deviceKey), owner != userID {
            throw RelayError(
                "device_taken", "This device key belongs to another account of this relay.", remedy: "A device serves one account.",
                status: .conflict)
        }
        _ = try await store.addDevice(key: deviceKey, userID: userID, nowMs: now)
    }

    /// Issues an invite token for one registration, valid for `days`.
    public func issueInvite(days: Int) async throws -> String {
        let token = Self.newToken()
        let now = Self.nowMs()
        try await store.addInvite(token: token, nowMs: now, expiresMs: now + Int64(days) * 86_400_000)
        return token
    }
}

/// How many Argon2id computations run at once (each holds its memory cost), on threads of their own so the event
/// loops and the cooperative pool never wait on one; past `maxWaiting` queued, a request is refused at once. The
/// threads run at a lower scheduling priority (nice 10): on a busy machine a login storm takes what delivery leaves,
/// rather than a fair share of each core.
final class PasswordWork: Sendable {
    let slots: Int
    let maxWaiting: Int
    private let state = Mutex<(running: Int, waiting: [CheckedContinuation<Void, any Error>])>((0, []))
    private let jobs = PasswordThreads()

    init(slots: Int, maxWaiting: Int) {
        self.slots = max(1, slots)
        self.maxWaiting = maxWaiting
        jobs.start(count: self.slots)
    }

    deinit { jobs.stop() }

    func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let admission: PasswordAdmission = state.withLock { state in
                if state.running < slots {
                    state.running += 1
                    return .now
                }
                guard state.waiting.count < maxWaiting else { return .refused }
                state.waiting.append(continuation)
                return .queued
            }
            switch admission {
            case .now: continuation.resume()
            case .queued: break
            case .refused:
                continuation.resume(
                    throwing: RelayError(
                        "busy", "The relay is checking too many passwords at once.", remedy: "Try again in a few seconds.", status: .serviceUnavailable))
            }
        }
        defer {
            let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard !state.waiting.isEmpty else {
                    state.running -= 1
                    return nil
                }
                return state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await withCheckedThrowingContinuation { continuation in
            jobs.submit { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// Threads that run submitted jobs in order, at nice 10, until stopped.
private final class PasswordThreads: Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`.
    nonisolated(unsafe) private var queue: [@Sendable () -> Void] = []
    nonisolated(unsafe) private var stopped = false

    func start(count: Int) {
        for index in 0..<count {
            let thread = Thread { [self] in
                #if os(Linux)
                    // On Linux the nice value is a thread's own: 0 names this thread, not the process.
                    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
                #endif
                while true {
                    condition.lock()
                    while queue.isEmpty && !stopped { condition.wait() }
                    guard !queue.isEmpty else {
                        condition.unlock()
                        return
                    }
                    let job = queue.removeFirst()
                    condition.unlock()
                    job()
                }
            }
            thread.name = "parley-passwords-\(index)"
            thread.start()
        }
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        queue.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The threads end once the jobs submitted so far are done.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}

private enum PasswordAdmission { case now, queued, refused }

/// Login attempts allowed per address and failures per account, as token buckets. An account whose failures ran out
/// still takes logins from addresses that logged in to it before, so an attacker elsewhere cannot lock its user out;
/// and its bucket refills within minutes.
struct LoginLimits {
    struct Bucket {
        var tokens: Double
        var updatedMs: Int64
    }

    var addresses: [String: Bucket] = [:]
    var accounts: [String: Bucket] = [:]
    var trusted: [String: Set<String>] = [:]
    /// Login attempts one address may make at once, refilled over a minute.
    let addressBurst: Double
    let addressRefillMs: Double

    static let accountBurst = 10.0
    static let accountRefillMs = 30_000.0
    static let maxEntries = 100_000

    init(addressLoginsPerMinute: Double = 20) {
        addressBurst = addressLoginsPerMinute
        addressRefillMs = 60_000 / addressLoginsPerMinute
    }

    mutating func admit(userID: String, address: String, nowMs: Int64) throws(RelayError) {
        var bucket = Self.refilled(addresses[address], burst: addressBurst, refillMs: addressRefillMs, nowMs: nowMs)
        guard bucket.tokens >= 1 else {
            throw RelayError("rate_limited", "Too many login attempts from this address.", remedy: "Wait a minute and try again.", status: .tooManyRequests)
        }
        bucket.tokens -= 1
        if addresses.count >= Self.maxEntries { addresses.removeAll(keepingCapacity: true) }
        addresses[address] = bucket
        let account = Self.refilled(accounts[userID], burst: Self.accountBurst, refillMs: Self.accountRefillMs, nowMs: nowMs)
        guard account.tokens >= 1 || trusted[userID]?.contains(address) == true else {
            throw RelayError(
                "rate_limited", "Too many failed logins to this account.", remedy: "Wait a minute and try again.", status: .tooManyRequests)
        }
    }

    mutating func failed(userID: String, nowMs: Int64) {
        var bucket = Self.refilled(accounts[userID], burst: Self.accountBurst, refillMs: Self.accountRefillMs, nowMs: nowMs)
        bucket.tokens = max(0, bucket.tokens - 1)
        if accounts.count >= Self.maxEntries { accounts.removeAll(keepingCapacity: true) }
        accounts[userID] = bucket
    }

    mutating func succeeded(userID: String, address: String) {
        if trusted.count >= Self.maxEntries { trusted.removeAll(keepingCapacity: true) }
        var addresses = trusted[userID] ?? []
        if addresses.count < 16 { addresses.insert(address) }
        trusted[userID] = addresses
    }

    static func refilled(_ bucket: Bucket?, burst: Double, refillMs: Double, nowMs: Int64) -> Bucket {
        guard let bucket else { return Bucket(tokens: burst, updatedMs: nowMs) }
        let tokens = min(burst, bucket.tokens + Double(max(0, nowMs - bucket.updatedMs)) / refillMs)
        return Bucket(tokens: tokens, updatedMs: nowMs)
    }
}
