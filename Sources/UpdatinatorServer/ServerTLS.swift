import Foundation
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Updatinator

/// The certificate chain and private key a server speaks HTTPS with (`serve --tls-cert --tls-key`).
public struct ServerTLS: Sendable {
    let configuration: TLSConfiguration

    /// Reads a PEM certificate chain (the server's certificate first) and its PEM private key.
    /// A key file that others may read is refused (`permission`), as it would be a key anyone
    /// on the machine could impersonate the server with.
    public init(certificateFile: String, keyFile: String) throws {
        var info = stat()
        guard stat(keyFile, &info) == 0 else { throw UpdError(.usage, "TLS key \(keyFile): \(String(cString: strerror(errno)))") }
        guard info.st_mode & 0o077 == 0 else {
            throw UpdError(.permission, "TLS key \(keyFile): the key file may be read by others; chmod 600 it")
        }
        guard access(certificateFile, R_OK) == 0 else {
            throw UpdError(.usage, "TLS certificate \(certificateFile): \(String(cString: strerror(errno)))")
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw UpdError(.corrupt, "TLS certificate \(certificateFile): not a PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw UpdError(.corrupt, "TLS certificate \(certificateFile): no certificate in it") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw UpdError(.corrupt, "TLS key \(keyFile): not a PEM private key (\(error))")
        }
        configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    /// The HTTP/1.1 server over TLS with this certificate.
    func server() throws -> HTTPServerBuilder {
        try .tls(.http1(), tlsConfiguration: configuration)
    }
}
