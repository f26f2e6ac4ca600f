import Foundation
import Glibc
import Testing
@testable import Updatinator

/// What a distribution ships around the binary: journal priorities, the man page, completions
/// and the install step.
@Suite struct PackagingTests {
    let tmp = TemporaryDirectory("packaging")

    /// Runs the CLI through `sh`, with JOURNAL_STREAM set to the device and inode of its own
    /// standard error (as systemd does) when `journal`, or to another file's when not.
    func runLogging(_ arguments: [String], journal: Bool) throws -> CLI.Result {
        let other = tmp.sub("elsewhere")
        try Sys.writeFileAtomically(other, [])
        let stream = journal ? "$(stat -L -c %d:%i /proc/self/fd/2)" : "$(stat -L -c %d:%i \(other))"
        let child = try Subprocess(["sh", "-c", "JOURNAL_STREAM=\(stream) exec \"$0\" \"$@\"", CLI.binary] + arguments)
        return CLI.Result(status: child.wait(), stdout: child.stdout, stderr: child.stderr)
    }

    @Test func linesOnTheJournalCarryTheirPriority() throws {
        let script = tmp.sub("log.lua")
        try Sys.writeFileAtomically(script, Array("""
            upd.log.info("starting")
            upd.log.warn("careful")
            print("to stdout")
            error("boom")
            """.utf8))
        let r = try runLogging(["run", script], journal: true)
        #expect(r.status == 1 && r.stdout == "to stdout\n", "\(r.stdout)\(r.stderr)")
        let lines = r.stderr.split(separator: "\n").map(String.init)
        try #require(lines.count > 3, "\(r.stderr)")
        #expect(lines[0] == "<6>[info] starting" && lines[1] == "<4>[warn] careful", "\(r.stderr)")
        #expect(lines[2] == "<3>updatinator: \(script):4: boom", "\(r.stderr)")
        #expect(lines.dropFirst(3).allSatisfy { $0.hasPrefix("<3>") }, "the traceback is an error too: \(r.stderr)")

        let failed = try runLogging(["verify", tmp.sub("missing.manifest"), "--keyring", tmp.sub("none")], journal: true)
        #expect(failed.status != 0 && failed.stderr.hasPrefix("<3>updatinator: ") && failed.stderr.filter { $0 == "\n" }.count == 1,
                "\(failed.stderr)")
    }

    @Test func theServersLogLinesOnTheJournalCarryTheirPriority() throws {
        let policy = tmp.sub("broken.lua")
        try Sys.writeFileAtomically(policy, Array("function decide(device) error('broken on purpose') end\n".utf8))
        try Sys.mkdirs(tmp.sub("keyring"))
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("decision.sec"), publicPath: tmp.sub("keyring/decision.pub"))
        let server = try Subprocess(["sh", "-c", "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$0\" \"$@\"", CLI.binary,
                                     "serve", "--listen", "127.0.0.1:0", "--repo", try SampleImages.shared.repo, "--policy", policy,
                                     "--decision-key", tmp.sub("decision.sec"), "--db", tmp.sub("fleet.sqlite"), "--admission", "auto"])
        defer { server.stop() }
        try #require(server.waitForOutput("listening on "), "\(server.stderr)")
        let url = String(server.stdout.split(separator: " ").last!).trimmingCharacters(in: .whitespacesAndNewlines)
        let body = Array(try JSONSerialization.data(withJSONObject: ["device": "d1", "nonce": SchoolServerClient.newNonce()]))
        _ = try TestDevices.signer("d1").post("/v1/check", to: url, body: body, via: CurlFetcher(options: FetchOptions(mirrors: [url])))
        try waitUntil(timeout: 30, "the policy error is logged: \(server.stderr)") { server.stderr.contains("broken on purpose") }
        let line = try #require(server.stderr.split(separator: "\n").first { $0.contains("broken on purpose") })
        #expect(line.hasPrefix("<3>updatinator.serve: policy error"), "\(server.stderr)")
    }

    @Test func linesElsewhereHaveNoPriority() throws {
        let script = tmp.sub("log.lua")
        try Sys.writeFileAtomically(script, Array("upd.log.warn(\"careful\")\n".utf8))
        let r = try runLogging(["run", script], journal: false)
        #expect(r.status == 0 && r.stderr == "[warn] careful\n", "\(r.stderr)")
    }

    static func shipped(_ path: String) throws -> String {
        try String(contentsOfFile: Scripts.repositoryRoot.appendingPathComponent(path).path, encoding: .utf8)
    }

    /// Each subcommand of the man page, with the arguments its list names (`--keyring`, `-h`,
    /// `<file>`) and the line after its name (its abstract).
    static func manPageCommands() throws -> [String: (arguments: Set<String>, abstract: String)] {
        let lines = try shipped("contrib/man/updatinator.1").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var commands = [String: (arguments: Set<String>, abstract: String)]()
        var current: String?
        for (index, line) in lines.enumerated() {
            let words = line.split(separator: " ").map(String.init)
            if words.starts(with: [".It", "Em"]), words.count == 3 {
                current = words[2]
                commands[words[2]] = ([], index + 1 < lines.count ? lines[index + 1] : "")
            } else if line == ".El", let name = current, commands[name] != nil, !commands[name]!.arguments.isEmpty {
                current = nil
            } else if let name = current, words.first == ".It" {
                // A repeated argument is "Ar arguments...".
                if words.dropFirst().first == "Ar" { commands[name]!.arguments.insert("<\(words[2].replacingOccurrences(of: "...", with: ""))>") }
                guard words.dropFirst().first == "Fl" else { continue }
                for word in words.dropFirst(2).prefix(while: { $0 != "Ar" }) where word != "," {
                    commands[name]!.arguments.insert("-" + word)
                }
            }
        }
        return commands
    }

    @Test func theManPageDescribesEveryCommandAndOptionAsTheHelpDoes() throws {
        let page = try Self.manPageCommands()
        let commands = try CommandDescription.allNested()
        // The page also lists policy-worker, which serve starts and the help hides.
        #expect(Set(page.keys).subtracting(["help", "policy-worker"]) == Set(commands.map(\.name)),
                "the page lists the commands the binary has; run scripts/help-pages")
        for command in commands {
            let described = try #require(page[command.name], "\(command.name) is in the page; run scripts/help-pages")
            #expect(described.abstract == command.abstract, "\(command.name)'s abstract; run scripts/help-pages")
            let help = Set(command.arguments.map(\.name))
            #expect(help.subtracting(described.arguments).isEmpty,
                    "\(command.name): \(help.subtracting(described.arguments)) missing from the page; run scripts/help-pages")
            let stale = described.arguments.filter { $0.hasPrefix("--") && !help.contains($0) }
            #expect(stale.isEmpty, "\(command.name): \(stale) in the page but not in the help; run scripts/help-pages")
        }
    }

    @Test(arguments: [("bash", "updatinator.bash"), ("zsh", "_updatinator"), ("fish", "updatinator.fish")])
    func theShippedCompletionsAreWhatTheBinaryGenerates(shell: String, file: String) throws {
        let r = try CLI.run(["--generate-completion-script", shell])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("get-manifest") && r.stdout.contains("decision-keyring"), "\(r.stdout.prefix(200))")
        #expect(try Self.shipped("contrib/completions/\(file)") == r.stdout, "contrib/completions/\(file) is stale; run scripts/help-pages")
    }

    // MARK: Installing

    /// scripts/install into a scratch DESTDIR, with the binary just built.
    func install(_ destdir: String, prefix: String = "/usr/local") throws -> String {
        try Shell.run([Scripts.path("install"), "--prefix", prefix, "--destdir", destdir, "--binary", CLI.binary])
    }

    /// The ExecStart lines of the installed units and drop-ins, as words.
    static func execStarts(_ files: [String]) throws -> [(file: String, words: [String])] {
        try files.flatMap { file in
            try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
                .filter { $0.hasPrefix("ExecStart=") && $0 != "ExecStart=" }
                .map { (file, $0.dropFirst("ExecStart=".count).split(separator: " ").map(String.init)) }
        }
    }

    @Test(arguments: ["/usr/local", "/usr"])
    func theInstalledUnitsNameWhatIsInstalled(prefix: String) throws {
        let destdir = tmp.sub("root")
        try install(destdir, prefix: prefix)
        let units = destdir + prefix + "/lib/systemd/system"
        let names = try FileManager.default.contentsOfDirectory(atPath: units).sorted()
        let shipped = try FileManager.default.contentsOfDirectory(atPath: Scripts.repositoryRoot.appendingPathComponent("contrib/systemd").path)
            .filter { $0.hasSuffix(".service") || $0.hasSuffix(".timer") }.sorted()
        #expect(names == shipped && names.count == 5, "\(names)")
        let dropins = ["updatinator-agent.service.d/in-place.conf", "updatinator-peer.service.d/in-place.conf"]
            .map { destdir + prefix + "/share/updatinator/systemd/" + $0 }
        let commands = try Self.execStarts(names.map { units + "/" + $0 } + dropins)
        #expect(commands.count == 5, "\(commands)")
        for (file, words) in commands {
            #expect(words[0] == prefix + "/bin/updatinator", "\(file): \(words)")
            // Every file the command names under /etc or /usr is installed.
            for path in words where path.hasPrefix("/etc/") || path.hasPrefix("/usr/") {
                #expect(FileManager.default.fileExists(atPath: destdir + path), "\(file) names \(path), which is not installed")
            }
        }
        // What serve reads by default (the server unit names only its settings) is there too.
        #expect(FileManager.default.fileExists(atPath: destdir + DefaultPaths.serverPolicy))
        // The hook copies the boot counter from where it was installed.
        let hook = try String(contentsOfFile: destdir + "/etc/initramfs-tools/hooks/updatinator", encoding: .utf8)
        let counter = "\(prefix)/share/updatinator/updatinator-boot"
        #expect(hook.contains("copy_file script \(counter) ") && FileManager.default.isExecutableFile(atPath: destdir + counter), "\(hook)")
        #expect(FileManager.default.isExecutableFile(atPath: destdir + "/etc/initramfs-tools/scripts/local-bottom/updatinator"))
        for (path, shipped) in [("/share/man/man1/updatinator.1", "contrib/man/updatinator.1"),
                                ("/share/bash-completion/completions/updatinator", "contrib/completions/updatinator.bash"),
                                ("/share/fish/vendor_completions.d/updatinator.fish", "contrib/completions/updatinator.fish"),
                                ("/share/updatinator/policies/server/staged-rollout.lua", "policies/server/staged-rollout.lua"),
                                ("/share/updatinator/policies/client/default.lua", "policies/client/default.lua")] {
            #expect(try String(contentsOfFile: destdir + prefix + path, encoding: .utf8) == Self.shipped(shipped), "\(path)")
        }
        let zsh = prefix == "/usr" ? "/usr/share/zsh/vendor-completions/_updatinator" : prefix + "/share/zsh/site-functions/_updatinator"
        #expect(try String(contentsOfFile: destdir + zsh, encoding: .utf8) == Self.shipped("contrib/completions/_updatinator"))
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/systemd-analyze")))
    func theInstalledUnitsVerify() throws {
        let destdir = tmp.sub("root")
        try install(destdir)
        let units = destdir + "/usr/local/lib/systemd/system"
        let checked = tmp.sub("checked")
        try Sys.mkdirs(checked)
        var files = [String]()
        // Verified in place of the machine they are for: the binary they name, inside DESTDIR.
        for name in try FileManager.default.contentsOfDirectory(atPath: units).sorted() {
            let text = try String(contentsOfFile: units + "/" + name, encoding: .utf8)
            try Sys.writeFileAtomically(checked + "/" + name, Array(text.replacingOccurrences(of: "=/usr/local/bin/", with: "=\(destdir)/usr/local/bin/").utf8))
            files.append(checked + "/" + name)
        }
        let r = try Subprocess(["systemd-analyze", "verify", "--man=no"] + files)
        #expect(r.wait() == 0 && r.stderr.isEmpty, "\(r.stderr)")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/systemd-sysusers")))
    func theServersUserAndRepositoryAreCreatedForIt() throws {
        let destdir = tmp.sub("root")
        try install(destdir)
        try Shell.run(["systemd-sysusers", "--root=\(destdir)"])
        let passwd = try String(contentsOfFile: destdir + "/etc/passwd", encoding: .utf8)
        let user = try #require(passwd.split(separator: "\n").first { $0.hasPrefix("updatinator:") }, "\(passwd)")
        let fields = user.split(separator: ":", omittingEmptySubsequences: false)
        #expect(fields[5] == "/var/lib/updatinator" && fields[6].hasSuffix("nologin"), "\(user)")
        let unit = try String(contentsOfFile: destdir + "/usr/local/lib/systemd/system/updatinator-server.service", encoding: .utf8)
        #expect(unit.contains("\nUser=updatinator\n"), "the server runs as the user sysusers.d creates")

        try Shell.run(["systemd-tmpfiles", "--root=\(destdir)", "--create"])
        let repo = try #require(try Sys.lstatIfExists(destdir + "/var/lib/updatinator/repo"))
        #expect(repo.st_uid == UInt32(fields[2])! && repo.st_mode & S_IFMT == S_IFDIR, "the repository is the server's")
    }

    @Test func theDefaultServerConfigurationServesAndIsNeverOverwritten() throws {
        let destdir = tmp.sub("root")
        try install(destdir)
        let policy = destdir + DefaultPaths.serverPolicy
        let settings = destdir + "/etc/updatinator/server-policy.json"
        // The installed policy accepts the installed settings: a check gets a decision, not a policy error.
        try Sys.mkdirs(tmp.sub("keyring"))
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("decision.sec"), publicPath: tmp.sub("keyring/decision.pub"))
        let server = try ServeProcess(["--repo", try SampleImages.shared.repo, "--policy", policy, "--config", settings,
                                       "--decision-key", tmp.sub("decision.sec"), "--db", tmp.sub("fleet.sqlite")])
        let answer = try server.post("/v1/check", ["device": "d1", "nonce": SchoolServerClient.newNonce()])
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        #expect(try server.metric("updatinator_policy_errors_total") == 0 && server.metric("updatinator_decisions_total", ["outcome=\"up-to-date\""]) == 1)

        try Sys.writeFileAtomically(settings, Array(#"{"image": "olpc-ext3"}"#.utf8))
        let again = try install(destdir)
        #expect(try String(contentsOfFile: settings, encoding: .utf8) == #"{"image": "olpc-ext3"}"#, "the administrator's settings stay")
        #expect(again.contains("kept \(settings)"), "\(again)")
    }
}
