import Foundation
import FuzzSupport
import GatewayAgentAPI
import GatewayCore

/// The agent ↔ control-plane JSON bodies (GatewayAgentAPI/AgentAPI.swift), decoded with
/// the control plane's configuration (GatewayControlPlane/Agent/AgentRoutes.swift
/// `decode`: a plain JSONDecoder, unknown keys allowed) and the agent's (also plain). Every
/// body type is tried on every input. Then what each side does first with a body: the
/// join token an enrollment carries (JoinToken(parsing:)), Graph dates (GraphDate.parse),
/// the configuration a check-in answer carries (GatewaySettings.validate).
///
/// Invariants:
/// - every body that decodes encodes, and decodes again to an equal value;
/// - a join token that parses prints as a token that parses to the same token, and its
///   CA hash is 64 lower-case hex digits;
/// - a date that parses, printed by GraphDate and parsed again, is the same instant (to
///   the millisecond GraphDate prints);
/// - a configuration that validates has a pool of /10…/30, at most 3 DNS servers and 500
///   split rules.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(UnsafeBufferPointer(start: data, count: size))

    // Control plane side (requests from agents).
    if let r = roundTrip(EnrollmentRequest.self, body) {
        joinToken(r.joinToken)
    }
    _ = roundTrip(RenewalRequest.self, body)
    if let r = roundTrip(CheckinRequest.self, body), let apply = r.lastApply {
        date(apply.dateTime)
    }
    if let batch = roundTrip(ReportBatch.self, body) {
        for item in batch.items {
            date(item.createdDateTime)
            if let e = item.event { date(e.dateTime) }
            if let h = item.health {
                h.agentCertificateNotAfter.map(date)
                h.tlsCertificate?.notAfter.map(date)
                h.tlsCertificate?.notBefore.map(date)
            }
        }
    }
    _ = roundTrip(LogCollectionFailure.self, body)

    // Agent side (answers from the control plane).
    if let r = roundTrip(EnrollmentResponse.self, body) { date(r.notAfter) }
    if let r = roundTrip(CheckinResponse.self, body) {
        r.renewAfter.map(date)
        for a in r.actions {
            a.startDateTime.map(date)
            a.endDateTime.map(date)
        }
        if let settings = r.configuration { validate(settings) }
    }
    _ = roundTrip(ReportAck.self, body)
    _ = roundTrip(AgentAPIError.Body.self, body)
    if let settings = roundTrip(AdminSettings.self, body) { validate(settings) }
    return 0
}

private func roundTrip<T: Codable & Equatable>(_ type: T.Type, _ body: Data) -> T? {
    guard let value = try? JSONDecoder().decode(type, from: body) else { return nil }
    let encoded: Data
    do {
        encoded = try JSONEncoder().encode(value)
    } catch {
        invariant(false, "\(type) decoded but does not encode: \(error)")
        return nil
    }
    do {
        let again = try JSONDecoder().decode(type, from: encoded)
        invariant(again == value, "\(type) changed in a round trip:\n \(value)\n \(again)")
    } catch {
        invariant(false, "\(type) encoded as text it cannot decode (\(error)): \(String(decoding: encoded.prefix(400), as: UTF8.self))")
    }
    return value
}

private func joinToken(_ text: String) {
    guard let token = try? JoinToken(parsing: text) else { return }
    invariant(token.caSHA256.count == 64 && token.caSHA256.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) },
              "join token CA hash '\(token.caSHA256)'")
    for part in [token.tokenId, token.secret] {
        invariant(!part.isEmpty && !part.contains("."), "join token part '\(part)'")
    }
    let again = try? JoinToken(parsing: token.description)
    invariant(again == token, "join token '\(token.description)' does not parse back to itself")
}

private func date(_ text: String) {
    if KnownIssue.lenientGraphDate(text) { return }
    guard let d = GraphDate.parse(text) else { return }
    let printed = GraphDate.string(d)
    guard let again = GraphDate.parse(printed) else {
        invariant(false, "GraphDate prints '\(printed)' (from '\(text)') and cannot parse it")
        return
    }
    invariant(abs(again.timeIntervalSince(d)) < 0.001, "'\(text)' → '\(printed)' is another instant")
}

private func validate(_ a: AdminSettings) {
    guard case .success(let s) = GatewaySettings.validate(a) else { return }
    invariant((GatewaySettings.minPoolPrefixLength...30).contains(s.pool.length), "a pool of /\(s.pool.length) validated")
    invariant(s.dnsServers.count <= 3, "\(s.dnsServers.count) DNS servers validated")
    invariant(s.routeIncludes.count + s.routeExcludes.count <= GatewaySettings.maxSplitRules, "too many split rules validated")
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_agent_api_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
