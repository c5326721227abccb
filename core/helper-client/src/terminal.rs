//! Terminal niceties for `enter`: OSC 777 container markers (understood by
//! Ptyxis, GNOME Console and others) and a short banner, on stderr, only
//! when stderr is a terminal.

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

/// Gives the terminal back to the caller's process group after a session.
///
/// An interactive shell inside the environment makes its own process group
/// the terminal's foreground group; when it exits, that group is gone and
/// the caller would be left in the background (and stopped by SIGTTOU/SIGTTIN
/// the next time it touches the terminal). Call after [`crate::Session::wait`]
/// for sessions that had the terminal.
pub fn restore_foreground() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return;
    }
    let me = nix::unistd::getpgrp();
    if nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg == me) {
        return;
    }
    // tcsetpgrp from a background group raises SIGTTOU unless it is blocked.
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
        let _ = nix::unistd::tcsetpgrp(&stdin, me);
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
