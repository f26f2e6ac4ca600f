import Foundation
import Updatinator

/// Writes signed checks for `scripts/bench server`, one a line: device, time, nonce, key,
/// signature and body, tab-separated. wrk cannot sign, so the checks it sends are made
/// beforehand, each with its own nonce, from many devices (each with its own key).
///
/// `request-bench COUNT DEVICES` (the devices run olpc-ext3 1).
@main
enum RequestBench {
    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        guard arguments.count == 2, arguments.allSatisfy({ $0 > 0 }) else {
            FileHandle.standardError.write(Data("usage: request-bench COUNT DEVICES\n".utf8))
            exit(64)
        }
        let (count, devices) = (arguments[0], arguments[1])
        let signers = (0..<devices).map { RequestSigner(sender: "bench-\($0)", key: SecretKey.generate()) }
        let time = Int64(Date().timeIntervalSince1970)
        var out = ""
        for n in 0..<count {
            let signer = signers[n % devices]
            let body = #"{"device":"\#(signer.sender)","nonce":"\#(SchoolServerClient.newNonce())","image":"olpc-ext3","version":"1"}"#
            let values = signer.headers(method: "POST", path: "/v1/check", body: Array(body.utf8), time: time)
                .map { $0[$0.index($0.firstIndex(of: ":")!, offsetBy: 2)...] }
            out += values.joined(separator: "\t") + "\t" + body + "\n"
            if out.utf8.count > 1 << 20 || n == count - 1 {
                FileHandle.standardOutput.write(Data(out.utf8))
                out.removeAll(keepingCapacity: true)
            }
        }
    }
}
