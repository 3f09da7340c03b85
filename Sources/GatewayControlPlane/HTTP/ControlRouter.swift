import Foundation
import Hummingbird
import NIOCore

/// Records what the route table registers (path and the methods with a real handler, not
/// the 405 answers), so a test can hold the OpenAPI description to the router.
final class RouteRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: Set<String>] = [:]

    func record(_ path: String, _ methods: some Sequence<HTTPRequest.Method>) {
        lock.withLock { entries[path, default: []].formUnion(methods.map(\.rawValue)) }
    }

    /// Path → method names.
    var routes: [String: Set<String>] { lock.withLock { entries } }

    /// The methods served on the route `path` matches (a `{name}` segment matches any one
    /// segment; one trailing `/` is ignored), in `HTTP.methods` order; nil when no route
    /// matches. Lets a method the router has no entry for at all (TRACE, QUERY, …) on a
    /// known path be answered 405 rather than 404.
    func allowedMethods(forPath path: String) -> [String]? {
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if segments.count > 1, segments.last?.isEmpty == true { segments = segments.dropLast() }
        let routes = self.routes
        var allowed = Set<String>()
        var matched = false
        for (pattern, methods) in routes {
            let parts = pattern.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            guard parts.count == segments.count else { continue }
            if zip(parts, segments).allSatisfy({ p, s in (p.hasPrefix("{") && p.hasSuffix("}") && !s.isEmpty) || p == s }) {
                matched = true
                allowed.formUnion(methods)
            }
        }
        return matched ? HTTP.methods.map(\.rawValue).filter(allowed.contains) : nil
    }
}

/// Where routes are registered. Admin paths (`/beta…`) go on the `/beta` route group,
/// which carries the admin authentication middleware, so no admin route can be reached
/// without it whatever the spelling of the raw path; everything else (agent API with its
/// own mTLS check, signed downloads, `/healthz`, the `/console` page) on the router itself.
struct RouteTable {
    static let adminPrefix = "/beta"
    let router: Router<ControlRequestContext>
    let admin: RouterGroup<ControlRequestContext>
    var registry: RouteRegistry?

    func route(_ path: String, _ handlers: [HTTPRequest.Method: Handler]) {
        registry?.record(path, handlers.keys)
        if path == Self.adminPrefix || path.hasPrefix(Self.adminPrefix + "/") {
            let rest = String(path.dropFirst(Self.adminPrefix.count))
            HTTP.route(admin, rest.isEmpty ? "/" : rest, handlers)
        } else {
            HTTP.route(router, path, handlers)
        }
    }
}

extension ControlPlane {
    /// The whole HTTP surface: admin API under /beta, agent API under /agent/v1, log downloads,
    /// the admin web console's page at /console (no data in it; it calls /beta with a token).
    /// Middlewares come first because Hummingbird binds them to routes as they are added.
    public func router() -> Router<ControlRequestContext> {
        router(refuseAmbiguousPaths: true, authenticateBetaPrefix: true)
    }

    /// The outer layers can be left out to test that the `/beta` group authenticates on its own.
    func router(refuseAmbiguousPaths: Bool, authenticateBetaPrefix: Bool, registry: RouteRegistry? = nil) -> Router<ControlRequestContext> {
        let router = Router(context: ControlRequestContext.self)
        // Always kept: the error middleware asks it whether a 404 is really a 405.
        let registry = registry ?? RouteRegistry()
        // Outermost, so every answer is counted and timed, errors included (docs/metrics.md).
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: ODataErrorMiddleware(logger: logger, routes: registry))
        if refuseAmbiguousPaths { router.add(middleware: CanonicalPathMiddleware()) }
        let logGate = LogGate()
        if authenticateBetaPrefix {
            router.add(middleware: AdminAuthMiddleware(authenticator: authenticator, throttle: adminThrottle, now: now, logger: logger,
                                                       logGate: logGate, scope: .pathPrefix))
        }
        let admin = router.group(RouterPath(RouteTable.adminPrefix))
            .add(middleware: AdminAuthMiddleware(authenticator: authenticator, throttle: adminThrottle, now: now, logger: logger,
                                                 logGate: logGate, scope: .group))
        let routes = RouteTable(router: router, admin: admin, registry: registry)
        addConfigurationRoutes(routes)
        addSiteRoutes(routes)
        addServerRoutes(routes)
        addThresholdRoutes(routes)
        addLogCollectionRoutes(routes)
        addAgentRoutes(routes)
        addConsoleRoutes(routes)
        addDevIssuerRoutes(routes)
        // Liveness for a balancer in front of several instances: an instance that cannot
        // reach the database (PostgreSQL gone, its link down) answers 503 and is left out.
        routes.route("/healthz", [
            .get: { _, _ in
                do {
                    try await self.store.ping(within: .seconds(2))
                    return HTTP.json(.object(["status": .string("ok"), "version": .string(self.options.version),
                                              "database": .string(self.store.databaseKind)]))
                } catch {
                    self.logger.warning("healthz.database_unavailable", metadata: ["error": "\(error)"])
                    return HTTP.json(.object(["status": .string("unavailable"), "version": .string(self.options.version),
                                              "database": .string(self.store.databaseKind), "error": .string("the database does not answer")]),
                                     status: .serviceUnavailable)
                }
            },
        ])
        // The OpenAPI description, public like /healthz: it holds no secrets, and a client
        // generator or an API prober needs it before it has any credential.
        let openAPI = ByteBuffer(bytes: ControlPlaneOpenAPI.json(version: options.version))
        routes.route(ControlPlaneOpenAPI.path, [
            .get: { _, _ in Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: openAPI)) },
        ])
        return router
    }
}
