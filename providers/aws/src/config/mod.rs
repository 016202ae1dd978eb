//! The cloud-config file (`--cloud-config`), with upstream's keys and semantics.
//!
//! Unlike upstream, which ignores what it does not know, every unknown key, unknown section,
//! bad value and contradictory combination is reported, with its line, all at once, and the
//! provider is not built. Keys that older upstream versions accepted and later dropped are
//! accepted with a warning naming them, so existing files keep working.

mod gcfg;

use std::fmt;

/// A key that an older upstream accepted and a later one dropped: accepted with a warning.
const RETIRED_GLOBAL_KEYS: [(&str, &str); 1] =
    [("DisableStrictZoneCheck", "removed upstream; zones are always checked against the region")];

/// The services a `[ServiceOverride]` can redirect, by the SDK-for-Go-v2 service ID that
/// upstream matches exactly.
pub const OVERRIDE_SERVICES: [&str; 5] =
    ["EC2", "Elastic Load Balancing", "Elastic Load Balancing v2", "KMS", "ec2imds"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpFamily {
    #[default]
    V4,
    V6,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HealthProbeMode {
    /// Health-check each Service's own node port (upstream's default).
    #[default]
    ServiceNodePort,
    /// `externalTrafficPolicy: Cluster` Services health-check kube-proxy on every node.
    Shared,
}

/// `[Global]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub zone: Option<String>,
    pub region: Option<String>,
    pub vpc: Option<String>,
    pub subnet_id: Option<String>,
    pub route_table_id: Option<String>,
    pub role_arn: Option<String>,
    pub source_arn: Option<String>,
    pub kubernetes_cluster_tag: Option<String>,
    pub kubernetes_cluster_id: Option<String>,
    pub disable_security_group_ingress: bool,
    pub elb_security_group: Option<String>,
    pub node_ip_families: Vec<IpFamily>,
    pub health_probe_mode: HealthProbeMode,
    pub shared_health_probe_port: u16,
    pub shared_health_probe_path: String,
    pub supported_topology_instance_type_pattern: Option<String>,
    pub nlb_security_group_managed: bool,
    /// Inbound rules AWS allows per security group (its "Inbound or outbound rules per security
    /// group" quota): a load balancer that would take a group past it fails before any write.
    /// Not an upstream key (upstream ignores unknown keys, so a file with it still works there).
    pub security_group_rule_quota: u32,
    /// Every managed NLB also carries one shared backend group, which the Nodes' groups admit
    /// once (one rule for all NLBs instead of rules per port, range and subnet for each). Needs
    /// `NLBSecurityGroupMode = Managed`. Not an upstream key.
    pub nlb_backend_security_group: bool,
}

/// AWS's default "Inbound or outbound rules per security group" quota.
pub const DEFAULT_RULE_QUOTA: u32 = 60;

impl Default for Global {
    fn default() -> Self {
        Self {
            zone: None,
            region: None,
            vpc: None,
            subnet_id: None,
            route_table_id: None,
            role_arn: None,
            source_arn: None,
            kubernetes_cluster_tag: None,
            kubernetes_cluster_id: None,
            disable_security_group_ingress: false,
            elb_security_group: None,
            node_ip_families: vec![IpFamily::V4],
            health_probe_mode: HealthProbeMode::ServiceNodePort,
            shared_health_probe_port: 10256,
            shared_health_probe_path: "/healthz".into(),
            supported_topology_instance_type_pattern: None,
            nlb_security_group_managed: false,
            security_group_rule_quota: DEFAULT_RULE_QUOTA,
            nlb_backend_security_group: false,
        }
    }
}

/// `[ServiceOverride "<id>"]`: send one service's calls to another endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOverride {
    pub id: String,
    pub service: String,
    pub region: String,
    pub url: String,
    pub signing_region: String,
    pub signing_name: Option<String>,
    pub signing_method: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudConfig {
    pub global: Global,
    pub overrides: Vec<ServiceOverride>,
    /// Retired keys found, for a startup warning.
    pub warnings: Vec<String>,
}

/// Every problem in a cloud-config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cloud-config ({} problem{}):", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl CloudConfig {
    /// The region: derived from `Zone` when set (upstream: Zone wins over Region), else `Region`.
    pub fn region(&self) -> Option<String> {
        match &self.global.zone {
            Some(zone) if !zone.is_empty() => Some(region_of_zone(zone)),
            _ => self.global.region.clone().filter(|r| !r.is_empty()),
        }
    }

    /// The configured cluster ID (`KubernetesClusterID`, else the legacy `KubernetesClusterTag`).
    pub fn cluster_id(&self) -> Option<String> {
        self.global.kubernetes_cluster_id.clone().or_else(|| self.global.kubernetes_cluster_tag.clone())
    }

    /// Upstream's "control plane outside AWS" mode: no IMDS needed.
    pub fn off_aws(&self) -> bool {
        self.global.vpc.is_some()
            && (self.global.subnet_id.is_some() || self.global.role_arn.is_some())
            && self.cluster_id().is_some()
    }

    /// The endpoint override for `service` (an SDK-v2 service ID) in `region`.
    pub fn override_for(&self, service: &str, region: &str) -> Option<&ServiceOverride> {
        self.overrides.iter().find(|o| o.service == service && (service == "ec2imds" || o.region == region))
    }

    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let (sections, mut errors) = gcfg::parse(text);
        let mut config = CloudConfig::default();
        let mut seen_global = false;
        let mut families_set = false;
        for section in sections {
            if section.name.eq_ignore_ascii_case("Global") && section.subsection.is_none() {
                if seen_global {
                    errors.push(format!("line {}: a second [Global] section", section.line));
                }
                seen_global = true;
                for entry in &section.entries {
                    parse_global(&mut config, entry, &mut families_set, &mut errors);
                }
            } else if section.name.eq_ignore_ascii_case("ServiceOverride") {
                match section.subsection.clone() {
                    Some(id) => parse_override(&mut config, id, &section, &mut errors),
                    None => errors
                        .push(format!("line {}: [ServiceOverride] needs an id: [ServiceOverride \"1\"]", section.line)),
                }
            } else {
                errors.push(format!(
                    "line {}: unknown section [{}]; known: [Global], [ServiceOverride \"<id>\"]",
                    section.line, section.name
                ));
            }
        }
        validate(&config, &mut errors);
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }
}

