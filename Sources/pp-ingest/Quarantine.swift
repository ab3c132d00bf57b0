// `pp-ingest quarantine SHARD... --reason TEXT` and `pp-ingest release NAME`: the undo side
// of the batch checks (ISSUE7-PLAN interface 2; docs/formats.md, "Quarantine").
//
// A shard name N is quarantined iff quarantine/N.reason.json exists (pp-select and pp-train
// rely on that alone). So quarantining publishes the reason file FIRST, then moves the files;
// releasing moves the files back FIRST, then publishes N.released.json and removes the reason
// file last. A crash anywhere leaves the shard quarantined (the safe side), and running the
// same command again completes it.
//
// What moves with a shard: the holdout parts of the same input (holdout/<stamp>-<sha16>-*.pps,
// to quarantine/holdout/, since the holdout is scored and a bad batch spoils scores too) and
// the input's stats sidecars (stats/<stamp>-<sha16>.*, to quarantine/stats/, so the batch
// leaves the reference of later inputs). Other train parts of the same input stay unless
// named (a notice lists them).
//
// Releasing an input that was quarantined at ingest (quarantine/NAME, not a shard) ingests it
// with the checks and --max-bad not gating (a person looked), then archives it.

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif


struct ShardQuarantine {
    let root: Root
    let log = Log.make(Ingester.tool)

    var qHoldout: String { root.quarantine + "/holdout" }
    var qStats: String { root.quarantine + "/stats" }

    /// `<stamp>-<sha16>` of a shard name, or nil when it is not one.
    static func prefix(_ name: String) -> String? { ShardName(name)?.input }

    private func lock(noWait: Bool) throws -> FileLock {
        try root.ensureLayout()
        return try FileLock(path: root.lock("ingest"), wait: !noWait)
    }

    // MARK: - quarantine

    func quarantine(_ args: [String], reason: String, by: String, noWait: Bool) throws -> Int32 {
        let l = try lock(noWait: noWait)
        defer { l.release() }
        try FileIO.makeDirectories(qHoldout)
        try FileIO.makeDirectories(qStats)
        var status: Int32 = 0
        for arg in args {
            let name = FileIO.split(arg).name
            guard let prefix = ShardQuarantine.prefix(name) else {
                Log.fail(Ingester.tool, "\(arg): not a shard name (<stamp>-<sha16>-<part>.pps)")
                status = ExitStatus.usage.rawValue
                continue
            }
            let src = root.shards + "/" + name, dst = root.quarantine + "/" + name
            let reasonPath = dst + ".reason.json"
            let inShards = FileIO.exists(src), inQuarantine = FileIO.exists(dst)
            if !inShards && !inQuarantine {
                Log.fail(Ingester.tool, "\(root.shards)/\(name): no such shard")
                status = status == 0 ? ExitStatus.noInput.rawValue : status
                continue
            }
            let at = Clock.iso(Clock.now())
            if !FileIO.exists(reasonPath) {
                var j = JSONOut()
                j.add("schema", 1)
                j.add("shard", name)
                j.add("status", "quarantined")
                j.add("check", "manual")
                j.add("reason", reason)
                j.add("by", by)
                j.add("at", at)
                j.add("release", "pp-ingest release \(name)")
                try FileIO.publish(j.closed + "\n", to: reasonPath)
            }
            if inShards { try FileIO.moveDurably(src, dst) }
            let moved = try takeOutCompanions(of: prefix)
            let siblings = try FileIO.list(root.shards).filter { ShardName($0)?.input == prefix }
            if !siblings.isEmpty {
                log.notice("\(name): other parts of the same input stay in shards/ (name them to quarantine them too)",
                           metadata: ["parts": "\(siblings.joined(separator: ","))"])
            }
            log.notice("\(name): quarantined", metadata: ["by": "\(by)", "reason": "\(reason)", "holdout_moved": "\(moved.count)"])
            var j = JSONOut()
            j.add("shard", name)
            j.add("status", inShards ? "quarantined" : "already_quarantined")
            j.add("moved_to", dst)
            j.add("holdout_moved", moved)
            j.add("reason_file", reasonPath)
            j.add("by", by)
            j.add("at", at)
            j.emit()
        }
        return status
    }

    /// Moves the holdout parts and the stats sidecars of input `prefix` (`<stamp>-<sha16>`)
    /// into quarantine/ beside its shard. Returns the holdout parts moved ("holdout/NAME").
    private func takeOutCompanions(of prefix: String) throws -> [String] {
        var moved: [String] = []
        for h in try FileIO.list(root.holdout) where ShardName(h)?.input == prefix {
            try FileIO.moveDurably(root.holdout + "/" + h, qHoldout + "/" + h)
            moved.append("holdout/" + h)
        }
        for ext in [".json", ".hashes"] where FileIO.exists(Reference.dir(root) + "/" + prefix + ext) {
            try FileIO.moveDurably(Reference.dir(root) + "/" + prefix + ext, qStats + "/" + prefix + ext)
        }
        return moved
    }

    // MARK: - release

