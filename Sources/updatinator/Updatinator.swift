import ArgumentParser
import Updatinator

@main
struct UpdatinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "updatinator",
        abstract: "Moves machines between whole OS images, safely and cheaply.",
        discussion: """
            A build server turns image trees into signed manifests and content-addressed blobs \
            with 'generate', 'sign' and 'publish'. Exit codes are the same for every command \
            and are listed in docs/cli.md.
            """,
        version: UpdatinatorVersion.current,
        subcommands: [
            KeygenCommand.self, GenerateCommand.self, SignCommand.self, VerifyCommand.self,
            DiffCommand.self, FsckCommand.self, PublishCommand.self, DeltaCommand.self, PackCommand.self, PlanCommand.self, ApplyCommand.self, GetManifestCommand.self, FetchCommand.self,
            RunCommand.self, ReplCommand.self, AgentCommand.self, ServeCommand.self, UpgradeCommand.self,
            DeployCommand.self, RollbackCommand.self, StatusCommand.self, GCCommand.self, MarkGoodCommand.self,
        ])

}
