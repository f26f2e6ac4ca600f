import ArgumentParser
import Foundation
import Updatinator

/// `scripts/bench server`'s request maker (hidden): wrk cannot sign, so the signed checks it
/// sends are made beforehand, each with its own nonce, from many devices.
struct BenchRequestsCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-requests",
        abstract: "Writes signed checks for a benchmark, one a line: device, time, nonce, key, signature and body, tab-separated.",
        shouldDisplay: false)

    @Option(help: "How many requests.") var count = 100_000
    @Option(help: "How many devices send them, each with its own key.") var devices = 1000
    @Option(help: "The image and version the devices run.") var image = "olpc-ext3"
    @Option var version = "1"

    func execute() throws {
        guard count > 0, devices > 0 else { throw UpdError(.usage, "--count and --devices must be positive") }
        let signers = (0..<devices).map { RequestSigner(sender: "bench-\($0)", key: SecretKey.generate()) }
        let time = Int64(Date().timeIntervalSince1970)
        var out = ""
        out.reserveCapacity(count * 600)
        for n in 0..<count {
            let signer = signers[n % devices]
            let body = "{\"device\":\"\(signer.sender)\",\"nonce\":\"\(SchoolServerClient.newNonce())\",\"image\":\"\(image)\",\"version\":\"\(version)\"}"
            let values = signer.headers(method: "POST", path: "/v1/check", body: Array(body.utf8), time: time)
                .map { $0[$0.index($0.firstIndex(of: ":")!, offsetBy: 2)...] }
            out += values.joined(separator: "\t") + "\t" + body + "\n"
            if out.utf8.count > 1 << 20 {
                Console.write(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        Console.write(out)
    }
}
