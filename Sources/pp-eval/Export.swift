// `pp-eval export CKPT OUT`: the serving export of a checkpoint (TextModel/Export.swift,
// docs/formats.md "Serving export"): the weights it serves (averaged when it has them, a
// delta resolved with its base), input rows in 16 (default), 8 or 32 bits, no training state.
// pp-eval, `pp-eval predict` and pp-ingest's canary load it as they load a checkpoint;
// pp-train refuses it. Written like every file here: temp file, fsync, rename, fsync folder.
// This file does not score (Scorer.swift) or predict (Predict.swift).

import Foundation
import ArgumentParser
import Shared
import TextModel

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint's serving export: smaller, predicts the same within a stated tolerance, cannot be resumed.",
        discussion: """
        Prints one JSON line: {"export":OUT,"from":CKPT,"bits":B,"rows":R,"bytes":N,"source_bytes":M} \
        (source_bytes: CKPT's file, plus its base's for a delta). Tolerance against CKPT, \
        pinned by ExportTests: 16 bits, probabilities within 1e-3 and the same top label on \
        at least 99.5% of examples; 8 bits, within 2e-2 and 98%. Formats: docs/formats.md. \
        EXIT STATUS: 0 done, 64 usage, 65 corrupt checkpoint, 66 no such file, 74 I/O error.
        """
    )

    @Argument(help: "The checkpoint file (.ppc); `deployed` works too.")
    var checkpoint: String

    @Argument(help: "The export to write (any name but a checkpoint's: ckpt-STAMP-STEP.ppc files are the runs').")
    var output: String

    @Option(name: .long, help: "Bits per input weight: 16 (IEEE binary16), 8 (int8, a scale per row) or 32 (as trained).")
    var bits = 16

    func validate() throws {
        if !Checkpoint.exportBits.contains(bits) { throw ValidationError("--bits must be 32, 16 or 8") }
        if CheckpointName(FileIO.split(output).name) != nil {
            throw ValidationError("\(output): a checkpoint's name; the tools would take the export for a checkpoint of the run: name it otherwise (e.g. model.ppm)")
        }
    }

    func run() throws {
        try exitingOnFailure(tool) {
            guard FileIO.exists(checkpoint) else { throw PPError("\(checkpoint): no such checkpoint", status: .noInput) }
            let ck = try Checkpoint.load(path: checkpoint, mode: .inference, averaged: true)
            let from = FileIO.split(FileIO.realPath(checkpoint) ?? checkpoint).name
            let (bytes, rows) = try Checkpoint.encodeExport(ck, bits: bits, from: from)
            try FileIO.publish(bytes, to: output)
            // Every file the load read: the checkpoint and, for a delta, its chain.
            let source = try Checkpoint.chain(of: checkpoint).reduce(0) { sum, link in
                sum + (FileIO.lstatOrNil(FileIO.realPath(link.path) ?? link.path).map { Int($0.st_size) } ?? 0)
            }
            try emit("{\"export\":\(jsonString(output)),\"from\":\(jsonString(checkpoint)),\"bits\":\(bits),\"rows\":\(rows),"
                     + "\"bytes\":\(bytes.count),\"source_bytes\":\(source)}")
        }
    }
}