/// `us-east-1a` → `us-east-1`; also Local Zones (`us-west-2-lax-1a` → `us-west-2`).
pub fn region_of_zone(zone: &str) -> String {
    let parts: Vec<&str> = zone.split('-').collect();
    if parts.len() >= 3 {
        let digits: String = parts[2].chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            return format!("{}-{}-{}", parts[0], parts[1], digits);
        }
    }
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase()).to_string()
}

fn parse_global(config: &mut CloudConfig, entry: &gcfg::Entry, families_set: &mut bool, errors: &mut Vec<String>) {
    let line = entry.line;
    let key = entry.key.to_ascii_lowercase();
    let value = entry.value.clone().unwrap_or_default();
    let g = &mut config.global;
    let text = |target: &mut Option<String>| *target = Some(value.clone()).filter(|v| !v.is_empty());
    let mut flag = |target: &mut bool| match gcfg::parse_bool(entry.value.as_deref()) {
        Ok(b) => *target = b,
        Err(msg) => errors.push(format!("line {line}: {}: {msg}", entry.key)),
    };
    match key.as_str() {
        "zone" => text(&mut g.zone),
        "region" => text(&mut g.region),
        "vpc" => text(&mut g.vpc),
        "subnetid" => text(&mut g.subnet_id),
        "routetableid" => text(&mut g.route_table_id),
        "rolearn" => text(&mut g.role_arn),
        "sourcearn" => text(&mut g.source_arn),
        "kubernetesclustertag" => text(&mut g.kubernetes_cluster_tag),
        "kubernetesclusterid" => text(&mut g.kubernetes_cluster_id),
        "elbsecuritygroup" => text(&mut g.elb_security_group),
        "disablesecuritygroupingress" => flag(&mut g.disable_security_group_ingress),
        "nlbbackendsecuritygroup" => flag(&mut g.nlb_backend_security_group),
        "nodeipfamilies" => {
            if !*families_set {
                g.node_ip_families.clear();
                *families_set = true;
            }
            match value.to_ascii_lowercase().as_str() {
                "ipv4" => g.node_ip_families.push(IpFamily::V4),
                "ipv6" => g.node_ip_families.push(IpFamily::V6),
                _ => errors.push(format!("line {line}: NodeIPFamilies: {value:?} is not ipv4 or ipv6")),
            }
        }
        "clusterserviceloadbalancerhealthprobemode" => match value.as_str() {
            "" | "ServiceNodePort" => g.health_probe_mode = HealthProbeMode::ServiceNodePort,
            "Shared" => g.health_probe_mode = HealthProbeMode::Shared,
            _ => errors.push(format!(
                "line {line}: ClusterServiceLoadBalancerHealthProbeMode: {value:?} is not ServiceNodePort or Shared"
            )),
        },
        "clusterservicesharedloadbalancerhealthprobeport" => match value.parse::<u16>() {
            Ok(port) if port > 0 => g.shared_health_probe_port = port,
            _ => errors.push(format!("line {line}: {}: {value:?} is not a port (1-65535)", entry.key)),
        },
        "clusterservicesharedloadbalancerhealthprobepath" => {
            if value.starts_with('/') {
                g.shared_health_probe_path = value;
            } else {
                errors.push(format!("line {line}: {}: {value:?} must start with /", entry.key));
            }
        }
        "supportedtopologyinstancetypepattern" => match regex::Regex::new(&value) {
            Ok(_) => g.supported_topology_instance_type_pattern = Some(value),
            Err(err) => errors.push(format!("line {line}: {}: not a regular expression: {err}", entry.key)),
        },
        "nlbsecuritygroupmode" => match value.as_str() {
            "" => g.nlb_security_group_managed = false,
            "Managed" => g.nlb_security_group_managed = true,
            _ => errors.push(format!("line {line}: NLBSecurityGroupMode: {value:?} is not empty or Managed")),
        },
        // AWS allows at most 1,000 rules per network interface over all its groups.
        "securitygrouprulequota" => match value.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => g.security_group_rule_quota = n,
            _ => errors.push(format!("line {line}: {}: {value:?} is not a whole number from 1 to 1000", entry.key)),
        },
        _ => match RETIRED_GLOBAL_KEYS.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            Some((name, why)) => {
                config.warnings.push(format!("line {line}: [Global] {name} is accepted but ignored: {why}"))
            }
            None => errors.push(format!("line {line}: unknown key {} in [Global]", entry.key)),
        },
    }
}

