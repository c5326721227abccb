//! The text of a desktop entry, escaped per the Desktop Entry Specification so that nothing a
//! hostile environment (or an unusual store path) supplies can add a key, a group or a command.
//!
//! Two layers of escaping apply to `Exec`: each argument is quoted by the rules of the `Exec`
//! key (reserved characters inside double quotes, `"` `` ` `` `$` `\` backslash-escaped, `%`
//! doubled so it is never a field code), then the whole value is escaped as a string value
//! (`\` doubled, newline, tab and carriage return written as `\n`, `\t`, `\r`). Values may not
//! hold other control characters at all: such input is refused, not altered.

/// Characters that oblige an `Exec` argument to be quoted.
const RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// Why a value cannot be written into a desktop entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} holds a control character a desktop entry cannot carry")]
pub struct Unrepresentable {
    pub what: String,
}

/// A string value: escapes `\`, newline, tab and carriage return; refuses other control
/// characters (the specification does not allow them in values).
pub fn string_value(what: &str, value: &str) -> Result<String, Unrepresentable> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                return Err(Unrepresentable {
                    what: what.to_owned(),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One argument of `Exec`, quoted if it needs to be and with `%` doubled.
fn exec_arg(arg: &str) -> String {
    let arg = arg.replace('%', "%%");
    if arg.is_empty() || arg.contains(RESERVED) {
        let mut quoted = String::with_capacity(arg.len() + 2);
        quoted.push('"');
        for c in arg.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        arg
    }
}

/// The `Exec` value for `argv`.
pub fn exec_value(argv: &[String]) -> Result<String, Unrepresentable> {
    let line: Vec<String> = argv.iter().map(|a| exec_arg(a)).collect();
    string_value("the command line", &line.join(" "))
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub comment: String,
    pub exec: Vec<String>,
    pub icon: Option<String>,
    pub env_id: String,
    pub store: String,
}

/// The entry's file text.
pub fn render(entry: &Entry) -> Result<String, Unrepresentable> {
    use std::fmt::Write as _;
    let mut text = String::from("[Desktop Entry]\nType=Application\nVersion=1.5\n");
    // Writing into a String cannot fail.
    let _ = writeln!(text, "Name={}", string_value("the name", &entry.name)?);
    let _ = writeln!(
        text,
        "Comment={}",
        string_value("the comment", &entry.comment)?
    );
    let _ = writeln!(text, "Exec={}", exec_value(&entry.exec)?);
    if let Some(icon) = &entry.icon {
        let _ = writeln!(text, "Icon={}", string_value("the icon path", icon)?);
    }
    text.push_str("Terminal=false\nCategories=Karapace;\n");
    let _ = writeln!(text, "X-Karapace-EnvId={}", entry.env_id);
    let _ = writeln!(
        text,
        "X-Karapace-Store={}",
        string_value("the store path", &entry.store)?
    );
    Ok(text)
}

/// The value of `key` in the `[Desktop Entry]` group of `text`, unescaped, or `None`. Only that
/// group counts (an `[Desktop Action …]` group's `Name` is not the application's).
pub fn read_key(text: &str, key: &str) -> Option<String> {
    let mut in_main = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('[') {
            in_main = line == "[Desktop Entry]";
            continue;
        }
        if !in_main {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim_end() == key
        {
            return Some(unescape(v.trim_start()));
        }
    }
    None
}

/// Undoes string-value escaping (`\s`, `\n`, `\t`, `\r`, `\\`).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            // `\\`, or a lone backslash at the end.
            Some('\\') | None => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an `Exec` value back into arguments as a desktop would: string unescaping, then
    /// the `Exec` quoting rules, then `%%` → `%`.
    fn parse_exec(value: &str) -> Vec<String> {
        let value = unescape(value);
        let mut args = Vec::new();
        let mut cur = String::new();
        let mut chars = value.chars().peekable();
        let mut in_arg = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    in_arg = true;
                    while let Some(q) = chars.next() {
                        match q {
                            '"' => break,
                            '\\' => cur.extend(chars.next()),
                            q => cur.push(q),
                        }
                    }
                }
                ' ' if !cur.is_empty() || in_arg => {
                    args.push(std::mem::take(&mut cur).replace("%%", "%"));
                    in_arg = false;
                }
                ' ' => {}
                c => cur.push(c),
            }
        }
        if !cur.is_empty() || in_arg {
            args.push(cur.replace("%%", "%"));
        }
        args
    }

    #[test]
    fn exec_arguments_survive_every_reserved_character() {
        let argv: Vec<String> = [
            "/usr/bin/karapace",
            "--store",
            "/home/a b/\"q\" $HOME `x` \\ %f ; rm -rf ~ #",
            "exec",
            "0123",
            "--",
            "xeyes",
            "",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let value = exec_value(&argv).unwrap();
        assert!(!value.contains('\n'));
        assert_eq!(parse_exec(&value), argv);
        // No field code survives: every % is doubled.
        assert!(!value.replace("%%", "").contains('%'));
    }

    #[test]
    fn a_newline_cannot_start_a_new_key() {
        let argv = vec!["/s\nExec=evil".to_owned()];
        let value = exec_value(&argv).unwrap();
        assert!(!value.contains('\n'), "{value}");
        assert_eq!(parse_exec(&value), argv);
        let entry = Entry {
            name: "x\nExec=evil\n[Desktop Entry]".into(),
            comment: String::new(),
            exec: argv,
            icon: Some("/i\ncon".into()),
            env_id: "e".into(),
            store: "/s\nX=1".into(),
        };
        let text = render(&entry).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(
            keys,
            [
                "Type",
                "Version",
                "Name",
                "Comment",
                "Exec",
                "Icon",
                "Terminal",
                "Categories",
                "X-Karapace-EnvId",
                "X-Karapace-Store"
            ]
        );
        // The name's "[Desktop Entry]" stays inside its value, never a line of its own.
        assert_eq!(
            text.lines().filter(|l| l.starts_with('[')).count(),
            1,
            "{text}"
        );
        assert_eq!(
            read_key(&text, "Name").as_deref(),
            Some("x\nExec=evil\n[Desktop Entry]")
        );
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(string_value("x", "a\u{1b}]0;t\u{7}").is_err());
        assert!(exec_value(&["a\u{0}b".to_owned()]).is_err());
    }

    #[test]
    fn only_the_main_groups_keys_are_read() {
        let text = "[Desktop Action new]\nName=Wrong\n[Desktop Entry]\nName[de]=Falsch\nName = Right\\sOne\nIcon=xeyes\n";
        assert_eq!(read_key(text, "Name").as_deref(), Some("Right One"));
        assert_eq!(read_key(text, "Icon").as_deref(), Some("xeyes"));
        assert_eq!(read_key(text, "Exec"), None);
    }
}
