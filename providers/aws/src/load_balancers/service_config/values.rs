//! Reading each annotation by its syntax in the registry ([`a::Syntax`]).

use std::collections::BTreeMap;

use super::Kind;
use crate::load_balancers::annotations::{self as a, Syntax};

/// Comma-separated, each item trimmed, empty items dropped (upstream's list reading).
pub(super) fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `k1=v1,k2=,k3` as upstream reads it: each item trimmed, split at `=`, the first two parts
/// taken as they are (`a=b=c` is `a` → `b`; `k = v` keeps the spaces around `=`).
pub(super) fn map(value: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in value.trim().split(',') {
        let parts: Vec<&str> = item.trim().split('=').collect();
        match parts.as_slice() {
            [key, value, ..] if !key.is_empty() => out.insert(key.to_string(), value.to_string()),
            [key] if !key.is_empty() => out.insert(key.to_string(), String::new()),
            _ => None,
        };
    }
    out
}

/// "a", "a or b", "a, b or c".
fn either(values: &[&str]) -> String {
    match values.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// One annotation's value, read by its [`Syntax`].
#[derive(Debug)]
pub(super) enum Value<'a> {
    /// [`Syntax::Own`], [`Syntax::Text`] and [`Syntax::OneOf`]: as written.
    Text(&'a str),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Bool(bool),
    Int(i32),
}

/// Every annotation of the registry that applies to the load balancer's type, read by its
/// syntax; a value that does not read is an error and is left out (the default applies). Keys
/// of the other type were reported by [`check_keys`] and are not read at all.
pub(super) struct Values<'a> {
    pub(super) read: BTreeMap<&'static str, Value<'a>>,
}

impl<'a> Values<'a> {
    pub(super) fn read(ann: &'a BTreeMap<String, String>, kind: Kind, errors: &mut Vec<String>) -> Self {
        let mut read = BTreeMap::new();
        for annotation in a::REGISTRY.iter().filter(|x| x.applies.to_nlb(kind == Kind::Nlb)) {
            let key = annotation.key;
            let Some(raw) = ann.get(key).map(String::as_str) else { continue };
            let mut fail = |what: String| errors.push(format!("{key}: {what}"));
            let value = match annotation.syntax {
                Syntax::Own => Value::Text(raw),
                Syntax::Text if raw.is_empty() => continue,
                Syntax::Text => Value::Text(raw),
                Syntax::List => Value::List(list(raw)),
                Syntax::Map => Value::Map(map(raw)),
                Syntax::Ids(prefix) => {
                    let ids = list(raw);
                    ids.iter()
                        .filter(|id| !id.starts_with(prefix))
                        .for_each(|id| fail(format!("{id:?} is not a {prefix}… ID")));
                    Value::List(ids)
                }
                Syntax::Ipv4s => {
                    let ips = list(raw);
                    let bad = ips.iter().filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_err());
                    bad.for_each(|ip| fail(format!("{ip:?} is not an IPv4 address")));
                    Value::List(ips)
                }
                Syntax::Bool => match raw {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => Value::Bool(true),
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => Value::Bool(false),
                    _ => {
                        fail(format!("{raw:?} is not true or false"));
                        continue;
                    }
                },
                Syntax::Int(min, max) => match raw.parse::<i32>() {
                    Ok(n) if (min..=max).contains(&n) => Value::Int(n),
                    _ => {
                        fail(format!("{raw:?} is not a whole number from {min} to {max}"));
                        continue;
                    }
                },
                Syntax::OneOf(values) if values.contains(&raw) => Value::Text(raw),
                Syntax::OneOf(values) => {
                    fail(format!("{raw:?} is not {}", either(values)));
                    continue;
                }
            };
            read.insert(key, value);
        }
        Self { read }
    }

    pub(super) fn text(&self, key: &str) -> Option<&'a str> {
        match self.read.get(key) {
            Some(Value::Text(v)) => Some(v),
            _ => None,
        }
    }

    pub(super) fn list(&self, key: &str) -> Option<Vec<String>> {
        match self.read.get(key) {
            Some(Value::List(v)) => Some(v.clone()),
            _ => None,
        }
    }

    pub(super) fn map(&self, key: &str) -> BTreeMap<String, String> {
        match self.read.get(key) {
            Some(Value::Map(v)) => v.clone(),
            _ => BTreeMap::new(),
        }
    }

    pub(super) fn bool(&self, key: &str) -> bool {
        matches!(self.read.get(key), Some(Value::Bool(true)))
    }

    pub(super) fn int(&self, key: &str) -> Option<i32> {
        match self.read.get(key) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }
}
