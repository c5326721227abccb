//! The terminal UI's screens, rendered with ratatui's `TestBackend` and compared with the
//! committed text in `tests/tui/*.txt` (one line per terminal row, trailing blanks cut).
//! `KARAPACE_UPDATE_SNAPSHOTS=1 cargo test -p karapace --test tui_render` rewrites them; read
//! the diff before committing one.

use std::path::PathBuf;

use karapace::tui::app::{Detail, Status};
use karapace::tui::{App, Theme, view};
use karapace_store::{Diff, EnvMetadata, EnvState, LayerHash, SnapshotInfo};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

fn hex(seed: &str) -> String {
    blake3::hash(seed.as_bytes()).to_hex().to_string()
}

fn layer(seed: &str) -> LayerHash {
    LayerHash::parse(&hex(seed)).unwrap()
}

fn env(seed: &str, name: Option<&str>, state: EnvState, deps: usize) -> EnvMetadata {
    let env_id = hex(seed);
    EnvMetadata {
        short_id: env_id[..12].to_owned(),
        env_id: env_id.parse().unwrap(),
        name: name.map(str::to_owned),
        state,
        manifest_hash: hex(&format!("{seed}/manifest")),
        base_layer: layer(&format!("{seed}/base")),
        dependency_layers: (0..deps)
            .map(|i| layer(&format!("{seed}/dep{i}")))
            .collect(),
        policy_layer: Some(layer(&format!("{seed}/policy"))),
        created_at: "2026-12-04T13:32:45Z".into(),
        updated_at: "2026-12-04T13:40:02Z".into(),
        checksum: hex(&format!("{seed}/checksum")),
    }
}

fn envs() -> Vec<EnvMetadata> {
    vec![
        env("web", Some("web"), EnvState::Built, 1),
        env("db", Some("postgres-16"), EnvState::Running, 2),
        env("scratch", None, EnvState::Frozen, 0),
        env("old", Some("legacy-build-env"), EnvState::Archived, 1),
        env("api", Some("api"), EnvState::Built, 1),
    ]
}

fn app() -> App {
    App::new("/home/me/.local/share/karapace", envs())
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\u{1b}' => KeyCode::Esc,
            c => KeyCode::Char(c),
        };
        app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
    }
}

fn render(app: &mut App, width: u16, height: u16, theme: Theme) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| view::draw(frame, app, theme))
        .expect("draw");
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Compares `app`'s screen at `width`×`height` with `tests/tui/<name>.txt`.
fn snapshot(name: &str, app: &mut App, width: u16, height: u16) {
    let actual = text(&render(app, width, height, Theme::COLOR));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/tui/{name}.txt"));
    if std::env::var_os("KARAPACE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (KARAPACE_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "screen {name} differs from {}\n--- expected\n{expected}--- actual\n{actual}",
        path.display()
    );
}

fn detail_of(env: EnvMetadata) -> Detail {
    Detail {
        env,
        extra: vec![
            ("writable", "12.0 MiB".into()),
            (
                "layers",
                "301.5 MiB in 3 layers (1 shared with other environments)".into(),
            ),
            (
                "exclusive",
                "42.0 MiB (what destroy and then gc would free)".into(),
            ),
            (
                "desktop_entry",
                "/home/me/.local/share/applications/karapace-x-\u{1b}[2Jxeyes.desktop".into(),
            ),
        ],
        snapshots: Ok(vec![SnapshotInfo {
            hash: layer("snap1"),
            parent: None,
            restore_hash: layer("snap1"),
            tar_hash: hex("snap1/tar"),
            created_at: Some("2026-12-04T13:35:10Z".into()),
            label: Some("before \u{1b}[8mupgrade".into()),
        }]),
        diff: Ok(Diff {
            added: vec!["etc/motd".into(), "home/me/\u{1b}]0;pwned\u{7}evil".into()],
            modified: vec!["etc/hosts".into()],
            removed: vec!["usr/share/doc/curl".into()],
        }),
        scroll: 0,
    }
}

#[test]
fn the_list_at_80x24() {
    snapshot("list_80x24", &mut app(), 80, 24);
}

#[test]
fn the_list_at_120x30_shows_whole_env_ids() {
    let mut app = app();
    press(&mut app, "j");
    snapshot("list_120x30", &mut app, 120, 30);
}

