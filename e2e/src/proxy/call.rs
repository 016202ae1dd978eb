//! Telling which AWS service and operation a request is.
//!
//! EC2, ELB and ELBv2 all speak the AWS query protocol: a form-encoded POST whose `Action`
//! names the operation and whose `Version` names the API. ELB and ELBv2 share the signing name
//! `elasticloadbalancing`, so the API version is what tells them apart.

use std::fmt;

/// An AWS service, as the proxy tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Ec2,
    /// Classic Elastic Load Balancing (API version 2012-06-01).
    Elb,
    /// Elastic Load Balancing v2: NLB and ALB (API version 2015-12-01).
    Elbv2,
    /// Anything else, by its SigV4 signing name (or "unknown").
    Other(String),
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Ec2 => f.write_str("ec2"),
            Service::Elb => f.write_str("elb"),
            Service::Elbv2 => f.write_str("elbv2"),
            Service::Other(name) => f.write_str(name),
        }
    }
}

/// The service and operation of one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId {
    pub service: Service,
    pub action: String,
}

impl CallId {
    /// Reads the operation from the form body (or the query string) and the service from the
    /// API version, falling back to the SigV4 credential scope in `authorization`.
    pub fn parse(query: Option<&str>, body: &[u8], authorization: Option<&str>) -> Self {
        let mut action = None;
        let mut version = None;
        let pairs =
            url::form_urlencoded::parse(body).chain(url::form_urlencoded::parse(query.unwrap_or("").as_bytes()));
        for (key, value) in pairs {
            match key.as_ref() {
                "Action" if action.is_none() => action = Some(value.into_owned()),
                "Version" if version.is_none() => version = Some(value.into_owned()),
                _ => {}
            }
        }
        let service = match version.as_deref() {
            Some("2016-11-15") => Service::Ec2,
            Some("2012-06-01") => Service::Elb,
            Some("2015-12-01") => Service::Elbv2,
            _ => Service::Other(signing_name(authorization).unwrap_or("unknown").to_string()),
        };
        Self { service, action: action.unwrap_or_else(|| "unknown".to_string()) }
    }

    /// Whether the call can change AWS state. Reads are Describe*/Get*/List* by AWS convention.
    pub fn is_mutating(&self) -> bool {
        !["Describe", "Get", "List"].iter().any(|prefix| self.action.starts_with(prefix))
    }
}

/// The service in `Credential=<key>/<date>/<region>/<service>/aws4_request`.
fn signing_name(authorization: Option<&str>) -> Option<&str> {
    let credential = authorization?.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_services_apart_by_api_version() {
        let ec2 = CallId::parse(None, b"Action=DescribeInstances&Version=2016-11-15", None);
        assert_eq!(ec2, CallId { service: Service::Ec2, action: "DescribeInstances".into() });
        let elb = CallId::parse(None, b"Action=CreateLoadBalancer&Version=2012-06-01", None);
        assert_eq!(elb.service, Service::Elb);
        let elbv2 = CallId::parse(None, b"Version=2015-12-01&Action=CreateTargetGroup", None);
        assert_eq!(elbv2, CallId { service: Service::Elbv2, action: "CreateTargetGroup".into() });
    }

    #[test]
    fn falls_back_to_the_signing_name_and_the_query_string() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts/aws4_request, SignedHeaders=host";
        let call = CallId::parse(Some("Action=GetCallerIdentity"), b"", Some(auth));
        assert_eq!(call, CallId { service: Service::Other("sts".into()), action: "GetCallerIdentity".into() });
        assert_eq!(CallId::parse(None, b"", None).service, Service::Other("unknown".into()));
    }

    #[test]
    fn reads_are_not_mutating() {
        for action in ["DescribeInstances", "GetConsoleOutput", "ListTagsForResource"] {
            assert!(!CallId { service: Service::Ec2, action: action.into() }.is_mutating(), "{action}");
        }
        for action in ["CreateRoute", "ModifyInstanceAttribute", "RegisterTargets", "AddTags"] {
            assert!(CallId { service: Service::Ec2, action: action.into() }.is_mutating(), "{action}");
        }
    }
}
