/// The package's version: what `--version` prints, what a check request carries as
/// `agent_version`, and what the school server's `/metrics` exports. Raised with each release.
public enum UpdatinatorVersion {
    public static let current = "0.16.0"
}
