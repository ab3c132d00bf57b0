// The loop's knob control: control.json (TextModel/Control.swift has its format), read at
// the start and on SIGHUP, and looked at every 2 s (parsed again only when the file changed). It owns the file's path, the last error reported
// (a bad file is logged once, not every 2 s) and the last `adopt` request looked at; it logs
// every knob change with its source. The knobs themselves have one copy, the trainer's
// (TrainLoop.applyKnobs puts them there and records the changes for the next checkpoint).

import Foundation
import Logging
import Shared
import TextModel

final class KnobControl {
    let path: String
    let log: Logger
    private var lastError: String?
    /// control.json's last `adopt` value looked at.
    private var adoptSeen: String?
    /// The last adoption carried out, its checkpoint id and when (status.json).
    var adopted: (id: String, at: String)?
    /// What the last read parsed, kept while the file is unchanged (FileWatch): it is not
    /// parsed again. Parsing it every 2 s was three quarters of an idle trainer's CPU.
    private var parsed: Control?
    private var watch = FileWatch()

    init(path: String, log: Logger) {
        self.path = path; self.log = log
    }

    /// control.json now: nil when there is none or it cannot be used (logged: once per
    /// distinct error, so a bad file does not fill the log every 2 s).
    func read(force: Bool = false) -> Control? {
        let look = watch.look(path, follow: false)
        if !force, look.unchanged, let p = parsed { return p }
        parsed = nil
        watch.forget()
        do {
            let c = try Control.read(path)
            lastError = nil
            parsed = c
            watch.read(look)
            return c
        } catch let e as PPError {
            if e.message != lastError { log.error("ignoring control.json: \(e.message)") }
            lastError = e.message
        } catch {
            log.error("ignoring control.json: \(error)")
        }
        return nil
    }

    /// At the start, after the flags and the file were applied to `knobs`: control.json is
    /// rewritten to agree (unless it does already), so the periodic re-read does not undo a
    /// flag. `average` is written once someone uses it (a file of a run that never did keeps
    /// its three keys); absent means "as it is", the checkpoint's or the default.
    func agree(_ existing: Control?, with knobs: Knobs) throws {
        var ctl = existing ?? Control()
        ctl.lr = knobs.lr; ctl.dropout = knobs.dropout
        if ctl.average != nil || knobs.average != Knobs.defaultAverage { ctl.average = knobs.average }
        if ctl.pause == nil { ctl.pause = knobs.pause }
        if ctl != existing { try ctl.write(path) }
    }

    /// `adopt` when it names a checkpoint not looked at before (each request is carried out
    /// once: at the start too, so a restart between the request and the next checkpoint still
    /// does it, and the state then descends from it).
    func newAdoption(_ c: Control?) -> String? {
        guard let id = c?.adopt, id != adoptSeen else { return nil }
        adoptSeen = id
        return id
    }

    /// The changes from `old` to `new` at `step`, each logged with its source.
    func changes(from old: Knobs, to new: Knobs, step: Int, source: String) -> [KnobChange] {
        let changes = knobChanges(from: old, to: new, step: step, at: Clock.iso(Clock.now()))
        for c in changes {
            log.notice("knob changed", metadata: ["knob": "\(c.knob)", "old": "\(c.old)", "new": "\(c.new)", "step": "\(c.step)", "source": "\(source)"])
        }
        return changes
    }
}
