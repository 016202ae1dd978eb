//! Faults the proxy injects, and the error responses AWS sends for them.

use std::time::Duration;

use super::call::{CallId, Service};

/// What happens to a call a rule picks.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The service's throttling error: EC2 `RequestLimitExceeded` (HTTP 503), ELB/ELBv2
    /// `Throttling` (HTTP 400), exactly as AWS sends them.
    Throttle,
    /// A server error with this HTTP status (500 `InternalError`/`InternalFailure`, 503
    /// `Unavailable`, ...).
    ServerError(u16),
    /// Forward the call after this delay.
    Latency(Duration),
    /// Any AWS error: HTTP status and error code (e.g. 400 `DependencyViolation`), for the
    /// answers an emulator never gives.
    Error(u16, &'static str),
    /// A successful answer with this XML body, for data the emulator cannot have (an
    /// instance's network topology).
    Respond(String),
}

/// Which calls a fault applies to, how often, and how many times.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub fault: Fault,
    pub service: Option<Service>,
    pub action: Option<String>,
    /// Probability in `0.0..=1.0` that a matching call is hit.
    pub rate: f64,
    /// Stop after hitting this many calls.
    pub limit: Option<u64>,
    pub(super) hits: u64,
}

impl FaultRule {
    pub fn new(fault: Fault) -> Self {
        Self { fault, service: None, action: None, rate: 1.0, limit: None, hits: 0 }
    }
    pub fn throttle() -> Self {
        Self::new(Fault::Throttle)
    }
    pub fn server_error(status: u16) -> Self {
        Self::new(Fault::ServerError(status))
    }
    pub fn latency(delay: Duration) -> Self {
        Self::new(Fault::Latency(delay))
    }
    pub fn error(status: u16, code: &'static str) -> Self {
        Self::new(Fault::Error(status, code))
    }
    /// Answer with HTTP 200 and `body` instead of asking the emulator.
    pub fn respond(body: impl Into<String>) -> Self {
        Self::new(Fault::Respond(body.into()))
    }
    /// Only calls to this service.
    pub fn on_service(mut self, service: Service) -> Self {
        self.service = Some(service);
        self
    }
    /// Only calls of this operation (`Action`), e.g. `DescribeInstances`.
    pub fn on_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }
    /// Hit a matching call with this probability.
    pub fn at_rate(mut self, rate: f64) -> Self {
        assert!((0.0..=1.0).contains(&rate), "a rate is a probability");
        self.rate = rate;
        self
    }
    /// Hit at most this many calls, then let everything through.
    pub fn times(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Decides whether this rule hits `call`, counting the hit if so.
    pub(super) fn fires(&mut self, call: &CallId) -> bool {
        let matches = self.service.as_ref().is_none_or(|s| *s == call.service)
            && self.action.as_deref().is_none_or(|a| a == call.action);
        let exhausted = self.limit.is_some_and(|limit| self.hits >= limit);
        if !matches || exhausted || fastrand::f64() >= self.rate {
            return false;
        }
        self.hits += 1;
        true
    }
}

/// The HTTP status and XML body AWS answers with for `fault` on `service`.
pub(super) fn error_response(fault: &Fault, service: &Service) -> (u16, String) {
    let request_id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let (status, code, message) = match (fault, service) {
        (Fault::Throttle, Service::Ec2) => (503, "RequestLimitExceeded", "Request limit exceeded."),
        (Fault::Throttle, _) => (400, "Throttling", "Rate exceeded"),
        (Fault::ServerError(503), Service::Ec2) => (503, "Unavailable", "The server is overloaded."),
        (Fault::ServerError(503), _) => (503, "ServiceUnavailable", "Service is unavailable."),
        (Fault::ServerError(status), Service::Ec2) => (*status, "InternalError", "An internal error has occurred."),
        (Fault::ServerError(status), _) => (*status, "InternalFailure", "An internal error has occurred."),
        (Fault::Error(status, code), _) => (*status, *code, "Injected by the e2e proxy."),
        (Fault::Respond(body), _) => return (200, body.clone()),
        (Fault::Latency(_), _) => unreachable!("latency is not an error"),
    };
    let body = match service {
        // EC2's query API wraps errors in <Response><Errors>.
        Service::Ec2 => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ),
        _ => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>\
                 </Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            )
        }
    };
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(service: Service, action: &str) -> CallId {
        CallId { service, action: action.into() }
    }

    #[test]
    fn a_rule_hits_only_matching_calls_and_stops_at_its_limit() {
        let mut rule = FaultRule::throttle().on_service(Service::Ec2).on_action("DescribeInstances").times(2);
        assert!(!rule.fires(&call(Service::Elb, "DescribeInstances")));
        assert!(!rule.fires(&call(Service::Ec2, "DescribeVpcs")));
        assert!(rule.fires(&call(Service::Ec2, "DescribeInstances")));
        assert!(rule.fires(&call(Service::Ec2, "DescribeInstances")));
        assert!(!rule.fires(&call(Service::Ec2, "DescribeInstances")));
    }

    #[test]
    fn a_rate_hits_about_that_share_of_calls() {
        let mut rule = FaultRule::throttle().at_rate(0.3);
        let hits = (0..10_000).filter(|_| rule.fires(&call(Service::Ec2, "X"))).count();
        assert!((2_500..3_500).contains(&hits), "{hits} of 10000");
        let mut never = FaultRule::throttle().at_rate(0.0);
        assert!((0..1000).all(|_| !never.fires(&call(Service::Ec2, "X"))));
    }

    #[test]
    fn throttling_errors_look_like_aws_ones() {
        let (status, body) = error_response(&Fault::Throttle, &Service::Ec2);
        assert_eq!(status, 503);
        assert!(body.contains("<Response><Errors><Error><Code>RequestLimitExceeded</Code>"), "{body}");
        let (status, body) = error_response(&Fault::Throttle, &Service::Elbv2);
        assert_eq!(status, 400);
        assert!(body.contains("<Type>Sender</Type><Code>Throttling</Code>"), "{body}");
        let (status, body) = error_response(&Fault::ServerError(500), &Service::Elb);
        assert_eq!(status, 500);
        assert!(body.contains("<Type>Receiver</Type><Code>InternalFailure</Code>"), "{body}");
    }
}
