//! The `karapace` binary: runs `exec` and `enter` itself, on a small binary that loads fast, and
//! hands every other command line to `karapace-cli` (see `karapace::cli::fast`).

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match karapace::cli::fast::parse(&args) {
        Some(line) => karapace::cli::fast::run(line),
        None => karapace::cli::fast::delegate(&args),
    };
    std::process::exit(code);
}
