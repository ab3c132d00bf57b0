// One error type for expected failures, printed as a single line: `pp-tool: path: reason`.

public struct PPError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let status: ExitStatus

    public init(_ message: String, status: ExitStatus = .software) {
        self.message = message
        self.status = status
    }

    public var description: String { message }

    public static func io(_ path: String, _ what: String, errno e: Int32) -> PPError {
        PPError("\(path): \(what): \(String(cString: strerror(e)))", status: .ioError)
    }

    public static func corrupt(_ path: String, _ reason: String) -> PPError {
        PPError("\(path): \(reason)", status: .corrupt)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
