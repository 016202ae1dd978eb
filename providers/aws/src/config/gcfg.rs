//! A reader for git-config-style INI (`gcfg`, the format of upstream's `cloud.conf`) that keeps
//! line numbers, so every problem can be reported with its place.
//!
//! Sections are `[Name]` or `[Name "subsection"]`; names and keys are case-insensitive;
//! values may be double-quoted (with `\"`, `\\`, `\n`, `\t` escapes); `;` and `#` start a
//! comment outside quotes; a key without `=` means `true`; a key may repeat.

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    /// As written (for messages); compare with `eq_ignore_ascii_case`.
    pub key: String,
    /// `None` for a bare key (gcfg's implicit `true`).
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub line: usize,
    pub name: String,
    pub subsection: Option<String>,
    pub entries: Vec<Entry>,
}

/// Parses `text` into sections; syntax errors are returned all together, with line numbers.
pub fn parse(text: &str) -> (Vec<Section>, Vec<String>) {
    let mut sections: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            match parse_header(rest) {
                Ok((name, subsection)) => sections.push(Section { line, name, subsection, entries: Vec::new() }),
                Err(msg) => errors.push(format!("line {line}: {msg}")),
            }
            continue;
        }
        let Some(section) = sections.last_mut() else {
            errors.push(format!("line {line}: `{trimmed}` is outside any [section]"));
            continue;
        };
        let (key, value) = match trimmed.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (strip_comment(trimmed).trim(), None),
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            errors.push(format!("line {line}: `{key}` is not a valid key name"));
            continue;
        }
        let value = match value.map(parse_value) {
            Some(Ok(v)) => Some(v),
            Some(Err(msg)) => {
                errors.push(format!("line {line}: {key}: {msg}"));
                continue;
            }
            None => None,
        };
        section.entries.push(Entry { line, key: key.to_string(), value });
    }
    (sections, errors)
}

fn strip_comment(s: &str) -> &str {
    s.split([';', '#']).next().unwrap_or("")
}

fn parse_header(rest: &str) -> Result<(String, Option<String>), String> {
    let Some(end) = rest.rfind(']') else { return Err("section header without `]`".into()) };
    if !strip_comment(&rest[end + 1..]).trim().is_empty() {
        return Err("text after the section header".into());
    }
    let inner = rest[..end].trim();
    match inner.split_once(char::is_whitespace) {
        None => Ok((inner.to_string(), None)),
        Some((name, sub)) => {
            let sub = sub.trim();
            let quoted = sub.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
            match quoted {
                Some(sub) => Ok((name.to_string(), Some(sub.replace("\\\"", "\"").replace("\\\\", "\\")))),
                None => Err(format!("subsection name {sub} must be in double quotes")),
            }
        }
    }
}

fn parse_value(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = raw.trim().chars();
    let mut pending_space = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            ';' | '#' if !quoted => break,
            '\\' => {
                let escaped = match chars.next() {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some(other) => return Err(format!("unknown escape \\{other}")),
                    None => return Err("a trailing backslash (line continuation is not supported)".into()),
                };
                out.push_str(&pending_space);
                pending_space.clear();
                out.push(escaped);
            }
            c if c.is_whitespace() && !quoted => pending_space.push(c),
            c => {
                out.push_str(&pending_space);
                pending_space.clear();
                out.push(c);
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    Ok(out)
}

/// gcfg's booleans; a bare key (no value) is true.
pub fn parse_bool(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.to_ascii_lowercase()) {
        None => Ok(true),
        Some(v) => match v.as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            _ => Err(format!("{v:?} is not a boolean (true/false, yes/no, on/off, 1/0)")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_subsections_quotes_comments_and_bare_keys() {
        let text = "; comment\n[Global]\nZone = us-east-1a ; trailing\nVPC = \"vpc-1 ; not a comment\"\n\
                    DisableSecurityGroupIngress\n[ServiceOverride \"1\"]\nService = Elastic Load Balancing\n";
        let (sections, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(sections.len(), 2);
        let global = &sections[0];
        assert_eq!(global.entries[0], Entry { line: 3, key: "Zone".into(), value: Some("us-east-1a".into()) });
        assert_eq!(global.entries[1].value.as_deref(), Some("vpc-1 ; not a comment"));
        assert_eq!(global.entries[2].value, None);
        assert_eq!(sections[1].subsection.as_deref(), Some("1"));
        assert_eq!(sections[1].entries[0].value.as_deref(), Some("Elastic Load Balancing"), "inner spaces kept");
    }

    #[test]
    fn syntax_errors_are_all_reported_with_lines() {
        let (_, errors) = parse("Zone = x\n[Global\n[Global]\nbad key = 1\nV = \"open\n[S unquoted]\n");
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("line 1:"));
        assert!(errors[4].starts_with("line 6:"));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(None), Ok(true));
        assert_eq!(parse_bool(Some("Yes")), Ok(true));
        assert_eq!(parse_bool(Some("off")), Ok(false));
        assert!(parse_bool(Some("maybe")).is_err());
    }
}
