/// Where a machine keeps Updatinator's configuration and state, used by the commands unless
/// told otherwise: keyrings, keys and policies under /etc/updatinator, state and caches under
/// /var/lib/updatinator (see docs/operations.md).
public enum DefaultPaths {
    public static let configuration = "/etc/updatinator"
    public static let state = "/var/lib/updatinator"

    /// Trusted build keys, which sign manifests and channels.
    public static let keyring = configuration + "/keyring"
    /// Trusted school-server keys, which sign decisions.
    public static let decisionKeyring = configuration + "/decision-keyring"
    /// The client policy the agent runs, and its settings.
    public static let policy = configuration + "/policy.lua"
    public static let policySettings = configuration + "/policy.json"
    /// On a school server: its policy and its decision key.
    public static let serverPolicy = configuration + "/server-policy.lua"
    public static let decisionKey = configuration + "/decision.sec"
    /// On a school server: the operators' token, which opens the management API and dashboard
    /// (and on an operator's machine, what `updatinator fleet` presents).
    public static let operatorToken = configuration + "/operator-token"
    /// On a school server: the repository it serves.
    public static let repository = state + "/repo"
    /// The directory of staged deployments that the initramfs boots from.
    public static let sysroot = "/sysroot"
    /// The device's secret key, made at first start, which signs its requests to the school server.
    public static let deviceKey = state + "/device.key"
    /// A school server's own key, which signs its requests to the tier above.
    public static let schoolKey = state + "/school.key"
    /// The deployment's enrolment token, baked into the image, which admits the device to a
    /// school server that admits by token (and on that server, the token it expects).
    public static let enrolmentToken = configuration + "/enrolment-token"
    /// The values `upd.state` keeps.
    public static let policyState = state + "/policy-state.json"
}
