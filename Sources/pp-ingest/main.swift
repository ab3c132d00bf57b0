// pp-ingest's entry point; the command line is in Command.swift.
import TextModel

BLASLibrary.prepare()   // before any thread: OpenBLAS's environment (TextModel/BLAS.swift)
PPIngest.main()