fn parse_override(config: &mut CloudConfig, id: String, section: &gcfg::Section, errors: &mut Vec<String>) {
    let mut o = ServiceOverride {
        id: id.clone(),
        service: String::new(),
        region: String::new(),
        url: String::new(),
        signing_region: String::new(),
        signing_name: None,
        signing_method: None,
    };
    for entry in &section.entries {
        let value = entry.value.clone().unwrap_or_default().trim().to_string();
        match entry.key.to_ascii_lowercase().as_str() {
            "service" => o.service = value,
            "region" => o.region = value,
            "url" => o.url = value,
            "signingregion" => o.signing_region = value,
            "signingname" => o.signing_name = Some(value),
            "signingmethod" => o.signing_method = Some(value),
            _ => errors.push(format!("line {}: unknown key {} in [ServiceOverride \"{id}\"]", entry.line, entry.key)),
        }
    }
    let at = format!("line {}: [ServiceOverride \"{id}\"]", section.line);
    if o.service.is_empty() {
        errors.push(format!("{at}: Service is required"));
    } else if !OVERRIDE_SERVICES.contains(&o.service.as_str()) {
        let hint = OVERRIDE_SERVICES
            .iter()
            .find(|s| {
                s.eq_ignore_ascii_case(&o.service)
                    || s.replace(' ', "").eq_ignore_ascii_case(&o.service.replace(' ', ""))
            })
            .map(|s| format!(" (did you mean {s:?}? the match is exact)"))
            .unwrap_or_default();
        errors.push(format!("{at}: Service {:?} is not one of {OVERRIDE_SERVICES:?}{hint}", o.service));
    }
    if o.service != "ec2imds" && o.region.is_empty() {
        errors.push(format!("{at}: Region is required"));
    }
    if o.url.is_empty() {
        errors.push(format!("{at}: URL is required"));
    } else if url::Url::parse(&o.url).is_err() {
        errors.push(format!("{at}: URL {:?} is not a URL", o.url));
    }
    if o.signing_region.is_empty() {
        errors.push(format!("{at}: SigningRegion is required"));
    }
    if config.overrides.iter().any(|x| x.service == o.service && x.region == o.region) {
        errors.push(format!("{at}: a second override for {} in region {:?}", o.service, o.region));
    }
    config.overrides.push(o);
}

