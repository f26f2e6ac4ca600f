import ArgumentParser
import Updatinator

struct DiffCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Lists what differs between two manifests and what moving between them costs.",
        discussion: """
            Prints entries added (+), removed (-) and changed (~, with what changed: type, content \
            or metadata), then a summary of file bytes and of the new contents a client would \
            download. Exits with 0 whether or not the manifests differ.
            """)

    @Argument(help: "The manifest moved from.")
    var old: String

    @Argument(help: "The manifest moved to.")
    var new: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func execute() throws {
        let a = try ManifestParser.parse(contentsOf: old)
        let b = try ManifestParser.parse(contentsOf: new, sharingPathsWith: a)
        let diff = ManifestDiff(from: a, to: b)
        let changedBy = { (aspect: ManifestDiff.Aspects) in diff.changed.filter { $0.aspects.contains(aspect) }.count }
        let summary: [String: Any] = [
            "added": diff.added.count, "removed": diff.removed.count, "changed": diff.changed.count,
            "type_changes": changedBy(.type), "content_changes": changedBy(.content),
            "metadata_changes": changedBy(.metadata),
            "added_file_bytes": diff.addedFileBytes, "removed_file_bytes": diff.removedFileBytes,
            "new_contents": diff.newContents, "new_content_blob_bytes": diff.newContentBlobBytes,
        ]
        if json {
            try Console.writeJSON([
                "from": ["image": a.image, "version": a.version],
                "to": ["image": b.image, "version": b.version],
                "added": diff.added.map { ["path": $0.path.description, "type": $0.kind.typeName] },
                "removed": diff.removed.map { ["path": $0.path.description, "type": $0.kind.typeName] },
                "changed": diff.changed.map { ["path": $0.path.description, "changes": $0.aspects.names] },
                "summary": summary,
            ])
            return
        }
        for e in diff.removed { Console.print("- \(e.path) (\(e.kind.typeName))") }
        for e in diff.added { Console.print("+ \(e.path) (\(e.kind.typeName))") }
        for c in diff.changed { Console.print("~ \(c.path) (\(c.aspects.names.joined(separator: ", ")))") }
        Console.print("\(a.image) \(a.version) → \(b.image) \(b.version): \(diff.added.count) added, "
            + "\(diff.removed.count) removed, \(diff.changed.count) changed (\(changedBy(.type)) type, "
            + "\(changedBy(.content)) content, \(changedBy(.metadata)) metadata); files +\(formatBytes(diff.addedFileBytes)) "
            + "-\(formatBytes(diff.removedFileBytes)); \(diff.newContents) new contents, "
            + "\(formatBytes(diff.newContentBlobBytes)) to download")
    }
}
