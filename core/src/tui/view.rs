//! Drawing the state: the table of environments or one environment's details, a line for the
//! prompt or the key hints, and the status line; the help over them.
//!
//! Every text that comes from the store or the engine (names, paths in a diff, messages) is
//! drawn through [`crate::output::escape`], so a hostile environment cannot steer the terminal
//! or forge what the user reads.

use karapace_store::EnvState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, HighlightSpacing, Paragraph, Row, Table};

use super::app::{App, Detail, Prompt, Screen, StatusKind};
use crate::cli::env_view::{inspect_fields, inspect_line};
use crate::output::{Newlines, escape};

/// Every key, as the help shows it (and docs/tui.md lists it; a test keeps the two in step).
pub const KEYS: &[(&str, &str)] = &[
    ("j / Down", "next environment (detail: scroll down)"),
    ("k / Up", "previous environment (detail: scroll up)"),
    ("g / Home", "first environment (detail: top)"),
    ("G / End", "last environment (detail: bottom)"),
    ("PgDn / PgUp", "ten rows down / up"),
    ("Enter", "details: inspect fields, snapshots, diff"),
    ("Esc", "back to the list; clear the search"),
    ("/", "search short_id, env_id, name, state"),
    ("s", "sort by name, then state, then short_id"),
    ("S", "reverse the sort"),
    ("e", "enter the environment (exit to come back)"),
    ("c", "commit: snapshot the writable layer"),
    ("f", "freeze"),
    ("a", "archive"),
    ("n", "rename (Enter applies, Esc cancels)"),
    ("d", "destroy (y confirms)"),
    ("r", "refresh"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit"),
];

/// Colours, or none when `NO_COLOR` is set (<https://no-color.org>): then only bold and
/// reverse video mark what colour would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub const COLOR: Theme = Theme { color: true };
    pub const NO_COLOR: Theme = Theme { color: false };

    /// `NO_COLOR` set to anything but the empty string turns colour off.
    pub fn from_env() -> Theme {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            Theme::NO_COLOR
        } else {
            Theme::COLOR
        }
    }

    fn paint(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn title(self) -> Style {
        self.paint(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn header(self) -> Style {
        self.paint(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    fn selected(self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    fn error(self) -> Style {
        self.paint(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn quiet(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    fn key(self) -> Style {
        self.paint(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn state(self, state: EnvState) -> Style {
        self.paint(match state {
            EnvState::Defined => Color::Yellow,
            EnvState::Built => Color::Green,
            EnvState::Running => Color::Cyan,
            EnvState::Frozen => Color::Blue,
            EnvState::Archived => Color::DarkGray,
        })
    }
}

/// Draws the whole screen. Takes the state mutably only to keep the table's selection and the
/// detail view's scroll position within what fits.
pub fn draw(frame: &mut Frame<'_>, app: &mut App, theme: Theme) {
    let [main, prompt, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    match app.screen() {
        Screen::List => draw_table(frame, main, app, theme),
        Screen::Detail(_) => draw_detail(frame, main, app, theme),
    }
    draw_prompt(frame, prompt, app, theme);
    draw_status(frame, status, app, theme);
    if app.prompt() == &Prompt::Help {
        draw_help(frame, frame.area(), theme);
    }
}

/// Text from the store or the engine, made safe for the terminal.
fn safe(text: &str) -> String {
    escape(text, Newlines::Escape).into_owned()
}

/// `text` cut to `width` characters, the last one an ellipsis when something was cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut
}

const SHORT_ID_WIDTH: u16 = 12;
const STATE_WIDTH: u16 = 8;
/// The selection marker's columns (kept on every row so the columns do not shift).
const MARKER: &str = "> ";

fn draw_table(frame: &mut Frame<'_>, area: Rect, app: &mut App, theme: Theme) {
    let (key, reverse) = app.sort();
    let block = Block::bordered()
        .title(Line::styled(
            format!(" Environments ({}/{}) ", app.visible().len(), app.total()),
            theme.title(),
        ))
        .title_top(
            Line::styled(
                format!(
                    " sort: {} {} ",
                    key.label(),
                    if reverse { "\u{2193}" } else { "\u{2191}" }
                ),
                theme.quiet(),
            )
            .right_aligned(),
        );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.visible().len() == 0 {
        let message = if app.total() == 0 {
            "no environments found".to_owned()
        } else {
            format!("no environment matches '{}'", safe(app.filter()))
        };
        frame.render_widget(
            Paragraph::new(Line::styled(message, theme.quiet())).centered(),
            inner.centered_vertically(Constraint::Length(1)),
        );
        return;
    }

    // Widths: SHORT_ID and STATE fixed, NAME as wide as the longest name (16–24, as `list` has 16), ENV_ID the
    // rest; the name gives way first on a narrow terminal.
    let longest = app
        .visible()
        .filter_map(|e| e.name.as_deref())
        .map(|n| safe(n).chars().count())
        .max()
        .unwrap_or(0);
    let longest = u16::try_from(longest).unwrap_or(u16::MAX);
    let marker = u16::try_from(MARKER.len()).unwrap_or(2);
    let fixed = marker + SHORT_ID_WIDTH + STATE_WIDTH + 3;
    let room = inner.width.saturating_sub(fixed);
    let name_width = longest.clamp(16, 24).min(room.saturating_sub(12).max(4));
    let id_width = room.saturating_sub(name_width);

    let rows: Vec<Row<'_>> = app
        .visible()
        .map(|e| {
            Row::new(vec![
                Span::raw(e.short_id.clone()),
                Span::raw(fit(
                    &safe(e.name.as_deref().unwrap_or("")),
                    usize::from(name_width),
                )),
                Span::styled(e.state.to_string(), theme.state(e.state)),
                Span::raw(fit(&e.env_id, usize::from(id_width))),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(SHORT_ID_WIDTH),
            Constraint::Length(name_width),
            Constraint::Length(STATE_WIDTH),
            Constraint::Length(id_width),
        ],
    )
    .header(Row::new(["SHORT_ID", "NAME", "STATE", "ENV_ID"]).style(theme.header()))
    .column_spacing(1)
    .row_highlight_style(theme.selected())
    .highlight_symbol(MARKER)
    .highlight_spacing(HighlightSpacing::Always);
    frame.render_stateful_widget(table, inner, &mut app.table);
}

/// The lines of the detail view: `inspect`'s fields, the snapshots, the drift.
pub fn detail_lines(detail: &Detail, theme: Theme) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = inspect_fields(&detail.env)
        .into_iter()
        .chain(detail.extra.iter().cloned())
        .map(|(key, value)| Line::raw(inspect_line(key, &safe(&value))))
        .collect();
    lines.push(Line::raw(""));
    match &detail.snapshots {
        Err(e) => lines.push(Line::styled(
            format!("snapshots: error: {}", safe(e)),
            theme.error(),
        )),
        Ok(snaps) if snaps.is_empty() => lines.push(Line::raw("snapshots: none")),
        Ok(snaps) => {
            lines.push(Line::styled(
                format!("snapshots: {}", snaps.len()),
                theme.header(),
            ));
            // The hash `restore` takes, whole (what users copy), then on lines of their own
            // what `snapshots` says beside it (one line would not fit 80 columns) and the
            // label `commit --message` gave it.
            for s in snaps {
                let tar = s.tar_hash.get(..12).unwrap_or(&s.tar_hash);
                lines.push(Line::raw(format!("  {}", safe(&s.restore_hash))));
                let when = s
                    .created_at
                    .as_deref()
                    .map(|w| format!("  created: {}", safe(w)))
                    .unwrap_or_default();
                lines.push(Line::styled(
                    format!("    tar: {}{when}", safe(tar)),
                    theme.quiet(),
                ));
                if let Some(label) = &s.label {
                    lines.push(Line::raw(format!("    label: {}", safe(label))));
                }
            }
        }
    }
    lines.push(Line::raw(""));
    match &detail.diff {
        Err(e) => lines.push(Line::styled(
            format!("diff: error: {}", safe(e)),
            theme.error(),
        )),
        Ok(diff) if !diff.has_drift() => lines.push(Line::raw("diff: no drift")),
        Ok(diff) => {
            let n = diff.added.len() + diff.modified.len() + diff.removed.len();
            lines.push(Line::styled(
                format!("diff: {n} change{}", if n == 1 { "" } else { "s" }),
                theme.header(),
            ));
            for (sign, paths, color) in [
                ('+', &diff.added, Color::Green),
                ('~', &diff.modified, Color::Yellow),
                ('-', &diff.removed, Color::Red),
            ] {
                for p in paths {
                    lines.push(Line::styled(
                        format!("  {sign} {}", safe(p)),
                        theme.paint(color),
                    ));
                }
            }
        }
    }
    lines
}

fn draw_detail(frame: &mut Frame<'_>, area: Rect, app: &mut App, theme: Theme) {
    let Screen::Detail(detail) = app.screen_mut() else {
        return;
    };
    let lines = detail_lines(detail, theme);
    let title = match &detail.env.name {
        Some(name) => format!(" {} ({}) ", safe(name), detail.env.short_id),
        None => format!(" {} ", detail.env.short_id),
    };
    // Top and bottom borders only: a 64-digit hash after its key fits an 80-column terminal.
    let block = Block::new()
        .borders(Borders::TOP | Borders::BOTTOM)
        .title(Line::styled(title, theme.title()));
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let max_scroll = lines.len().saturating_sub(height);
    detail.scroll = detail.scroll.min(max_scroll);
    let first = detail.scroll;
    let last = (first + height).min(lines.len());
    let block = block.title_bottom(
        Line::styled(
            format!(" lines {}-{last} of {} ", first + 1, lines.len()),
            theme.quiet(),
        )
        .right_aligned(),
    );
    let scroll = u16::try_from(first).unwrap_or(u16::MAX);
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), area);
}

/// Hints: `key` bold, then what it does.
fn hints(pairs: &[(&str, &str)], theme: Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (i, (key, what)) in pairs.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled((*key).to_owned(), theme.key()));
        spans.push(Span::raw(format!(" {what}")));
    }
    spans
}

fn draw_prompt(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let line = match app.prompt() {
        Prompt::Search { .. } => {
            let text = format!("/{}", safe(app.filter()));
            cursor_after(frame, area, &text);
            let mut spans = vec![Span::raw(text), Span::raw("   ")];
            spans.extend(hints(&[("Enter", "keep"), ("Esc", "cancel")], theme));
            Line::from(spans)
        }
        Prompt::Rename { target, input } => {
            let text = format!("rename {} to: {}", safe(&target.label), safe(input));
            cursor_after(frame, area, &text);
            let mut spans = vec![Span::raw(text), Span::raw("   ")];
            spans.extend(hints(&[("Enter", "apply"), ("Esc", "cancel")], theme));
            Line::from(spans)
        }
        Prompt::ConfirmDestroy { target } => Line::from(vec![
            Span::styled(format!("destroy {}? ", safe(&target.label)), theme.error()),
            Span::styled("y", theme.key()),
            Span::raw(" destroys it, any other key cancels"),
        ]),
        Prompt::None | Prompt::Help => match app.screen() {
            Screen::Detail(_) => Line::from(hints(
                &[
                    ("Esc", "back"),
                    ("j/k", "scroll"),
                    ("e", "enter"),
                    ("c", "commit"),
                    ("d", "destroy"),
                    ("?", "help"),
                    ("q", "quit"),
                ],
                theme,
            )),
            Screen::List if !app.filter().is_empty() => {
                let mut spans = vec![
                    Span::raw(format!("/{}", safe(app.filter()))),
                    Span::raw("   "),
                ];
                spans.extend(hints(
                    &[
                        ("Esc", "clear"),
                        ("/", "edit"),
                        ("Enter", "detail"),
                        ("?", "help"),
                        ("q", "quit"),
                    ],
                    theme,
                ));
                Line::from(spans)
            }
            Screen::List => Line::from(hints(
                &[
                    ("Enter", "detail"),
                    ("/", "search"),
                    ("s", "sort"),
                    ("e", "enter"),
                    ("d", "destroy"),
                    ("?", "help"),
                    ("q", "quit"),
                ],
                theme,
            )),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// Puts the terminal's cursor after `text` on the prompt line (where typing goes).
fn cursor_after(frame: &mut Frame<'_>, area: Rect, text: &str) {
    let width = u16::try_from(text.chars().count()).unwrap_or(u16::MAX);
    let x = area
        .x
        .saturating_add(width)
        .min(area.right().saturating_sub(1));
    frame.set_cursor_position((x, area.y));
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let line = match app.status() {
        Some(s) if s.kind == StatusKind::Error => Line::styled(safe(&s.text), theme.error()),
        Some(s) => Line::raw(safe(&s.text)),
        None => Line::styled(format!("store: {}", safe(app.store())), theme.quiet()),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help(frame: &mut Frame<'_>, area: Rect, theme: Theme) {
    let key_width = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<key_width$}"), theme.key()),
                Span::raw(format!("  {what}")),
            ])
        })
        .collect();
    lines.push(Line::styled(" any key closes this help", theme.quiet()));
    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 3;
    let height = lines.len() + 2;
    let popup = area.centered(
        Constraint::Length(u16::try_from(width).unwrap_or(u16::MAX)),
        Constraint::Length(u16::try_from(height).unwrap_or(u16::MAX)),
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(Line::styled(" Keys ", theme.title()))),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abcdef", 0), "");
    }
}
