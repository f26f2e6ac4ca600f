import Glibc

/// Lists extended attribute names through one of the `listxattr` calls.
enum XattrNames {
    /// Calls `list` (buffer, size → length, as `llistxattr`/`flistxattr` do) first for the size, then
    /// for the names. A filesystem without extended attributes has none; `call` and `display`
    /// name the call and the path in errors.
    static func read(call: String, display: String, _ list: (UnsafeMutablePointer<CChar>?, Int) -> Int) throws -> [[UInt8]] {
        while true {
            let size = list(nil, 0)
            if size < 0 {
                if errno == ENOTSUP || errno == ENODATA { return [] }
                throw UpdError.system(call, display)
            }
            if size == 0 { return [] }
            var names = [UInt8](repeating: 0, count: size)
            let got = names.withUnsafeMutableBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { list($0.baseAddress, size) }
            }
            if got < 0 {
                if errno == ERANGE { continue }  // the list grew between the two calls
                throw UpdError.system(call, display)
            }
            return names[0..<got].split(separator: 0).map(Array.init)
        }
    }
}
