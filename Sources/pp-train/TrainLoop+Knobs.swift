// The run's knobs while it trains: changes from control.json (re-read every 2 s and on
// SIGHUP) and from the flags at the start, each logged and recorded for the next
// checkpoint's meta; policy.json re-read on SIGHUP.

import Foundation
import Logging
import Shared
import TextModel

extension TrainLoop {
    // MARK: knobs

    func applyKnobs(_ new: Knobs, source: String) {
        let changes = knobChanges(from: knobs, to: new, step: step, at: Clock.iso(Clock.now()))
        if changes.isEmpty { return }
        for c in changes {
            log.notice("knob changed", metadata: ["knob": "\(c.knob)", "old": "\(c.old)", "new": "\(c.new)", "step": "\(c.step)", "source": "\(source)"])
        }
        // A fresh model has no earlier checkpoint to differ from: nothing to record.
        if start.kind != "fresh" || step > 0 || source != "start" { pendingChanges += changes }
        if halted && (new.lr != knobs.lr || new.dropout != knobs.dropout) {
            log.notice("knobs changed: resuming after the NaN halt")
            halted = false; nanStreak = 0
        }
        trainer.knobs = new
    }

    /// Re-reads policy.json (SIGHUP); a bad file is logged and the policy in force stays.
    func readPolicy() {
        do {
            let p = try TrainPolicy.load(root: s.root)
            if p != policy { log.notice("policy.json changed: new guard settings in force") }
            policy = p
            guardian.policy = p
        } catch {
            log.error("ignoring policy.json (the guard settings in force stay): \(error)")
        }
    }

    func readControl() {
        do {
            guard let c = try Control.read(controlPath) else { return }
            lastControlError = nil
            adoptIfAsked(c.adopt)
            applyKnobs(c.applied(to: knobs), source: "control.json")
        } catch let e as PPError {
            if e.message != lastControlError { log.error("ignoring control.json: \(e.message)") }
            lastControlError = e.message
        } catch {
            log.error("ignoring control.json: \(error)")
        }
    }
}
