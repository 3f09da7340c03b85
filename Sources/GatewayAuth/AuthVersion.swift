import GatewayWire

/// The plugin's version, reported in `ping` answers and the HTTP User-Agent.
public enum AuthVersion {
    public static var string: String { ProductVersion.string }
}