    /// Releases a quarantined shard or input: the shard goes back to shards/ (its holdout
    /// parts and sidecars with the last of its input's parts), an input is ingested without
    /// the batch checks. The reason file becomes NAME.released.json (who, when, what went
    /// back, the original reason). Returns the exit status.
    func release(_ arg: String, by: String, options: Ingester.Config) throws -> Int32 {
        let name = FileIO.split(arg).name
        let reasonPath = root.quarantine + "/" + name + ".reason.json"
        let releasedPath = root.quarantine + "/" + name + ".released.json"
        guard FileIO.exists(reasonPath) else {
            if FileIO.exists(releasedPath) {
                log.notice("\(name): already released", metadata: ["record": "\(releasedPath)"])
                var j = JSONOut(); j.add("name", name); j.add("status", "already_released"); j.add("record", releasedPath)
                j.emit()
                return ExitStatus.ok.rawValue
            }
            Log.fail(Ingester.tool, "\(reasonPath): no such reason file (\(name) is not quarantined)")
            return ExitStatus.noInput.rawValue
        }
        let original = String(decoding: try FileIO.readAll(reasonPath), as: UTF8.self).trimmingTrailingNewlines
        let at = Clock.iso(Clock.now())
        let shards: [String]
        let kind: String
        if let prefix = ShardQuarantine.prefix(name), FileIO.exists(root.quarantine + "/" + name) || FileIO.exists(root.shards + "/" + name) {
            kind = "shard"
            shards = try releaseShard(name, input: prefix, noWait: options.noWait)
        } else {
            kind = "input"
            switch try releaseInput(name, options: options) {
            case .success(let s): shards = s
            case .failure(let status): return status.code
            }
        }
        var j = JSONOut()
        j.add("schema", 1)
        j.add("name", name)
        j.add("status", "released")
        j.add("kind", kind)
        j.add("released_by", by)
        j.add("released_at", at)
        j.add("shards", shards)
        j.add("quarantine", raw: original.isEmpty ? "null" : original)
        try FileIO.publish(j.closed + "\n", to: releasedPath)
        try FileIO.removeDurably(reasonPath)
        log.notice("\(name): released", metadata: ["by": "\(by)", "kind": "\(kind)", "record": "\(releasedPath)"])
        var o = JSONOut()
        o.add("name", name)
        o.add("status", "released")
        o.add("kind", kind)
        o.add("shards", shards)
        o.add("record", releasedPath)
        o.add("by", by)
        o.add("at", at)
        o.emit()
        return ExitStatus.ok.rawValue
    }

    /// An exit status as an Error, for `releaseInput`'s result.
    struct Refused: Error { let code: Int32 }

    /// Moves a quarantined shard back to shards/ (under the lock). The holdout parts and the
    /// sidecars of its input (`input`: `<stamp>-<sha16>`) go back once no train part of the
    /// input remains quarantined. Returns the shards now back in place.
    private func releaseShard(_ name: String, input prefix: String, noWait: Bool) throws -> [String] {
        let l = try lock(noWait: noWait)
        defer { l.release() }
        if FileIO.exists(root.quarantine + "/" + name) {
            try FileIO.moveDurably(root.quarantine + "/" + name, root.shards + "/" + name)
        }
        var shards = [root.shards + "/" + name]
        let stillOut = try FileIO.list(root.quarantine).filter {
            $0 != name && ShardName($0)?.input == prefix && FileIO.exists(root.quarantine + "/" + $0 + ".reason.json")
        }
        guard stillOut.isEmpty else { return shards }
        for h in ((try? FileIO.list(qHoldout)) ?? []) where ShardName(h)?.input == prefix {
            try FileIO.moveDurably(qHoldout + "/" + h, root.holdout + "/" + h)
            shards.append(root.holdout + "/" + h)
        }
        for ext in [".hashes", ".json"] where FileIO.exists(qStats + "/" + prefix + ext) {
            try FileIO.moveDurably(qStats + "/" + prefix + ext, Reference.dir(root) + "/" + prefix + ext)
        }
        return shards
    }

    /// Ingests a quarantined input without the batch checks (an Ingester run with
    /// `releasing`). Returns the shards it made, or the exit status when it cannot be
    /// ingested. An input already gone from quarantine/ was ingested by an earlier release
    /// that stopped before its bookkeeping: nothing to do but complete that.
    private func releaseInput(_ name: String, options: Ingester.Config) throws -> Result<[String], Refused> {
        let path = root.quarantine + "/" + name
        guard FileIO.exists(path) else {
            log.notice("\(name): input already ingested and moved out of quarantine/ by an earlier release; completing")
            return .success([])
        }
        guard let st = FileIO.lstatOrNil(path), (st.st_mode & S_IFMT) == S_IFREG else {
            Log.fail(Ingester.tool, "\(path): not a regular file")
            return .failure(Refused(code: ExitStatus.noInput.rawValue))
        }
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        var cfg = options
        cfg.releasing = true
        let ing = Ingester(cfg)
        let input = Ingester.Input(path: path, display: path, name: name, inInbox: true, time: mtime)
        let rc = ing.run(files: [], prepared: [input])
        guard let r = ing.results.last, ["accepted", "partial", "duplicate"].contains(r.status) else {
            Log.fail(Ingester.tool, "\(name): not released (the input could not be ingested; see above)")
            return .failure(Refused(code: rc == 0 ? ExitStatus.partial.rawValue : rc))
        }
        return .success(r.shards)
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
