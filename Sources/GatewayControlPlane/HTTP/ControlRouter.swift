import Hummingbird

/// Where routes are registered. Admin paths (`/beta…`) go on the `/beta` route group,
/// which carries the admin authentication middleware, so no admin route can be reached
/// without it whatever the spelling of the raw path; everything else (agent API with its
/// own mTLS check, signed downloads, `/healthz`, the `/console` page) on the router itself.
struct RouteTable {
    static let adminPrefix = "/beta"
    let router: Router<ControlRequestContext>
    let admin: RouterGroup<ControlRequestContext>

    func route(_ path: String, _ handlers: [HTTPRequest.Method: Handler]) {
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
    func router(refuseAmbiguousPaths: Bool, authenticateBetaPrefix: Bool) -> Router<ControlRequestContext> {
        let router = Router(context: ControlRequestContext.self)
        router.add(middleware: ODataErrorMiddleware(logger: logger))
        if refuseAmbiguousPaths { router.add(middleware: CanonicalPathMiddleware()) }
        let logGate = LogGate()
        if authenticateBetaPrefix {
            router.add(middleware: AdminAuthMiddleware(authenticator: authenticator, throttle: adminThrottle, now: now, logger: logger,
                                                       logGate: logGate, scope: .pathPrefix))
        }
        let admin = router.group(RouterPath(RouteTable.adminPrefix))
            .add(middleware: AdminAuthMiddleware(authenticator: authenticator, throttle: adminThrottle, now: now, logger: logger,
                                                 logGate: logGate, scope: .group))
        let routes = RouteTable(router: router, admin: admin)
        addConfigurationRoutes(routes)
        addSiteRoutes(routes)
        addServerRoutes(routes)
        addThresholdRoutes(routes)
        addLogCollectionRoutes(routes)
        addAgentRoutes(routes)
        addConsoleRoutes(routes)
        addDevIssuerRoutes(routes)
        routes.route("/healthz", [
            .get: { _, _ in HTTP.json(.object(["status": .string("ok"), "version": .string(self.options.version)])) },
        ])
        return router
    }
}
