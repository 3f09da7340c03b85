import Foundation
import Testing
@testable import GatewayAgent

@Suite struct ProxyEnvironmentTests {
    let url = "https://cp.example.test:8443/agent/v1/checkin"

    @Test func proxyChoiceFollowsCurlsRules() {
        #expect(ProxyEnvironment.proxy(for: url, environment: [:]) == nil)
        #expect(ProxyEnvironment.proxy(for: url, environment: ["HTTPS_PROXY": "http://p:3128"]) == "http://p:3128")
        #expect(ProxyEnvironment.proxy(for: url, environment: ["https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"]) == "http://a:1")
        #expect(ProxyEnvironment.proxy(for: url, environment: ["all_proxy": "http://all:1"]) == "http://all:1")
        // http_proxy is for http URLs only.
        #expect(ProxyEnvironment.proxy(for: url, environment: ["http_proxy": "http://h:1"]) == nil)
        #expect(ProxyEnvironment.proxy(for: url, environment: ["https_proxy": "http://p:1", "no_proxy": "example.test"]) == nil)
        #expect(ProxyEnvironment.proxy(for: url, environment: ["https_proxy": "http://p:1", "NO_PROXY": ".example.test"]) == nil)
        #expect(ProxyEnvironment.proxy(for: url, environment: ["https_proxy": "http://p:1", "no_proxy": "*"]) == nil)
        #expect(ProxyEnvironment.proxy(for: url, environment: ["https_proxy": "http://p:1", "no_proxy": "other.test, xample.test"]) == "http://p:1")
        #expect(ProxyEnvironment.proxy(for: "https://127.0.0.1:8443/x", environment: ["https_proxy": "http://p:1", "no_proxy": "127.0.0.0/8"]) == nil)
        #expect(ProxyEnvironment.proxy(for: "https://10.1.2.3/x", environment: ["https_proxy": "http://p:1", "no_proxy": "127.0.0.0/8"]) == "http://p:1")
    }

    @Test func credentialsInTheProxyURLAreRefused() {
        for proxy in ["http://user:pass@proxy.test:3128", "http://user@proxy.test:3128", "user:pass@proxy.test:3128", "socks5://u:p@proxy.test"] {
            let error = #expect(throws: AgentError.self) { try ProxyEnvironment.refuseCredentials(proxy) }
            #expect(error?.message.hasPrefix("authenticated proxies are not supported") == true)
            #expect(error?.message.contains("pass") == false)
        }
        #expect(throws: Never.self) { try ProxyEnvironment.refuseCredentials("http://proxy.test:3128") }
        #expect(throws: Never.self) { try ProxyEnvironment.refuseCredentials("proxy.test:3128") }
    }

    @Test func clientRefusesACredentialedProxyBeforeConnecting() {
        // The environment is injected, so nothing leaves the process: the refusal comes
        // before curl is even set up.
        let client = ControlPlaneClient(baseURL: "https://127.0.0.1:1", trust: .system, logger: .init(label: "test"),
                                        environment: ["https_proxy": "http://alice:s3cret@127.0.0.1:3128"])
        let error = #expect(throws: ControlPlaneError.self) { try client.fetchCAUnverified() }
        guard case .refused(let text) = error else {
            Issue.record("expected a refusal, got \(String(describing: error))")
            return
        }
        #expect(text.contains("authenticated proxies are not supported"))
        #expect(!text.contains("s3cret"))
    }

    @Test func redaction() {
        #expect(ProxyEnvironment.redacted("http://u:p@proxy:3128") == "http://***@proxy:3128")
        #expect(ProxyEnvironment.redacted("http://proxy:3128") == "http://proxy:3128")
    }
}
