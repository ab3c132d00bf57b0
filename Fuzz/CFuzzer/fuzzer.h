// libFuzzer's driver entry point (compiler-rt FuzzerInterface.h), for the fuzz targets' main:
// SwiftPM links an executable target's main as MODULE_main, so libFuzzer's own main() is not
// used; each target's top-level code calls this instead.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));
