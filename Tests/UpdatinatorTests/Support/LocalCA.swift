import Foundation
@testable import Updatinator

/// A certificate authority made for one test with `openssl`, which no system store trusts, and
/// the server certificates it issues.
final class LocalCA {
    private let directory = TemporaryDirectory("ca")
    /// The CA's certificate (PEM): what `--ca-file` names.
    let certificate: String
    private let key: String

    init() throws {
        certificate = directory.sub("ca.pem")
        key = directory.sub("ca.key")
        try Shell.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=Updatinator test CA"])
    }

    /// A server certificate (PEM) and its key (mode 0600) for `names` (`IP:127.0.0.1`,
    /// `DNS:localhost`); `expired` makes one whose validity ended a day ago.
    func issue(_ label: String, names: [String] = ["IP:127.0.0.1"], expired: Bool = false) throws -> (certificate: String, key: String) {
        let (cert, serverKey, request, extensions) = (directory.sub("\(label).pem"), directory.sub("\(label).key"),
                                                      directory.sub("\(label).csr"), directory.sub("\(label).ext"))
        try Shell.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", serverKey,
                       "-out", request, "-subj", "/CN=\(label)"])
        try Sys.writeFileAtomically(extensions, Array("subjectAltName=\(names.joined(separator: ","))\n".utf8))
        // A negative validity ends before it starts: the certificate is expired from the moment it is made.
        try Shell.run(["openssl", "x509", "-req", "-in", request, "-CA", certificate, "-CAkey", key, "-CAcreateserial",
                       "-out", cert, "-days", expired ? "-1" : "2", "-extfile", extensions])
        try Shell.run(["chmod", "600", serverKey])
        return (cert, serverKey)
    }
}
