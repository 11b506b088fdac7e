import FSS
import Foundation
import Protocols

#if canImport(Glibc)
    import Glibc
#endif

/// Why a credentials file was refused.
public struct CredentialsError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The secrets one role of a deployment holds, generated together by `sigma credentials`.
///
/// A deployment has three 32-byte secrets: the server–client key (TLS between the parties) and one dealer–party key
/// per party (the MAC of that party's key files, and TLS should the dealer send keys over the network). Each role's
/// file holds only the secrets it needs: the server does not hold the client's dealer key and vice versa.
///
/// File format (text, owner-only permissions, refused otherwise, like ssh's private keys):
///
///     sigma-credentials 1
///     deployment <16 bytes hex>
///     role server|client|dealer
///     server-client <32 bytes hex>      (server, client)
///     dealer-server <32 bytes hex>      (dealer, server)
///     dealer-client <32 bytes hex>      (dealer, client)
public struct Credentials: Equatable, Sendable {
    public enum Role: String, Sendable, CaseIterable {
        case dealer, server, client
    }

    public var deployment: [UInt8]
    public var role: Role
    /// The server–client secret (parties only).
    public var serverClientKey: [UInt8]?
    /// The dealer's secret with each party: both for the dealer, the party's own for a party.
    public var dealerKeys: [Party: [UInt8]]

    static let header = "sigma-credentials 1"

    /// Fresh credentials for all three roles of one deployment, from the OS CSPRNG.
    public static func generate() -> [Role: Credentials] {
        var random = SecureRandom()
        let deployment = random.bytes(16)
        let serverClient = random.bytes(32)
        let dealerServer = random.bytes(32)
        let dealerClient = random.bytes(32)
        return [
            .dealer: Credentials(
                deployment: deployment, role: .dealer, serverClientKey: nil,
                dealerKeys: [.p0: dealerServer, .p1: dealerClient]),
            .server: Credentials(
                deployment: deployment, role: .server, serverClientKey: serverClient, dealerKeys: [.p0: dealerServer]),
            .client: Credentials(
                deployment: deployment, role: .client, serverClientKey: serverClient, dealerKeys: [.p1: dealerClient]),
        ]
    }

    /// The TLS setting of the server–client channel.
    public func partyChannelSecurity() throws -> ChannelSecurity {
        guard let key = serverClientKey else {
            throw CredentialsError(
                "the \(role) credentials hold no server–client key (use the server's or client's file)")
        }
        return .tls(presharedKey: key, identity: "sigma/1/\(hex(deployment))/server-client")
    }

    /// The TLS setting of the channel on which the dealer streams `party`'s keys (`KeyStreamSender`): a pre-shared key
    /// derived from the dealer's secret with that party, which only the two of them hold.
    public func dealerChannelSecurity(for party: Party) throws -> ChannelSecurity {
        let name = party == .p0 ? "server" : "client"
        return .tls(
            presharedKey: try derive(from: party, label: "sigma key-stream channel 1", context: deployment),
            identity: "sigma/1/\(hex(deployment))/dealer-\(name)")
    }

    /// The secret that authenticates `party`'s key files.
    public func keyFileSecret(for party: Party) throws -> [UInt8] {
        guard let key = dealerKeys[party] else {
            throw CredentialsError(
                "the \(role) credentials hold no key for the \(party == .p0 ? "server" : "client")'s key files")
        }
        return key
    }

    /// HMAC-SHA-256(the dealer's secret with `party`, label ‖ context): a value the dealer and that party both
    /// derive and nobody else can (the server's weight-mask seed).
    public func derive(from party: Party, label: String, context: [UInt8]) throws -> [UInt8] {
        hmacSHA256(key: try keyFileSecret(for: party), data: Array(label.utf8) + context)
    }

