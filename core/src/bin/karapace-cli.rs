//! `karapace-cli`: the complete command-line program. Users run `karapace`, which handles `exec`
//! and `enter` itself and replaces itself with this program for every other command line (see
//! `karapace::cli::fast`).

fn main() {
    std::process::exit(karapace::cli::main());
}
