//! The terminal UI's state and what each key does to it. Pure: no terminal, no engine. A key
//! either changes the state here or yields an [`Action`] that the event loop carries out through
//! the engine and reports back ([`App::set_envs`], [`App::set_status`], [`App::show_detail`]).
//!
//! Everything shown comes from the store, which hostile environments write into (names are
//! validated, but paths in a diff and error messages are not): the state keeps text as it is,
//! and the view escapes it.

use karapace_store::{Diff, EnvMetadata, EnvState, SnapshotInfo};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::widgets::TableState;

/// The longest rename input kept: names are at most 64 characters; a little more lets the user
/// see the engine's refusal instead of input that silently stops.
const NAME_INPUT_MAX: usize = 80;
/// The longest search input kept (every searchable field is at most 64 characters).
const SEARCH_INPUT_MAX: usize = 80;
/// Rows (or lines) a page key moves.
const PAGE: usize = 10;

/// The column the table is sorted by; `s` cycles through them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    State,
    ShortId,
}

impl SortKey {
    fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::State,
            SortKey::State => SortKey::ShortId,
            SortKey::ShortId => SortKey::Name,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::State => "state",
            SortKey::ShortId => "short_id",
        }
    }
}

/// The environment an action applies to: its full id (what the engine is asked with, so a name
/// or a prefix can never designate another environment meanwhile) and how messages call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub env_id: String,
    pub label: String,
}

impl Target {
    fn of(env: &EnvMetadata) -> Target {
        Target {
            env_id: env.env_id.to_string(),
            label: env.name.clone().unwrap_or_else(|| env.short_id.clone()),
        }
    }
}

/// What the event loop must do through the engine after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Refresh,
    OpenDetail(Target),
    Destroy(Target),
    Freeze(Target),
    Archive(Target),
    Commit(Target),
    Rename(Target, String),
    Enter(Target),
}

/// The main view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    List,
    Detail(Box<Detail>),
}

/// One environment in full: the fields of `inspect`, its snapshots and its drift. A part that
/// could not be read carries the error's message instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub env: EnvMetadata,
    /// `inspect`'s disk-usage and desktop-entry lines (empty when the store could not say).
    pub extra: Vec<(&'static str, String)>,
    pub snapshots: Result<Vec<SnapshotInfo>, String>,
    pub diff: Result<Diff, String>,
    /// The first line shown (the view clamps it to the content).
    pub scroll: usize,
}

/// A line of input or a question at the bottom of the screen, or the help over everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    None,
    /// Typing edits the filter live; Esc puts `previous` back.
    Search {
        previous: String,
    },
    Rename {
        target: Target,
        input: String,
    },
    ConfirmDestroy {
        target: Target,
    },
    Help,
}

/// Whether the status line reports a success or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

/// The result of the last action, shown on the bottom line until the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    pub text: String,
}