#[test]
fn a_long_list_scrolls_with_the_selection() {
    let many: Vec<EnvMetadata> = (0..40)
        .map(|i| {
            env(
                &format!("e{i}"),
                Some(&format!("env-{i:02}")),
                EnvState::Built,
                1,
            )
        })
        .collect();
    let mut app = App::new("/s", many);
    press(&mut app, "G");
    snapshot("list_scrolled", &mut app, 80, 24);
}

#[test]
fn search_filters_the_rows_and_counts_them_in_the_title() {
    let mut app = app();
    press(&mut app, "/BUIL");
    snapshot("search_typing", &mut app, 80, 24);
    press(&mut app, "\n");
    snapshot("search_kept", &mut app, 80, 24);
    press(&mut app, "/zzz");
    snapshot("search_nothing", &mut app, 80, 24);
}

#[test]
fn sort_by_state_reversed() {
    let mut app = app();
    press(&mut app, "sS");
    snapshot("sort_state_reversed", &mut app, 80, 24);
}

#[test]
fn the_detail_view_shows_inspect_fields_snapshots_and_an_escaped_diff() {
    let mut app = app();
    let env = envs().remove(1);
    app.show_detail(detail_of(env));
    snapshot("detail_80x24", &mut app, 80, 24);
    press(&mut app, "G");
    snapshot("detail_80x24_end", &mut app, 80, 24);
}

#[test]
fn the_detail_view_shows_read_errors() {
    let mut app = app();
    let mut detail = detail_of(envs().remove(2));
    detail.snapshots = Err("cannot read snapshots: permission denied".into());
    detail.diff = Err("diff: \u{1b}[2Jboom".into());
    app.show_detail(detail);
    snapshot("detail_errors", &mut app, 100, 30);
}

#[test]
fn the_rename_prompt() {
    let mut app = app();
    press(&mut app, "jnnew-api");
    snapshot("rename_prompt", &mut app, 80, 24);
}

#[test]
fn the_destroy_confirmation() {
    let mut app = app();
    press(&mut app, "jjd");
    snapshot("destroy_confirm", &mut app, 80, 24);
}

#[test]
fn the_help_fits_80x24() {
    let mut app = app();
    press(&mut app, "?");
    snapshot("help_80x24", &mut app, 80, 24);
}

#[test]
fn an_empty_store() {
    snapshot("empty", &mut App::new("/s", Vec::new()), 80, 24);
}

#[test]
fn an_error_in_the_status_line_is_escaped() {
    let mut app = app();
    app.set_status(Status::error(
        "error: cannot archive environment 'x\u{1b}[31m': it is running",
    ));
    snapshot("status_error", &mut app, 80, 24);
}

/// Every cell's colours: none but the default when `NO_COLOR` is honoured.
fn colours(buffer: &Buffer) -> Vec<(Color, Color)> {
    buffer
        .content()
        .iter()
        .map(|c| (c.fg, c.bg))
        .filter(|&(fg, bg)| fg != Color::Reset || bg != Color::Reset)
        .collect()
}

#[test]
fn no_color_draws_without_colours_but_still_marks_the_selection() {
    let mut app = app();
    assert!(!colours(&render(&mut app, 80, 24, Theme::COLOR)).is_empty());
    let plain = render(&mut app, 80, 24, Theme::NO_COLOR);
    assert_eq!(colours(&plain), Vec::new());
    let selected_row = 2; // border, header, first row
    assert!(
        plain[(3, selected_row)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED),
        "the selected row is in reverse video"
    );
    app.show_detail(detail_of(envs().remove(0)));
    press(&mut app, "?");
    assert_eq!(
        colours(&render(&mut app, 80, 24, Theme::NO_COLOR)),
        Vec::new()
    );
}

#[test]
fn every_key_of_the_help_is_documented() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/tui.md"))
            .expect("docs/tui.md");
    for (key, what) in view::KEYS {
        assert!(
            doc.contains(&format!("| `{key}` | {what} |")),
            "docs/tui.md lacks the row for {key}: | `{key}` | {what} |"
        );
    }
}

#[test]
fn small_terminals_do_not_panic() {
    let mut app = app();
    for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 10), (80, 24), (300, 100)] {
        render(&mut app, w, h, Theme::COLOR);
        press(&mut app, "?");
        render(&mut app, w, h, Theme::COLOR);
        press(&mut app, "x");
    }
    app.show_detail(detail_of(envs().remove(0)));
    for (w, h) in [(1, 1), (10, 3), (80, 24)] {
        render(&mut app, w, h, Theme::COLOR);
    }
}
