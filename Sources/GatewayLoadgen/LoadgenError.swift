/// A load-generator setup failure, said in the words of its options.
public struct LoadgenError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
