import ArgumentParser
import Updatinator

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

    @Flag(help: "The tree is the root a system runs from (implied when it is /): its runtime mounts (/dev /proc /sys /run), /tmp, /var, /home, /root, /media, /mnt and /lost+found are the machine's and left alone, and /etc is merged three ways (local changes kept, the new image's version of a conflicting file beside it as NAME.updatinator-new).")
    var live = false

    var machine: MachinePaths { get throws { try MachinePaths.of(root: root, live: live) } }
}
