// pp-ingest's entry point; the command line is in Command.swift.
PPIngest.main()
