//! Terminal niceties for `enter`: OSC 777 container markers (understood by Ptyxis, GNOME Console
//! and others) and a short banner, on stderr, only when stderr is a terminal.

use std::io::{IsTerminal, Write};

/// OSC 777 "container push" sequence for an environment.
pub fn osc_push(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != ';')
        .collect();
    format!("\x1b]777;container;push;{clean};karapace\x1b\\")
}

/// OSC 777 "container pop" sequence.
pub fn osc_pop() -> &'static str {
    "\x1b]777;container;pop;;\x1b\\"
}

/// Prints the push marker and banner before an interactive session.
pub fn enter_banner(name: &str, short_id: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = writeln!(
            err,
            "{}karapace: entering {name} ({short_id}); exit the shell to leave",
            osc_push(name)
        );
        let _ = err.flush();
    }
}

/// Prints the pop marker after the session.
pub fn leave_banner() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "{}", osc_pop());
        let _ = err.flush();
    }
}