impl Status {
    pub fn info(text: impl Into<String>) -> Status {
        Status {
            kind: StatusKind::Info,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Status {
        Status {
            kind: StatusKind::Error,
            text: text.into(),
        }
    }
}

/// The whole state of the terminal UI.
#[derive(Debug)]
pub struct App {
    store: String,
    envs: Vec<EnvMetadata>,
    /// Indices into `envs` of the rows shown, in display order.
    visible: Vec<usize>,
    filter: String,
    sort: SortKey,
    reverse: bool,
    screen: Screen,
    prompt: Prompt,
    status: Option<Status>,
    /// Selection and scroll offset of the table (the view keeps the selection in sight).
    pub table: TableState,
}

impl App {
    /// A UI over `envs` of the store at `store` (shown until the first action reports).
    pub fn new(store: impl Into<String>, envs: Vec<EnvMetadata>) -> App {
        let mut app = App {
            store: store.into(),
            envs: Vec::new(),
            visible: Vec::new(),
            filter: String::new(),
            sort: SortKey::Name,
            reverse: false,
            screen: Screen::List,
            prompt: Prompt::None,
            status: None,
            table: TableState::default(),
        };
        app.set_envs(envs);
        app
    }

    pub fn store(&self) -> &str {
        &self.store
    }

    pub fn total(&self) -> usize {
        self.envs.len()
    }

    /// The rows shown, in order.
    pub fn visible(&self) -> impl ExactSizeIterator<Item = &EnvMetadata> {
        self.visible.iter().map(|&i| &self.envs[i])
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    pub fn sort(&self) -> (SortKey, bool) {
        (self.sort, self.reverse)
    }

    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    pub fn screen_mut(&mut self) -> &mut Screen {
        &mut self.screen
    }

    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }

    pub fn set_status(&mut self, status: Status) {
        self.status = Some(status);
    }

    /// The environment with this id, shown or not.
    pub fn env(&self, env_id: &str) -> Option<&EnvMetadata> {
        self.envs.iter().find(|e| e.env_id == env_id)
    }

    /// The highlighted environment, if any row is shown.
    pub fn selected(&self) -> Option<&EnvMetadata> {
        let row = self.table.selected()?;
        self.visible.get(row).map(|&i| &self.envs[i])
    }

    /// Replaces the environments (a refresh). The same environment stays selected when it is
    /// still shown; otherwise the selection stays at the same row.
    pub fn set_envs(&mut self, envs: Vec<EnvMetadata>) {
        let keep = self.selected().map(|e| e.env_id.clone());
        self.envs = envs;
        self.relayout(keep.as_deref());
        // A detail view of an environment that is gone has nothing left to show.
        if let Screen::Detail(d) = &self.screen
            && !self.envs.iter().any(|e| e.env_id == d.env.env_id)
        {
            let gone = label_of(&d.env);
            self.screen = Screen::List;
            self.status = Some(Status::info(format!("environment {gone} no longer exists")));
        }
    }

    /// Opens (or refreshes) the detail view. The scroll position is kept when it shows the same
    /// environment again.
    pub fn show_detail(&mut self, mut detail: Detail) {
        if let Screen::Detail(old) = &self.screen
            && old.env.env_id == detail.env.env_id
        {
            detail.scroll = old.scroll;
        }
        self.screen = Screen::Detail(Box::new(detail));
    }

    /// Closes the detail view.
    pub fn show_list(&mut self) {
        self.screen = Screen::List;
    }

    /// The environment of the detail view, when it is open.
    pub fn detail_target(&self) -> Option<Target> {
        match &self.screen {
            Screen::Detail(d) => Some(Target::of(&d.env)),
            Screen::List => None,
        }
    }

    /// Applies one key; returns what the engine must do, if anything.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        // Key repeats arrive as presses; releases (only with the kitty protocol) are ignored.
        if key.kind == KeyEventKind::Release {
            return None;
        }
        // Raw mode turns Ctrl-C into a key: it quits from anywhere, as a terminal user expects.
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        match std::mem::replace(&mut self.prompt, Prompt::None) {
            Prompt::None => self.handle_view_key(key),
            Prompt::Help => None,
            Prompt::Search { previous } => {
                self.handle_search_key(key, previous);
                None
            }
            Prompt::Rename { target, input } => self.handle_rename_key(key, target, input),
            Prompt::ConfirmDestroy { target } => {
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    Some(Action::Destroy(target))
                } else {
                    self.status = Some(Status::info(format!(
                        "destroy of {} cancelled",
                        target.label
                    )));
                    None
                }
            }
        }
    }

