import ArgumentParser

/// The option of every command that talks to https mirrors or servers: whom to trust.
struct TLSOptions: ParsableArguments {
    @Option(help: "A PEM file of the certificate authorities that https mirrors' and servers' certificates must chain to, instead of the system's store.")
    var caFile: String?
}
