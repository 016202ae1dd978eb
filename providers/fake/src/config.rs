//! The fake cloud's configuration file (`--cloud-config` with `--cloud-provider=fake`).
//!
//! ```ini
//! [Global]
//! Zone = fake-zone-a
//! Region = fake-region
//! InstanceType = fake.large
//! MissingInstances = node-a, node-b   ; Nodes whose instance does not exist
//! StoppedInstances = node-c           ; Nodes whose instance is stopped
//! StrictInstances = false             ; true: only listed/added instances exist
//! Routes = true                       ; offer the routes capability
//! PanicOnNode = node-x                ; asking about this Node's instance panics (a bug)...
//! PanicOnceFile = /tmp/panicked       ; ...once: only while this file does not exist yet
//! ```
//!
//! Unknown keys and bad values are errors, reported all at once.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    pub zone: String,
    pub region: String,
    pub instance_type: String,
    pub missing_instances: Vec<String>,
    pub stopped_instances: Vec<String>,
    pub strict_instances: bool,
    pub routes: bool,
    /// Asking about this Node's instance panics, to test what a bug in a reconcile does.
    pub panic_on_node: Option<String>,
    /// With `panic_on_node`: panic only when this file does not exist, and create it, so of
    /// several processes only the first panics.
    pub panic_once_file: Option<std::path::PathBuf>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            zone: "fake-zone-a".into(),
            region: "fake-region".into(),
            instance_type: "fake.large".into(),
            missing_instances: Vec::new(),
            stopped_instances: Vec::new(),
            strict_instances: false,
            routes: true,
            panic_on_node: None,
            panic_once_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fake cloud config:\n{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl FakeConfig {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let mut problems = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split([';', '#']).next().unwrap_or("").trim();
            if line.is_empty() || line.eq_ignore_ascii_case("[global]") {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                problems.push(format!("line {}: expected `key = value` or [Global], got {raw:?}", n + 1));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            let mut flag = |target: &mut bool| match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => *target = true,
                "false" | "no" | "off" | "0" => *target = false,
                _ => problems.push(format!("line {}: {key}: {value:?} is not a boolean", n + 1)),
            };
            match key.to_ascii_lowercase().as_str() {
                "zone" => config.zone = value.into(),
                "region" => config.region = value.into(),
                "instancetype" => config.instance_type = value.into(),
                "missinginstances" => config.missing_instances = list(),
                "stoppedinstances" => config.stopped_instances = list(),
                "strictinstances" => flag(&mut config.strict_instances),
                "routes" => flag(&mut config.routes),
                "paniconnode" => config.panic_on_node = Some(value.into()),
                "paniconcefile" => config.panic_once_file = Some(value.into()),
                _ => problems.push(format!("line {}: unknown key {key:?}", n + 1)),
            }
        }
        if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let config = FakeConfig::parse(
            "[Global]\nZone = z1\nRegion=r1\nInstanceType = t.big\nMissingInstances = a, b\nStoppedInstances = c\n\
             StrictInstances = yes ; comment\nRoutes = off\n",
        )
        .unwrap();
        assert_eq!(config.zone, "z1");
        assert_eq!(config.missing_instances, ["a", "b"]);
        assert_eq!(config.stopped_instances, ["c"]);
        assert!(config.strict_instances);
        assert!(!config.routes);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = FakeConfig::parse("Zone = z\nColour = blue\nRoutes = maybe\nnonsense\n").unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.problems[0].contains("line 2") && err.problems[0].contains("Colour"));
    }
}
