// Signal handling for the trainer: SIGTERM/SIGINT ask for a final checkpoint and exit 0,
// SIGHUP asks for an immediate re-read of control.json and re-scan of shards/.
//
// Any thread may receive a process-directed signal (OpenBLAS and the trainer's workers start
// their own threads, with whatever signal mask they like), so blocking signals and calling
// sigwait(2) on one thread is not reliable here. Instead the handler (sigaction(2), SA_RESTART)
// does the one async-signal-safe thing needed: it writes the signal number to a pipe (the
// self-pipe trick). A dedicated thread reads the pipe and records the request under a lock,
// and wakes the training loop if it is idle. The loop polls the flags between batches.
// This file does not decide what a signal means for training; TrainLoop does.

import Foundation
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

/// Write end of the self-pipe; set once before the handlers are installed, then only read.
private var signalPipeWrite: Int32 = -1

final class Signals {
    private let cond = NSCondition()
    private var stopSignal: Int32?
    private var hangup = false
    private var wakeups = 0

    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP and starts the reader thread.
    /// SIGPIPE is ignored so that a closed stdout gives EPIPE instead of killing the trainer.
    init() throws {
        var fds: [Int32] = [0, 0]
        if pipe(&fds) != 0 { throw PPError.io("signal pipe", "pipe", errno: errno) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        signalPipeWrite = fds[1]
        let readEnd = fds[0]
        signal(SIGPIPE, SIG_IGN)
        for s in [SIGTERM, SIGINT, SIGHUP] {
            var sa = sigaction()
            sa.__sigaction_handler.sa_handler = { sig in
                var b = UInt8(truncatingIfNeeded: sig)
                let saved = errno
                _ = write(signalPipeWrite, &b, 1)  // async-signal-safe; a full pipe drops it
                errno = saved
            }
            sigemptyset(&sa.sa_mask)
            sa.sa_flags = SA_RESTART
            if sigaction(s, &sa, nil) != 0 { throw PPError.io("signal \(s)", "sigaction", errno: errno) }
        }
        // The thread keeps the object alive for the life of the process (handlers stay installed).
        let t = Thread { self.readLoop(readEnd) }
        t.name = "pp-train signals"
        t.start()
    }

    private func readLoop(_ fd: Int32) {
        var b: UInt8 = 0
        while true {
            let n = read(fd, &b, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            cond.lock()
            let sig = Int32(b)
            if sig == SIGHUP { hangup = true } else if stopSignal == nil { stopSignal = sig }
            wakeups += 1
            cond.broadcast()
            cond.unlock()
        }
    }

    /// The first SIGTERM/SIGINT received, if any.
    var stopRequested: Int32? {
        cond.lock(); defer { cond.unlock() }
        return stopSignal
    }

    /// True once per SIGHUP received since the last call.
    func takeHangup() -> Bool {
        cond.lock(); defer { cond.unlock() }
        let h = hangup
        hangup = false
        return h
    }

    /// Sleeps up to `seconds`, returning early when a signal arrives (no busy loop).
    func sleep(_ seconds: Double) {
        cond.lock(); defer { cond.unlock() }
        let before = wakeups
        let deadline = Date(timeIntervalSinceNow: max(0, seconds))
        while wakeups == before && stopSignal == nil {
            if !cond.wait(until: deadline) { break }
        }
    }

    static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(sig)"
        }
    }
}
