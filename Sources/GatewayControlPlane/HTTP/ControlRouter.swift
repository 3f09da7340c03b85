import Hummingbird

extension ControlPlane {
    /// The whole HTTP surface: admin API under /beta, agent API under /agent/v1, log downloads.
    /// Middlewares come first because Hummingbird binds them to routes as they are added.
    public func router() -> Router<ControlRequestContext> {
        let router = Router(context: ControlRequestContext.self)
        router.add(middleware: ODataErrorMiddleware(logger: logger))
        router.add(middleware: AdminAuthMiddleware(authenticator: authenticator, logger: logger))
        addConfigurationRoutes(router)
        addSiteRoutes(router)
        addServerRoutes(router)
        addThresholdRoutes(router)
        addLogCollectionRoutes(router)
        addAgentRoutes(router)
        HTTP.route(router, "/healthz", [
            .get: { _, _ in HTTP.json(.object(["status": .string("ok"), "version": .string(self.options.version)])) },
        ])
        return router
    }
}