    fn handle_view_key(&mut self, key: KeyEvent) -> Option<Action> {
        // Ctrl and Alt chords are not these keys (Ctrl-D is not `d`).
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return None;
        }
        // Keys of both views: they act on the selected environment (the one the detail view
        // shows, when it is open).
        let target = self
            .detail_target()
            .or_else(|| self.selected().map(Target::of));
        let need = |status: &mut Option<Status>| {
            *status = Some(Status::error("no environment selected"));
        };
        match key.code {
            KeyCode::Char('q') => return Some(Action::Quit),
            KeyCode::Char('?') => self.prompt = Prompt::Help,
            KeyCode::Char('r') => return Some(Action::Refresh),
            KeyCode::Char(c @ ('d' | 'f' | 'a' | 'c' | 'e' | 'n')) => {
                let Some(target) = target else {
                    need(&mut self.status);
                    return None;
                };
                match c {
                    'd' => self.prompt = Prompt::ConfirmDestroy { target },
                    'n' => {
                        self.prompt = Prompt::Rename {
                            target,
                            input: String::new(),
                        };
                    }
                    'f' => return Some(Action::Freeze(target)),
                    'a' => return Some(Action::Archive(target)),
                    'c' => return Some(Action::Commit(target)),
                    _ => return Some(Action::Enter(target)),
                }
            }
            _ if matches!(self.screen, Screen::Detail(_)) => self.handle_detail_key(key),
            _ => return self.handle_list_key(key, target),
        }
        None
    }

    fn handle_list_key(&mut self, key: KeyEvent, target: Option<Target>) -> Option<Action> {
        let last = self.visible.len().saturating_sub(1);
        let row = self.table.selected().unwrap_or(0);
        match key.code {
            KeyCode::Char('j') | KeyCode::Down => self.select(row.saturating_add(1).min(last)),
            KeyCode::Char('k') | KeyCode::Up => self.select(row.saturating_sub(1)),
            KeyCode::Char('g') | KeyCode::Home => self.select(0),
            KeyCode::Char('G') | KeyCode::End => self.select(last),
            KeyCode::PageDown => self.select(row.saturating_add(PAGE).min(last)),
            KeyCode::PageUp => self.select(row.saturating_sub(PAGE)),
            KeyCode::Enter => match target {
                Some(t) => return Some(Action::OpenDetail(t)),
                None => self.status = Some(Status::error("no environment selected")),
            },
            KeyCode::Char('/') => {
                self.prompt = Prompt::Search {
                    previous: self.filter.clone(),
                };
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.relayout_keeping_selection();
            }
            KeyCode::Char('S') => {
                self.reverse = !self.reverse;
                self.relayout_keeping_selection();
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.relayout_keeping_selection();
            }
            _ => {}
        }
        None
    }

    fn handle_detail_key(&mut self, key: KeyEvent) {
        let Screen::Detail(detail) = &mut self.screen else {
            return;
        };
        match key.code {
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Enter | KeyCode::Char('h') => {
                self.screen = Screen::List;
            }
            KeyCode::Char('j') | KeyCode::Down => detail.scroll = detail.scroll.saturating_add(1),
            KeyCode::Char('k') | KeyCode::Up => detail.scroll = detail.scroll.saturating_sub(1),
            KeyCode::PageDown | KeyCode::Char(' ') => {
                detail.scroll = detail.scroll.saturating_add(PAGE);
            }
            KeyCode::PageUp => detail.scroll = detail.scroll.saturating_sub(PAGE),
            KeyCode::Char('g') | KeyCode::Home => detail.scroll = 0,
            // The view clamps it to the last page.
            KeyCode::Char('G') | KeyCode::End => detail.scroll = usize::MAX,
            _ => {}
        }
    }

    fn handle_search_key(&mut self, key: KeyEvent, previous: String) {
        match key.code {
            KeyCode::Enter => return,
            KeyCode::Esc => {
                self.filter = previous;
                self.relayout_keeping_selection();
                return;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.clear();
            }
            KeyCode::Char(c) if accepts(c, key.modifiers, &self.filter, SEARCH_INPUT_MAX) => {
                self.filter.push(c);
            }
            _ => {}
        }
        self.relayout_keeping_selection();
        self.prompt = Prompt::Search { previous };
    }

    fn handle_rename_key(
        &mut self,
        key: KeyEvent,
        target: Target,
        mut input: String,
    ) -> Option<Action> {
        match key.code {
            KeyCode::Enter => return Some(Action::Rename(target, input)),
            KeyCode::Esc => {
                self.status = Some(Status::info(format!(
                    "rename of {} cancelled",
                    target.label
                )));
                return None;
            }
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => input.clear(),
            KeyCode::Char(c) if accepts(c, key.modifiers, &input, NAME_INPUT_MAX) => {
                input.push(c);
            }
            _ => {}
        }
        self.prompt = Prompt::Rename { target, input };
        None
    }

    fn select(&mut self, row: usize) {
        self.table.select((!self.visible.is_empty()).then_some(row));
    }

    fn relayout_keeping_selection(&mut self) {
        let keep = self.selected().map(|e| e.env_id.clone());
        self.relayout(keep.as_deref());
    }

    /// Recomputes the rows shown (filter, then sort) and puts the selection on `keep` when it is
    /// among them, else on the nearest row.
    fn relayout(&mut self, keep: Option<&str>) {
        let needle = self.filter.to_lowercase();
        let mut visible: Vec<usize> = (0..self.envs.len())
            .filter(|&i| matches(&self.envs[i], &needle))
            .collect();
        let (envs, key) = (&self.envs, self.sort);
        visible.sort_by(|&a, &b| compare(&envs[a], &envs[b], key));
        if self.reverse {
            visible.reverse();
        }
        self.visible = visible;
        let row = keep
            .and_then(|id| self.visible.iter().position(|&i| self.envs[i].env_id == id))
            .unwrap_or_else(|| {
                self.table
                    .selected()
                    .unwrap_or(0)
                    .min(self.visible.len().saturating_sub(1))
            });
        self.select(row);
    }
}

