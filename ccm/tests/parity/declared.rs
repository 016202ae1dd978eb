//! The differences from upstream we mean, as `docs/differences-from-upstream.md` declares
//! them: the rows of its table "What the differential test allows". Every cell is a pattern
//! (`*` matches any text; `(absent)` stands for "no such key"). A difference the comparator
//! finds must match a row; a row that matches nothing is stale and fails the test too, unless
//! its first cell ends with `(sometimes)`: a difference that depends on the order in which
//! Services are reconciled shows in some runs only.

use anyhow::{Context, Result, bail};
use ccm_e2e::lb_state::Difference;

pub const DOC: &str = "docs/differences-from-upstream.md";
const HEADING: &str = "## What the differential test allows";

#[derive(Debug, Clone)]
pub struct Allowance {
    /// The difference's anchor in the document, e.g. `D3`.
    pub id: String,
    /// Shows in some runs only (order-dependent); never stale.
    pub sometimes: bool,
    pub service: String,
    pub key: String,
    pub upstream: String,
    pub ours: String,
}

/// The rows of the table under [`HEADING`].
pub fn load() -> Result<Vec<Allowance>> {
    let path = ccm_e2e::repo_root().join(DOC);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let Some(section) = text.split(HEADING).nth(1) else { bail!("{DOC} has no section {HEADING:?}") };
    let mut out = Vec::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let cells: Vec<String> =
            line.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`').to_string()).collect();
        if cells.len() != 5 || cells[0] == "difference" || cells[0].starts_with("---") {
            continue;
        }
        let id = cells[0].trim_start_matches('[').split(']').next().unwrap_or_default().to_string();
        out.push(Allowance {
            id,
            sometimes: cells[0].ends_with("(sometimes)"),
            service: cells[1].clone(),
            key: cells[2].clone(),
            upstream: cells[3].clone(),
            ours: cells[4].clone(),
        });
    }
    if out.is_empty() {
        bail!("{DOC}: the table under {HEADING:?} has no rows");
    }
    Ok(out)
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

impl Allowance {
    pub fn matches(&self, d: &Difference) -> bool {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        glob(&self.service, &d.service)
            && glob(&self.key, &d.key)
            && glob(&self.upstream, &side(&d.left))
            && glob(&self.ours, &side(&d.right))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("k8s event Warning *", "k8s event Warning AnnotationIgnored"));
        assert!(!glob("k8s event Warning *", "k8s event Normal X"));
        assert!(glob("tg *-<hash> health check", "tg k8s-default-nlocal-<hash> health check"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
    }
}