    public var encoded: String {
        var lines = [Self.header, "deployment \(hex(deployment))", "role \(role.rawValue)"]
        if let key = serverClientKey { lines.append("server-client \(hex(key))") }
        if let key = dealerKeys[.p0] { lines.append("dealer-server \(hex(key))") }
        if let key = dealerKeys[.p1] { lines.append("dealer-client \(hex(key))") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Parses a credentials file's text; every field is checked.
    public init(parsing text: String) throws {
        var fields: [String: String] = [:]
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.first.map(String.init) == Self.header else {
            throw CredentialsError("not a Sigma credentials file (it must start with '\(Self.header)')")
        }
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ")
            guard parts.count == 2, fields[String(parts[0])] == nil else {
                throw CredentialsError("malformed credentials line '\(line.prefix(40))'")
            }
            fields[String(parts[0])] = String(parts[1])
        }
        func secret(_ name: String, bytes: Int) throws -> [UInt8]? {
            guard let text = fields.removeValue(forKey: name) else { return nil }
            guard let value = unhex(text), value.count == bytes else {
                throw CredentialsError("'\(name)' must be \(bytes) bytes in hexadecimal")
            }
            return value
        }
        guard let roleName = fields.removeValue(forKey: "role"), let role = Role(rawValue: roleName) else {
            throw CredentialsError("the credentials name no role (dealer, server or client)")
        }
        guard let deployment = try secret("deployment", bytes: 16) else {
            throw CredentialsError("the credentials name no deployment")
        }
        self.deployment = deployment
        self.role = role
        serverClientKey = try secret("server-client", bytes: 32)
        dealerKeys = [:]
        dealerKeys[.p0] = try secret("dealer-server", bytes: 32)
        dealerKeys[.p1] = try secret("dealer-client", bytes: 32)
        if let unknown = fields.keys.sorted().first { throw CredentialsError("unknown credentials field '\(unknown)'") }
        let complete =
            switch role {
            case .dealer: serverClientKey == nil && dealerKeys.count == 2
            case .server: serverClientKey != nil && Set(dealerKeys.keys) == [.p0]
            case .client: serverClientKey != nil && Set(dealerKeys.keys) == [.p1]
            }
        guard complete else {
            throw CredentialsError("the \(role) credentials do not hold exactly the \(role)'s secrets")
        }
    }

    init(deployment: [UInt8], role: Role, serverClientKey: [UInt8]?, dealerKeys: [Party: [UInt8]]) {
        self.deployment = deployment
        self.role = role
        self.serverClientKey = serverClientKey
        self.dealerKeys = dealerKeys
    }

    /// Reads a credentials file, refusing one that others may read (or that is not a regular file).
    public static func load(path: String, as role: Role) throws -> Credentials {
        var info = stat()
        guard stat(path, &info) == 0 else { throw CredentialsError("cannot read credentials \(path) (errno \(errno))") }
        guard (info.st_mode & S_IFMT) == S_IFREG, info.st_size > 0, info.st_size <= 4096 else {
            throw CredentialsError("\(path) is not a credentials file")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw CredentialsError(
                "\(path) is readable by other users (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CredentialsError("cannot read credentials \(path)")
        }
        let credentials = try Credentials(parsing: String(decoding: data, as: UTF8.self))
        guard credentials.role == role else {
            throw CredentialsError("\(path) holds the \(credentials.role)'s credentials, not the \(role)'s")
        }
        return credentials
    }

    /// Writes the three roles' files into `directory` (created owner-only), refusing to overwrite.
    public static func write(_ all: [Role: Credentials], to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return try Role.allCases.map { role in
            let path = directory + "/\(role.rawValue).cred"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else {
                throw CredentialsError(
                    errno == EEXIST ? "\(path) exists; credentials are never overwritten" : "cannot create \(path)")
            }
            defer { close(fd) }
            let bytes = Array(all[role]!.encoded.utf8)
            guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count, fsync(fd) == 0
            else { throw CredentialsError("cannot write \(path) (errno \(errno))") }
            return path
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

func unhex(_ text: String) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    for i in stride(from: 0, to: digits.count, by: 2) {
        guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
        out.append(high << 4 | low)
    }
    return out
}
