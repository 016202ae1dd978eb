//! Coalescing describe-by-name calls: requests for single names that arrive within
//! [`WINDOW`] of each other become one call with up to [`MAX_NAMES`] names (the limit of
//! ELB and ELBv2 `DescribeLoadBalancers`). Those APIs fail a whole call when one name does not
//! exist, so a failed batch is retried name by name; in the steady state (every load balancer
//! exists) N periodic re-ensures cost N/20 describes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::errors::AwsError;

pub const WINDOW: Duration = Duration::from_millis(25);
pub const MAX_NAMES: usize = 20;

type Answer<T> = Result<Option<T>, AwsError>;
/// Names waiting for the next call, and who waits for each.
type Pending<T> = Arc<Mutex<Vec<(String, oneshot::Sender<Answer<T>>)>>>;
type Fetch<T> =
    Arc<dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<Vec<(String, T)>, AwsError>> + Send>> + Send + Sync>;

/// Describes by name, batched.
pub struct DescribeBatch<T> {
    fetch: Fetch<T>,
    pending: Pending<T>,
}

impl<T: Clone + Send + 'static> DescribeBatch<T> {
    /// `fetch` describes the given names: `Ok` with what exists, or the API's error (e.g. "not
    /// found" when one of them does not).
    pub fn new(fetch: Fetch<T>) -> Self {
        Self { fetch, pending: Arc::default() }
    }

    pub async fn get(&self, name: &str) -> Answer<T> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut pending = self.pending.lock().expect("batch lock");
            pending.push((name.to_string(), tx));
            pending.len() == 1
        };
        if first {
            let pending = self.pending.clone();
            let fetch = self.fetch.clone();
            tokio::spawn(async move {
                tokio::time::sleep(WINDOW).await;
                let mut batch: Vec<_> = std::mem::take(&mut *pending.lock().expect("batch lock"));
                while !batch.is_empty() {
                    let rest = batch.split_off(batch.len().min(MAX_NAMES));
                    flush(&fetch, batch).await;
                    batch = rest;
                }
            });
        }
        match rx.await {
            Ok(answer) => answer,
            Err(_) => Err(AwsError { op: "aws/batch", code: None, message: "the batched describe was dropped".into() }),
        }
    }
}

async fn flush<T: Clone>(fetch: &Fetch<T>, chunk: Vec<(String, oneshot::Sender<Answer<T>>)>) {
    let mut names: Vec<String> = chunk.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    let answers: HashMap<String, Answer<T>> = match fetch(names.clone()).await {
        Ok(found) => {
            let found: HashMap<String, T> = found.into_iter().collect();
            names.iter().map(|n| (n.clone(), Ok(found.get(n).cloned()))).collect()
        }
        // One missing name fails the call: ask for each alone.
        Err(err) if err.is_not_found() && names.len() > 1 => {
            let mut out = HashMap::new();
            for n in &names {
                let answer = match fetch(vec![n.clone()]).await {
                    Ok(found) => Ok(found.into_iter().next().map(|(_, t)| t)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                };
                out.insert(n.clone(), answer);
            }
            out
        }
        Err(err) if err.is_not_found() => names.iter().map(|n| (n.clone(), Ok(None))).collect(),
        Err(err) => names.iter().map(|n| (n.clone(), Err(err.clone()))).collect(),
    };
    for (name, tx) in chunk {
        // A receiver that went away (its caller was cancelled) is fine.
        let _ = tx.send(answers.get(&name).cloned().unwrap_or(Ok(None)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_lookups_share_one_call_and_missing_names_fall_back() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let batch: DescribeBatch<String> = DescribeBatch::new(Arc::new(move |names: Vec<String>| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if names.iter().any(|n| n.starts_with("missing")) {
                    return Err(AwsError {
                        op: "test",
                        code: Some("LoadBalancerNotFound".into()),
                        message: String::new(),
                    });
                }
                Ok(names.into_iter().map(|n| (n.clone(), format!("lb:{n}"))).collect())
            })
        }));
        let batch = Arc::new(batch);
        let lookups: Vec<_> = (0..25)
            .map(|i| {
                let batch = batch.clone();
                tokio::spawn(async move { batch.get(&format!("n{i}")).await })
            })
            .collect();
        for (i, l) in lookups.into_iter().enumerate() {
            assert_eq!(l.await.unwrap().unwrap(), Some(format!("lb:n{i}")));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "25 names: one call of 20 and one of 5");

        calls.store(0, Ordering::SeqCst);
        let (a, b) = tokio::join!(batch.get("present"), batch.get("missing"));
        assert_eq!(a.unwrap(), Some("lb:present".to_string()));
        assert_eq!(b.unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the failed pair, then each alone");
    }
}
