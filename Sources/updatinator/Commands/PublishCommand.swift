import ArgumentParser
import Foundation
import Updatinator

struct PublishCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Points a channel at an image version with signed, expiring metadata.",
        discussion: """
            Writes REPO/channels/NAME.json and its signature: the image, the version, the hash of \
            its manifest, a serial one higher than the channel's previous one, the time of publication \
            and an expiry. \
            Clients refuse channel metadata that is expired or older than what they accepted before.
            """)

    @Option(help: "The repository.")
    var repo: String

    @Option(help: "The channel name, e.g. stable.")
    var channel: String

    @Option(help: "The image name.")
    var image: String

    @Option(help: "The image version; its manifest must exist in the repository.")
    var version: String

    @Option(help: "How long the metadata stays valid, e.g. 7d, 12h, 90m; at most 366d.")
    var expires: String

    @Option(help: "The secret key that signs the channel metadata.")
    var secretKey: String

    func execute() throws {
        let seconds = try ChannelMetadata.parseDuration(expires)
        let key = try KeyFile.readSecret(secretKey)
        let repository = try Repository(opening: repo)
        let m = try ChannelMetadata.publish(repository: repository, channel: channel, image: image, version: version,
                                            validFor: seconds, key: key, now: Int64(Date().timeIntervalSince1970))
        let expiry = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(m.expires)))
        Console.print("channel \(m.channel) → \(m.image) \(m.version), serial \(m.serial), expires \(expiry)")
    }
}
