//! Test support for `core/tests/tui_tmux.rs`: takes the terminal the way `karapace tui` does
//! (raw mode, alternate screen, stderr captured), draws a line, and panics at the first key —
//! so the test can check that the panic hook gives the terminal back and that the panic message
//! reaches it.

use karapace::tui::terminal::Screen;
use ratatui::crossterm::event;
use ratatui::widgets::Paragraph;

fn main() {
    let Ok(mut screen) = Screen::new(|_| {}) else {
        eprintln!("tui_panic: no terminal");
        std::process::exit(2);
    };
    let drawn = screen.draw(|frame| {
        frame.render_widget(Paragraph::new("PANIC-TEST-UP"), frame.area());
    });
    if drawn.is_err() {
        std::process::exit(2);
    }
    let _ = event::read();
    panic!("deliberate panic of the terminal-restore test");
}
