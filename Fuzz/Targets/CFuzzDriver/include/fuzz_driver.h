#ifndef MSTUNNEL_FUZZ_DRIVER_H
#define MSTUNNEL_FUZZ_DRIVER_H

/// libFuzzer's driver, for a `main` of our own: in a debug build SwiftPM links each
/// executable with `--defsym main=<module>_main` (testable executables), which keeps
/// libFuzzer's own `main` out, so every fuzz target defines `<module>_main` and calls this.
int mstunnel_fuzz_driver(int argc, char **argv);

#endif
