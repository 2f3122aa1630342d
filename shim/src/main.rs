//! `berth-shim`: see the library's documentation.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(berth_shim::main(std::env::args_os()));
}
