import Testing
@testable import Updatinator

/// Expects `body` to fail with an `UpdError` of `code` whose message contains `text`: a
/// refusal for another reason (a missing file instead of a bad signature) does not pass.
func expectUpdError<T>(_ code: UpdError.Code, _ text: String, _ comment: Comment? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T) {
    let context = comment.map { "\($0): " } ?? ""
    do {
        _ = try body()
        Issue.record("\(context)accepted; expected \(code): \(text)", sourceLocation: sourceLocation)
    } catch let e as UpdError {
        #expect(e.code == code, "\(context)\(e.code): \(e.message)", sourceLocation: sourceLocation)
        #expect(e.message.contains(text), "\(context)\(e.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(context)not an UpdError: \(error)", sourceLocation: sourceLocation)
    }
}

/// Standard error without the progress lines a command writes when it is not a terminal
/// (`hashing: …`, `applying: …`, `waiting for the server to prepare a batch …`): the errors
/// and warnings a test reads.
func withoutProgress(_ stderr: String) -> String {
    let progress = ["hashing: ", "downloading: ", "applying: ", "deploying: ", "upgrading: ", "waiting for the server to prepare a batch "]
    return stderr.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { line in !progress.contains { line.hasPrefix($0) } }.joined(separator: "\n")
}
