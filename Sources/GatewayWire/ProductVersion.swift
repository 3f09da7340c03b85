/// The one version of the product. Every executable prints it for `--version`, reports it
/// in `ping`, enrollment and check-in, and `deploy/build-images` tags the images with it.
/// Every process of a release carries the same number, so a mismatch the control plane
/// sees always means two releases.
public enum ProductVersion {
    public static let string = "0.1.0"
}
