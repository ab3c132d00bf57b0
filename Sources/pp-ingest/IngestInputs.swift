// Finding the inputs: the files and folders named on the command line or inbox/ (collect),
// refusing what is not a regular file, and taking an inbox file safely: opened first
// (O_NOFOLLOW | O_NONBLOCK), then checked on the descriptor, never while a writer has it open
// (take); a name that is not valid UTF-8 is quarantined (quarantineBadName).

import Foundation
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

extension Ingester {
    func collect(_ files: [String]) throws -> [Input] {
        let now = Clock.now()
        var out: [Input] = []
        if files.isEmpty {
            // Only names here: each file is opened and checked in process() (Inbox.open), so
            // what is checked is what is read.
            for raw in try Inbox.rawNames(root.inbox) {
                guard let name = String(validating: raw, as: UTF8.self) else {
                    try quarantineBadName(raw)
                    continue
                }
                let path = root.inbox + "/" + name
                out.append(Input(path: path, display: path, name: name, inInbox: true, time: now, scanned: true))
            }
            return out
        }
        let inboxReal = realPath(root.inbox)
        for arg in files {
            if arg == "-" {
                out.append(Input(path: "-", display: "stdin", name: "stdin", inInbox: false, time: now))
                continue
            }
            guard let lst = FileIO.lstatOrNil(arg) else {
                missing += 1
                emitProblem(arg, status: "error", "no such file")
                continue
            }
            let (dir, name) = FileIO.split(arg)
            let inInbox = inboxReal != nil && realPath(dir) == inboxReal
            var st = lst
            if (lst.st_mode & S_IFMT) == S_IFLNK {
                if inInbox {
                    refuse(arg, "symbolic link in inbox/ refused; left in place")
                    continue
                }
                guard stat(arg, &st) == 0 else {
                    missing += 1
                    emitProblem(arg, status: "error", "dangling symbolic link")
                    continue
                }
            }
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR { refuse(arg, "is a directory"); continue }
            if inInbox && type != S_IFREG { refuse(arg, "not a regular file; left in place"); continue }
            let mtime = type == S_IFREG ? Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9 : now
            out.append(Input(path: arg, display: arg, name: name, inInbox: inInbox, time: mtime))
        }
        return out
    }

    func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    func refuse(_ path: String, _ why: String) {
        refused += 1
        emitProblem(path, status: "refused", why)
    }

    /// Opens an inbox input and decides whether to take it now (Inbox.open: a regular file,
    /// no symlink followed, a FIFO never waited for): settled (scanned inputs) and held open
    /// for writing by no process (OpenFiles, like fuser). Returns the open descriptor and the
    /// input with the file's mtime, or nil when it is left (refused, gone, or for later).
    func take(_ input: Input) -> (fd: Int32, input: Input)? {
        switch Inbox.open(input.path) {
        case .gone:
            return nil
        case .refused(let why):
            refuse(input.display, why)
            return nil
        case .file(let fd, let st):
            var input = input
            input.time = Inbox.mtime(st)
            input.fileID = FileID(st)
            let now = Clock.now()
            if input.scanned && now - input.time < cfg.settle {
                close(fd)
                log.info("not settled yet, left for the next run",
                         metadata: ["file": "\(input.display)", "age_s": "\(Int(max(0, now - input.time)))", "settle_s": "\(cfg.settle)"])
                return nil
            }
            let writers = OpenFiles.holders(of: FileID(st), writing: true)
            if !writers.isEmpty {
                close(fd)
                log.notice("still open for writing, left for the next run (deliver by writing .NAME.tmp, then renaming it to NAME)",
                           metadata: ["file": "\(input.display)", "writers": "\(writers.map(\.description).joined(separator: ","))"])
                return nil
            }
            return (fd, input)
        }
    }

    /// An inbox name that is not valid UTF-8 cannot be named in shards, reasons and records:
    /// the file moves to quarantine/ under a readable name (Inbox.safeName, bytes as %HH)
    /// with NAME.reason.json giving the original bytes in hex. Anything but a regular file is
    /// refused and left, like other non-regular entries.
    func quarantineBadName(_ raw: [UInt8]) throws {
        let shown = root.inbox + "/" + LogText.escape(bytes: raw)
        guard let st = Inbox.lstatRaw(raw, in: root.inbox) else { return }   // gone meanwhile
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            refuse(shown, "file name is not valid UTF-8, and not a regular file; left in place")
            return
        }
        let reason = "file name is not valid UTF-8"
        quarantined += 1
        var movedTo: String? = nil
        if !cfg.dryRun {
            let q = freeName(root.quarantine, Inbox.safeName(raw))
            var j = JSONOut()
            j.add("schema", 1)
            j.add("file", q)
            j.add("status", "quarantined")
            j.add("check", "file_name")
            j.add("reason", reason + "; renamed to \(q) (the original name's bytes are in name_hex)")
            j.add("name_hex", raw.map { b -> String in let h = String(b, radix: 16); return h.count < 2 ? "0" + h : h }.joined())
            j.add("bytes", Int(st.st_size))
            j.add("quarantined_at", Clock.iso(Clock.now()))
            j.add("release", "rename it to a UTF-8 name in inbox/ (mv quarantine/\(q) inbox/NEWNAME)")
            try FileIO.publish(j.closed + "\n", to: root.quarantine + "/" + q + ".reason.json")
            try Inbox.moveRaw(raw, in: root.inbox, to: root.quarantine + "/" + q)
            movedTo = root.quarantine + "/" + q
        }
        log.error("\(shown): quarantined: \(reason)", metadata: ["moved_to": "\(movedTo ?? "-")"])
        var j = JSONOut()
        j.add("file", shown)
        j.add("status", "quarantined")
        j.add("reason", reason)
        j.add("moved_to", movedTo)
        if cfg.dryRun { j.add("dry_run", raw: "true") }
        j.emit()
        counters.inputs["quarantined", default: 0] += 1
        runStatuses["quarantined", default: 0] += 1
    }
}
