/// The plugin's version, reported in `ping` answers and the HTTP User-Agent.
public enum AuthVersion {
    public static let string = "0.1.0"
}
