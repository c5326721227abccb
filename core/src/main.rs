//! The `karapace` binary.

fn main() {
    std::process::exit(karapace::cli::main());
}
