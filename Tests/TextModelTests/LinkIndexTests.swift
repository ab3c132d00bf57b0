// The link index (TextModel/LinkIndex.swift, docs/formats.md "Link index"): a walk through it
// gives what a walk of the files gives, a saved index serves the next process without reading
// the checkpoints, a file that changed is read again, and a damaged index is refused whole.

import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training
#if canImport(Glibc)
import Glibc
#endif

final class LinkIndexTests: XCTestCase {
    let lineage = LineageFixture.self

    /// The file's mtime set back to what `st` says (an in-place edit the stamp cannot see).
    func restoreTimes(_ path: String, _ st: stat) {
        var ts = [st.st_atim, st.st_mtim]
        XCTAssertEqual(utimensat(AT_FDCWD, path, &ts, 0), 0)
    }

    func testWalksThroughTheIndexAgreeAndASavedIndexReadsNoCheckpoint() throws {
        let dir = try TestSupport.tempDir("linkidx")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try lineage.trainer()
        let c1 = try lineage.write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1", "s2"], trainer: t)
        let c2 = try lineage.write(root, run: "main", file: "c2.ppc", parent: "main/c1.ppc", shards: ["s3"], trainer: t)
        _ = try lineage.write(root, run: "other", file: "c3.ppc", parent: "main/c2.ppc", shards: ["s4"], trainer: t)
        let c3 = root.checkpoints(run: "other") + "/c3.ppc"
        try Checkpoint.keepHead(of: c1, root: root)
        try FileIO.removeDurably(c1)

        let direct = try Lineage.of(checkpoint: c3, root: root)
        let index = LinkIndex(root: root, warn: { XCTFail("unexpected warning: \($0)") })
        let viaIndex = try Lineage.of(checkpoint: c3, root: root, memo: Lineage.Memo(index: index))
        XCTAssertEqual(viaIndex.shards, direct.shards)
        XCTAssertEqual(viaIndex.chain, direct.chain)
        XCTAssertTrue(viaIndex.complete)
        try index.save()
        XCTAssertTrue(FileIO.isRegularFile(LinkIndex.path(root, run: "main")))
        XCTAssertTrue(FileIO.isRegularFile(LinkIndex.path(root, run: "other")))
        let saved = try LinkIndex.parse(try FileIO.readAll(LinkIndex.path(root, run: "main")))
        XCTAssertEqual(Set(saved.keys), ["checkpoints/c2.ppc", "heads/c1.ppc.head"])
        XCTAssertEqual(saved["heads/c1.ppc.head"]?.link.lineage.map(\.name), ["s1", "s2"])

        // A new process reads no checkpoint: every link comes from the saved index.
        let next = LinkIndex(root: root, warn: { XCTFail("unexpected warning: \($0)") })
        XCTAssertEqual(try Lineage.of(checkpoint: c3, root: root, memo: Lineage.Memo(index: next)).shards, direct.shards)
        XCTAssertEqual(next.misses, 0)

        // c2 damaged in place, its size and times set back: the ctime (nobody can set it
        // back) still tells, so the damage is read and reported, never masked by the index.
        let st = try XCTUnwrap(FileIO.lstatOrNil(c2))
        let fd = open(c2, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let zeros = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }, 64)
        close(fd)
        restoreTimes(c2, st)
        let afterEdit = LinkIndex(root: root)
        XCTAssertThrowsError(try Lineage.of(checkpoint: c3, root: root, memo: Lineage.Memo(index: afterEdit)))
        XCTAssertEqual(afterEdit.misses, 1)

        // A file replaced (rename: another inode) misses and is read again.
        _ = try lineage.write(root, run: "main", file: "c2.ppc", parent: "main/c1.ppc", shards: ["s3", "s5"], trainer: t)
        let third = LinkIndex(root: root)
        XCTAssertEqual(try Lineage.of(checkpoint: c3, root: root, memo: Lineage.Memo(index: third)).shards.map(\.name),
                       ["s1", "s2", "s3", "s5", "s4"])
        try third.save()
        XCTAssertEqual(try LinkIndex.parse(try FileIO.readAll(LinkIndex.path(root, run: "main")))["checkpoints/c2.ppc"]?.link.lineage.map(\.name),
                       ["s3", "s5"])