fn validate(config: &CloudConfig, errors: &mut Vec<String>) {
    let g = &config.global;
    if let (Some(id), Some(tag)) = (&g.kubernetes_cluster_id, &g.kubernetes_cluster_tag)
        && id != tag
    {
        errors.push(format!("[Global] KubernetesClusterID ({id:?}) and KubernetesClusterTag ({tag:?}) disagree"));
    }
    if g.node_ip_families.is_empty() && !errors.iter().any(|e| e.contains("NodeIPFamilies")) {
        errors.push("[Global] NodeIPFamilies is empty".into());
    }
    let mut families = g.node_ip_families.clone();
    families.dedup();
    if families.len() != g.node_ip_families.len() {
        errors.push("[Global] NodeIPFamilies lists a family twice".into());
    }
    if g.nlb_backend_security_group && !g.nlb_security_group_managed {
        errors.push(
            "[Global] NLBBackendSecurityGroup needs NLBSecurityGroupMode = Managed (only NLBs with security groups can carry it)"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM_STYLE: &str = r#"
[Global]
Zone = us-west-2b
Region = eu-central-1
VPC = vpc-123
SubnetID = subnet-abc
KubernetesClusterID = kops.example.com
DisableSecurityGroupIngress = true
NodeIPFamilies = ipv4
NodeIPFamilies = ipv6
ClusterServiceLoadBalancerHealthProbeMode = Shared
ClusterServiceSharedLoadBalancerHealthProbePort = 10257
NLBSecurityGroupMode = Managed

[ServiceOverride "1"]
Service = EC2
Region = us-west-2
URL = http://127.0.0.1:5000
SigningRegion = us-west-2

[ServiceOverride "imds"]
Service = ec2imds
URL = http://127.0.0.1:1338
SigningRegion = us-west-2
"#;

    #[test]
    fn upstream_keys_and_semantics() {
        let c = CloudConfig::parse(UPSTREAM_STYLE).unwrap();
        assert_eq!(c.region().as_deref(), Some("us-west-2"), "Zone wins over Region");
        assert_eq!(c.cluster_id().as_deref(), Some("kops.example.com"));
        assert!(c.off_aws());
        assert!(c.global.disable_security_group_ingress);
        assert_eq!(c.global.node_ip_families, [IpFamily::V4, IpFamily::V6]);
        assert_eq!(c.global.health_probe_mode, HealthProbeMode::Shared);
        assert_eq!(c.global.shared_health_probe_port, 10257);
        assert!(c.global.nlb_security_group_managed);
        assert_eq!(c.override_for("EC2", "us-west-2").unwrap().url, "http://127.0.0.1:5000");
        assert!(c.override_for("EC2", "us-east-1").is_none());
        assert!(c.override_for("ec2imds", "anywhere").is_some());
    }

    #[test]
    fn defaults() {
        let c = CloudConfig::parse("[Global]\n").unwrap();
        assert_eq!(c.global.node_ip_families, [IpFamily::V4]);
        assert_eq!(c.global.shared_health_probe_path, "/healthz");
        assert_eq!(c.global.security_group_rule_quota, 60);
        assert!(!c.global.nlb_backend_security_group);
        let backend = "[Global]\nNLBSecurityGroupMode = Managed\nNLBBackendSecurityGroup = true\n";
        assert!(CloudConfig::parse(backend).unwrap().global.nlb_backend_security_group);
        let err = CloudConfig::parse("[Global]\nNLBBackendSecurityGroup = true\n").unwrap_err();
        assert!(err.to_string().contains("needs NLBSecurityGroupMode = Managed"), "{err}");
        assert_eq!(
            CloudConfig::parse("[Global]\nSecurityGroupRuleQuota = 200\n").unwrap().global.security_group_rule_quota,
            200
        );
        assert_eq!(c.region(), None);
        assert!(!c.off_aws());
        assert_eq!(CloudConfig::parse("").unwrap(), CloudConfig::default());
    }

    #[test]
    fn every_problem_at_once_with_lines() {
        let text = "[Global]\nZone = us-east-1a\nDisableSecurityGroupIngress = maybe\nColour = blue\n\
                    NodeIPFamilies = ipv5\nKubernetesClusterID = a\nKubernetesClusterTag = b\n\
                    [ServiceOverride \"x\"]\nService = ec2\nURL = not a url\n[Other]\n\
                    [Global]\nSecurityGroupRuleQuota = 0\n";
        let err = CloudConfig::parse(text).unwrap_err();
        let all = err.to_string();
        for needle in [
            "line 3: DisableSecurityGroupIngress",
            "line 4: unknown key Colour",
            "line 5: NodeIPFamilies",
            "disagree",
            "did you mean \"EC2\"",
            "Region is required",
            "is not a URL",
            "SigningRegion is required",
            "line 11: unknown section [Other]",
            "line 13: SecurityGroupRuleQuota: \"0\" is not a whole number from 1 to 1000",
        ] {
            assert!(all.contains(needle), "{needle:?} missing in:\n{all}");
        }
    }

    #[test]
    fn retired_keys_warn_instead_of_failing() {
        let c = CloudConfig::parse("[Global]\nDisableStrictZoneCheck = true\nZone = us-east-1a\n").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("DisableStrictZoneCheck"));
    }

    #[test]
    fn zones_to_regions() {
        assert_eq!(region_of_zone("us-east-1a"), "us-east-1");
        assert_eq!(region_of_zone("us-west-2-lax-1a"), "us-west-2");
        assert_eq!(region_of_zone("ap-southeast-1c"), "ap-southeast-1");
    }
}
