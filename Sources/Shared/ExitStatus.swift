// Exit codes shared by every Perpetuum tool, documented under EXIT STATUS in each man page
// and in docs/contract.md. systemd units list the "success" ones in SuccessExitStatus=.

import ArgumentParser

public enum ExitStatus: Int32, Sendable {
    /// Everything asked for was done.
    case ok = 0
    /// Done, but some items failed (e.g. an input was rejected); details on stderr.
    case partial = 1
    /// Nothing to do (empty inbox, no pending checkpoint): a success for timers.
    case nothingToDo = 2
    /// A file the tool must read is corrupt or of a wrong version (checkpoint, shard).
    case corrupt = 65        // EX_DATAERR
    /// The command line is wrong.
    case usage = 64          // EX_USAGE
    /// An input file could not be opened or does not exist.
    case noInput = 66        // EX_NOINPUT
    /// A feature of this tool is not built yet.
    case unavailable = 69    // EX_UNAVAILABLE
    /// Internal error or unexpected state.
    case software = 70       // EX_SOFTWARE
    /// Reading or writing the state folder failed (disk full, permissions).
    case ioError = 74        // EX_IOERR
    /// Another instance holds the lock and --no-wait was given.
    case locked = 75         // EX_TEMPFAIL
}

/// Runs a command's body and returns what it returns; a PPError it throws is printed as the
/// tool's one-line message on stderr (`pp-tool: path: reason`, Log.fail) and becomes the exit
/// status `status(e)`, by default the error's own. The one place a command turns an expected
/// failure into its exit code; other errors pass through to ArgumentParser.
public func exitingOnFailure<T>(_ tool: String, status: (PPError) -> ExitStatus = { $0.status }, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as PPError {
        Log.fail(tool, e.message)
        throw ExitCode(status(e).rawValue)
    }
}