        // Only the files a process looked at are kept (the entries of deleted files go).
        let fourth = LinkIndex(root: root)
        _ = try fourth.link(root.checkpoints(run: "main") + "/c2.ppc")
        try fourth.save()
        XCTAssertEqual(Set(try LinkIndex.parse(try FileIO.readAll(LinkIndex.path(root, run: "main"))).keys), ["checkpoints/c2.ppc"])
        XCTAssertEqual(Set(try LinkIndex.parse(try FileIO.readAll(LinkIndex.path(root, run: "other"))).keys), ["checkpoints/c3.ppc"],
                       "a run not looked at keeps its index")
    }

    /// A delta's base comes back from the index as from the file (retention protects bases
    /// by it); a link with a field that cannot be a token is read every time, never written.
    func testBaseAndUnwritableLinks() throws {
        let e = LinkIndex.Entry(size: 1, mtimeNs: 2, ctimeNs: 4, inode: 3,
                                link: Lineage.Link(parent: "main/a.ppc", base: "main/b.ppc",
                                                   lineage: [ShardRef(name: "s1", sha256: String(repeating: "a", count: 64)), ShardRef(name: "s2", sha256: "")],
                                                   createdAt: "2026-12-08T00:00:00Z"))
        let line = try XCTUnwrap(LinkIndex.line("checkpoints/c.ppc", e))
        let back = try LinkIndex.parse(Array((LinkIndex.magicLine + "\n" + line + "\n").utf8))
        XCTAssertEqual(back["checkpoints/c.ppc"], e)
        for bad in [Lineage.Link(parent: "a b", base: nil, lineage: [], createdAt: "t"),
                    Lineage.Link(parent: "-", base: nil, lineage: [], createdAt: "t"),
                    Lineage.Link(parent: nil, base: nil, lineage: [ShardRef(name: "-", sha256: "")], createdAt: "t"),
                    Lineage.Link(parent: nil, base: nil, lineage: [ShardRef(name: "s", sha256: "-")], createdAt: "t"),
                    Lineage.Link(parent: nil, base: "é", lineage: [], createdAt: "t"),
                    Lineage.Link(parent: nil, base: nil, lineage: [], createdAt: "")] {
            XCTAssertNil(LinkIndex.line("checkpoints/c.ppc", LinkIndex.Entry(size: 1, mtimeNs: 2, ctimeNs: 4, inode: 3, link: bad)), "\(bad)")
        }
        // Only paths under runs/RUN/{checkpoints,rewound,heads}/ of the index's root are placed.
        let root = Root("/r")
        let idx = LinkIndex(root: root)
        XCTAssertEqual(idx.place("/r/runs/main/checkpoints/c.ppc")?.key, "checkpoints/c.ppc")
        XCTAssertEqual(idx.place("/r/runs/main/heads/c.ppc.head")?.run, "main")
        for p in ["/r/runs/main/other/c.ppc", "/r/runs/main/checkpoints/.c.ppc", "/x/runs/main/checkpoints/c.ppc",
                  "/r/runs/main/checkpoints/a/c.ppc", "/r/runs/main/checkpoints/", "/r/runs/a b/checkpoints/c.ppc"] {
            XCTAssertNil(idx.place(p), p)
        }
    }

    func testDamagedIndexIsIgnoredAsAWhole() throws {
        let m = LinkIndex.magicLine
        let good = "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 0\nheads/d.ppc.head 1 2 9 3 t main/c.ppc - 2 s1 - s2 abc\n"
        XCTAssertEqual(try LinkIndex.parse(Array(good.utf8)).count, 2)
        let bad = [
            "perpetuum-link-index 2\n",                                        // other version
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 0",                           // torn last line
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - -\n",                           // 8 fields
            "\(m)\ncheckpoints/c.ppc -1 2 9 3 t - - 0\n",                        // negative size
            "\(m)\ncheckpoints/c.ppc 1 2 9 -3 t - - 0\n",                        // negative inode
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 1\n",                         // count without its shard
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 1 s1\n",                      // half a shard
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 99999999999999999999 s1 -\n", // count overflows
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - -1\n",                        // negative count
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 1 - -\n",                     // a shard without a name
            "\(m)\nother/c.ppc 1 2 9 3 t - - 0\n",                               // unknown folder
            "\(m)\ncheckpoints/.c.ppc 1 2 9 3 t - - 0\n",                        // a dot-file
            "\(m)\ncheckpoints/a/c.ppc 1 2 9 3 t - - 0\n",                       // a path
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t - - 0\ncheckpoints/c.ppc 1 2 9 3 t - - 0\n", // twice
            "\(m)\ncheckpoints/c.ppc  1 2 9 3 t - - 0\n",                        // empty field
            "\(m)\ncheckpoints/c.ppc 1 2 9 3 t\u{7F} - - 0\n",                   // not printable
        ]
        XCTAssertEqual(TestSupport.notRefusedByLine(bad) { _ = try LinkIndex.parse($0) }, [])
        // On disk: reported, ignored, and the walk still right (then the index is rebuilt).
        let dir = try TestSupport.tempDir("linkidx-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let c1 = try lineage.write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1"], trainer: try lineage.trainer())
        try FileIO.makeDirectories(root.heads(run: "main"))
        try FileIO.publish(bad[5], to: LinkIndex.path(root, run: "main"))
        var warnings: [String] = []
        let idx = LinkIndex(root: root, warn: { warnings.append($0) })
        XCTAssertEqual(try idx.link(c1).lineage.map(\.name), ["s1"])
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings.first?.contains("links.idx") ?? false, "\(warnings)")
        try idx.save()
        XCTAssertEqual(try LinkIndex.parse(try FileIO.readAll(LinkIndex.path(root, run: "main"))).count, 1)
    }
}
