// Keeping selections.jsonl and the `deployed` link in agreement (issue 15, items 4 and 10).
// `commit` moves the link first and appends the decision after it, so a pp-select killed in
// between leaves the link ahead of the journal, never a recorded decision that did not
// happen. At the start of every run, under the lock, `startJournal` cuts a torn last line
// (History.repairTail), then `reconcile` compares the link with the last decision that moved
// it: when they differ (a kill between the two steps, a lost last line, a link changed by
// hand) a `reconcile` decision records where the link points, so rollback and retention see
// it. The link is the truth (it is what is served); the journal catches up with it.

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

/// PP_SELECT_CRASH_AT (tests only): SIGKILL this process at that point.
func crashPoint(_ point: String) {
    guard let v = getenv("PP_SELECT_CRASH_AT"), String(cString: v) == point else { return }
    Log.make("pp-select").warning("PP_SELECT_CRASH_AT=\(point): killing myself (test hook)")
    kill(getpid(), SIGKILL)
}

extension Selector {
    /// Repairs a torn tail of selections.jsonl (not in a dry run: then only the warning), then
    /// reconciles the link with the journal. Returns the reconcile decision, if one is due.
    func startJournal() throws -> DecisionRecord? {
        if dryRun {
            if let bytes = try? FileIO.readAll(root.selections), let last = bytes.last, last != 0x0A {
                Log.make("pp-select").warning("\(root.selections): the last line is torn (no newline); a run without --dry-run cuts it off")
            }
        } else if let torn = try History.repairTail(root.selections) {
            let shown = LogText.escape(bytes: Array(torn.prefix(200))) + (torn.count > 200 ? "..." : "")
            Log.make("pp-select").warning("\(root.selections): cut off a torn last line (\(torn.count) bytes, a write interrupted by a crash or a full disk): \(shown)")
        }
        return try reconcile()
    }

    /// A `reconcile` decision when the link does not point where the last decision that moved
    /// it says; nil when they agree, or when there is no link (guardDeployed and selection
    /// deal with a missing target; an absent link is never re-created from the journal).
    func reconcile() throws -> DecisionRecord? {
        guard let link = currentDeployed() else { return nil }
        let recorded = try History.read(root.selections).last(where: \.moved)?.deployedPath
        if recorded == link { return nil }
        let was = recorded.map { "the last decision deployed \(Selector.id($0))" } ?? "no decision deployed anything"
        var rec = DecisionRecord(at: stamp(), decision: "reconcile",
                                 reason: "deployed points to \(Selector.id(link)) but \(was): pp-select was stopped between the link swap and its record, the record was lost, or the link was changed by hand; recorded as found")
        rec.previous = recorded.map(Selector.id); rec.previousPath = recorded
        rec.deployed = Selector.id(link); rec.deployedPath = link
        Log.make("pp-select").warning("\(rec.reason)")
        return rec
    }
}
