import ArgumentParser

/// The options every command that moves a tree between images shares.
struct MoveOptions: ParsableArguments {
    @Option(help: "The tree to move.")
    var root: String

    @Option(help: "The manifest to move to.")
    var to: String

    @Option(help: "The manifest the tree matches now; default: its installed manifest.")
    var from: String?

    @Option(help: "A local blob directory in repository layout (DIR/<hh>/<hash>); repeatable.")
    var blobs: [String] = []
}