/// What messages call an environment: its name, else its short id.
pub fn label_of(env: &EnvMetadata) -> String {
    env.name.clone().unwrap_or_else(|| env.short_id.clone())
}

/// Whether a typed character goes into a line of input: printable, typed without Ctrl or Alt
/// (those are commands, not text), and within the length limit.
fn accepts(c: char, modifiers: KeyModifiers, input: &str, max: usize) -> bool {
    !c.is_control()
        && !modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        && input.chars().count() < max
}

/// The search: a case-insensitive substring of the short id, the env id, the name or the state.
fn matches(env: &EnvMetadata, needle_lowercase: &str) -> bool {
    if needle_lowercase.is_empty() {
        return true;
    }
    let name = env.name.as_deref().unwrap_or("").to_lowercase();
    [
        env.short_id.to_lowercase().as_str(),
        env.env_id.to_lowercase().as_str(),
        name.as_str(),
        &env.state.to_string(),
    ]
    .iter()
    .any(|field| field.contains(needle_lowercase))
}

/// Table order for `key`: names alphabetically with unnamed environments last, states in their
/// lifecycle order; ties by name, then short id, so the order never depends on the store's.
fn compare(a: &EnvMetadata, b: &EnvMetadata, key: SortKey) -> std::cmp::Ordering {
    let by_name = || match (&a.name, &b.name) {
        (Some(x), Some(y)) => x.to_lowercase().cmp(&y.to_lowercase()).then(x.cmp(y)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    };
    let by_id = || a.short_id.cmp(&b.short_id).then(a.env_id.cmp(&b.env_id));
    match key {
        SortKey::Name => by_name().then_with(by_id),
        SortKey::State => state_rank(a.state)
            .cmp(&state_rank(b.state))
            .then_with(by_name)
            .then_with(by_id),
        SortKey::ShortId => by_id(),
    }
}

fn state_rank(state: EnvState) -> u8 {
    match state {
        EnvState::Defined => 0,
        EnvState::Built => 1,
        EnvState::Running => 2,
        EnvState::Frozen => 3,
        EnvState::Archived => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: char, name: Option<&str>, state: EnvState) -> EnvMetadata {
        let env_id: String = std::iter::repeat_n(id, 64).collect();
        EnvMetadata {
            short_id: env_id[..12].to_owned(),
            env_id: env_id.parse().unwrap(),
            name: name.map(str::to_owned),
            state,
            manifest_hash: String::new(),
            base_layer: "0".repeat(64).parse().unwrap(),
            dependency_layers: Vec::new(),
            policy_layer: None,
            created_at: String::new(),
            updated_at: String::new(),
            checksum: String::new(),
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn app() -> App {
        App::new(
            "/store",
            vec![
                env('a', Some("web"), EnvState::Built),
                env('b', Some("Api"), EnvState::Frozen),
                env('c', None, EnvState::Running),
                env('d', Some("db"), EnvState::Archived),
            ],
        )
    }

    fn names(app: &App) -> Vec<String> {
        app.visible().map(label_of).collect()
    }

    #[test]
    fn rows_are_sorted_by_name_then_state_then_short_id_and_reversed() {
        let mut app = app();
        assert_eq!(names(&app), ["Api", "db", "web", "cccccccccccc"]);
        app.handle_key(ch('s'));
        assert_eq!(app.sort(), (SortKey::State, false));
        assert_eq!(names(&app), ["web", "cccccccccccc", "Api", "db"]);
        app.handle_key(ch('s'));
        assert_eq!(names(&app), ["web", "Api", "cccccccccccc", "db"]);
        app.handle_key(ch('S'));
        assert_eq!(names(&app), ["db", "cccccccccccc", "Api", "web"]);
        app.handle_key(ch('s'));
        assert_eq!(app.sort(), (SortKey::Name, true));
    }

    #[test]
    fn movement_keys_stop_at_the_ends() {
        let mut app = app();
        assert_eq!(app.selected().map(label_of).as_deref(), Some("Api"));
        app.handle_key(ch('k'));
        assert_eq!(app.table.selected(), Some(0));
        app.handle_key(ch('j'));
        app.handle_key(key(KeyCode::Down));
        assert_eq!(app.table.selected(), Some(2));
        app.handle_key(ch('G'));
        app.handle_key(ch('j'));
        assert_eq!(app.table.selected(), Some(3));
        app.handle_key(key(KeyCode::Up));
        assert_eq!(app.table.selected(), Some(2));
        app.handle_key(key(KeyCode::Home));
        assert_eq!(app.table.selected(), Some(0));
        app.handle_key(key(KeyCode::End));
        assert_eq!(app.table.selected(), Some(3));
        app.handle_key(ch('g'));
        assert_eq!(app.table.selected(), Some(0));
    }

    #[test]
    fn search_matches_any_field_case_insensitively_and_esc_restores_the_filter() {
        let mut app = app();
        for c in "API".chars() {
            app.handle_key(ch('/'));
            app.handle_key(ch(c));
            app.handle_key(key(KeyCode::Enter));
        }
        assert_eq!(names(&app), ["Api"]);
        app.handle_key(ch('/'));
        app.handle_key(key(KeyCode::Backspace));
        app.handle_key(key(KeyCode::Backspace));
        app.handle_key(key(KeyCode::Backspace));
        for c in "RUN".chars() {
            app.handle_key(ch(c));
        }
        assert_eq!(names(&app), ["cccccccccccc"], "state matches");
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(app.filter(), "API");
        assert_eq!(names(&app), ["Api"]);
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(app.filter(), "");
        app.handle_key(ch('/'));
        for c in "dddd".chars() {
            app.handle_key(ch(c));
        }
        assert_eq!(names(&app), ["db"], "env_id matches");
    }

    #[test]
    fn the_selection_follows_its_environment_through_sorting_and_refresh() {
        let mut app = app();
        app.handle_key(ch('j'));
        app.handle_key(ch('j'));
        assert_eq!(app.selected().map(label_of).as_deref(), Some("web"));
        app.handle_key(ch('S'));
        assert_eq!(app.selected().map(label_of).as_deref(), Some("web"));
        let mut envs: Vec<EnvMetadata> = app.visible().cloned().collect();
        envs.retain(|e| e.name.as_deref() != Some("web"));
        app.set_envs(envs);
        assert!(app.selected().is_some(), "a row stays selected");
        app.set_envs(Vec::new());
        assert_eq!(app.selected(), None);
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert_eq!(app.handle_key(ch('f')), None);
        assert_eq!(
            app.status().map(|s| s.kind),
            Some(StatusKind::Error),
            "no environment selected"
        );
    }

    #[test]
    fn destroy_needs_a_y() {
        let mut app = app();
        let api = Target::of(app.selected().unwrap());
        assert_eq!(app.handle_key(ch('d')), None);
        assert_eq!(app.handle_key(ch('n')), None);
        assert_eq!(app.status().unwrap().text, "destroy of Api cancelled");
        assert_eq!(app.handle_key(ch('d')), None);
        assert_eq!(app.handle_key(ch('y')), Some(Action::Destroy(api)));
        assert_eq!(app.prompt(), &Prompt::None);
    }

    #[test]
    fn rename_takes_text_until_enter_and_esc_cancels() {
        let mut app = app();
        let api = Target::of(app.selected().unwrap());
        app.handle_key(ch('n'));
        for c in "new-qx".chars() {
            app.handle_key(ch(c));
        }
        app.handle_key(key(KeyCode::Backspace));
        // Typed keys are text here, not commands.
        assert_eq!(
            app.prompt(),
            &Prompt::Rename {
                target: api.clone(),
                input: "new-q".into()
            }
        );
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::Rename(api, "new-q".into()))
        );
        app.handle_key(ch('n'));
        app.handle_key(ch('x'));
        assert_eq!(app.handle_key(key(KeyCode::Esc)), None);
        assert_eq!(app.prompt(), &Prompt::None);
        assert_eq!(app.status().unwrap().text, "rename of Api cancelled");
    }

    #[test]
    fn actions_name_the_selected_environment_by_its_full_id() {
        let mut app = app();
        let t = Target {
            env_id: "b".repeat(64),
            label: "Api".into(),
        };
        assert_eq!(app.handle_key(ch('f')), Some(Action::Freeze(t.clone())));
        assert_eq!(app.handle_key(ch('a')), Some(Action::Archive(t.clone())));
        assert_eq!(app.handle_key(ch('c')), Some(Action::Commit(t.clone())));
        assert_eq!(app.handle_key(ch('e')), Some(Action::Enter(t.clone())));
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::OpenDetail(t))
        );
        assert_eq!(app.handle_key(ch('r')), Some(Action::Refresh));
        assert_eq!(app.handle_key(ch('q')), Some(Action::Quit));
        assert_eq!(
            app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }

    #[test]
    fn help_closes_on_any_key_and_q_there_does_not_quit() {
        let mut app = app();
        app.handle_key(ch('?'));
        assert_eq!(app.prompt(), &Prompt::Help);
        assert_eq!(app.handle_key(ch('q')), None);
        assert_eq!(app.prompt(), &Prompt::None);
    }

    #[test]
    fn the_detail_view_scrolls_goes_back_and_closes_when_its_environment_is_gone() {
        let mut app = app();
        let env = app.selected().unwrap().clone();
        app.show_detail(Detail {
            env: env.clone(),
            extra: Vec::new(),
            snapshots: Ok(Vec::new()),
            diff: Ok(Diff::default()),
            scroll: 0,
        });
        app.handle_key(ch('j'));
        app.handle_key(ch('j'));
        let scroll = |app: &App| match app.screen() {
            Screen::Detail(d) => d.scroll,
            Screen::List => panic!("not in the detail view"),
        };
        assert_eq!(scroll(&app), 2);
        // A refresh of the same environment keeps the position.
        app.show_detail(Detail {
            env: env.clone(),
            extra: Vec::new(),
            snapshots: Ok(Vec::new()),
            diff: Err("gone".into()),
            scroll: 0,
        });
        assert_eq!(scroll(&app), 2);
        assert_eq!(
            app.handle_key(ch('c')),
            Some(Action::Commit(Target::of(&env)))
        );
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(app.screen(), &Screen::List);
        app.show_detail(Detail {
            env: env.clone(),
            extra: Vec::new(),
            snapshots: Ok(Vec::new()),
            diff: Ok(Diff::default()),
            scroll: 0,
        });
        let others: Vec<EnvMetadata> = app
            .visible()
            .filter(|e| e.env_id != env.env_id)
            .cloned()
            .collect();
        app.set_envs(others);
        assert_eq!(app.screen(), &Screen::List);
        assert_eq!(
            app.status().unwrap().text,
            "environment Api no longer exists"
        );
    }

    #[test]
    fn control_keys_and_overlong_input_are_not_text() {
        let mut app = app();
        app.handle_key(ch('n'));
        app.handle_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::ALT));
        app.handle_key(ch('\u{1b}'));
        for _ in 0..200 {
            app.handle_key(ch('z'));
        }
        match app.prompt() {
            Prompt::Rename { input, .. } => assert_eq!(input, &"z".repeat(NAME_INPUT_MAX)),
            other => panic!("{other:?}"),
        }
    }
}
