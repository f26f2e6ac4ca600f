/// Finds contents in local blob directories in repository layout (`DIR/<hh>/<hash>`).
enum BlobSource {
    /// The path of the blob for `hash` in the first directory that has it.
    static func find(_ hash: ContentHash, in directories: [String]) throws -> String? {
        for directory in directories {
            let path = BlobStore(directory: directory).path(for: hash)
            if (try Sys.lstatIfExists(path)) != nil { return path }
        }
        return nil
    }
}
