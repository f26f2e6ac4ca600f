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
