import Foundation
import Glibc
import Testing

/// Polls `condition` every 10 ms until it holds or `timeout` seconds pass; whether it held.
///
/// The one polling loop of the tests: every wait has a deadline, so a feature that never
/// reaches its state fails its test instead of hanging the run.
func eventually(within timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// Waits until `condition` holds; past `timeout` seconds it fails the test, saying what it
/// waited for, and throws so the test stops there.
func waitUntil(timeout: Double = 60, _ what: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation,
               _ condition: () throws -> Bool) throws {
    let held = try eventually(within: timeout, condition)
    try #require(held, "timed out after \(timeout) s waiting until \(what())", sourceLocation: sourceLocation)
}
