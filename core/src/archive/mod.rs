//! Archives: push decoders for gzip and zstd, a push tar parser, and the layer machines.
