//! The HTTP endpoints: `/healthz` (and `/healthz/<controller>`), `/livez`, `/readyz`,
//! `/metrics`; served over HTTPS by [`crate::serving`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the health endpoints report: whether startup finished, and each started controller's
/// liveness (a controller whose task ended while the process runs is unhealthy).
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    controllers: Mutex<BTreeMap<&'static str, bool>>,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
    pub fn set_controller(&self, name: &'static str, alive: bool) {
        self.controllers.lock().expect("lock").insert(name, alive);
    }
    fn unhealthy(&self) -> Vec<&'static str> {
        self.controllers.lock().expect("lock").iter().filter(|(_, alive)| !**alive).map(|(n, _)| *n).collect()
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{controller}", get(controller_healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.health.unhealthy().as_slice() {
        [] => (StatusCode::OK, "ok".into()),
        dead => (StatusCode::INTERNAL_SERVER_ERROR, format!("controllers not running: {}", dead.join(", "))),
    }
}

async fn controller_healthz(State(state): State<AppState>, Path(name): Path<String>) -> (StatusCode, String) {
    let controllers = state.health.controllers.lock().expect("lock").clone();
    let found = crate::controllers::ALL.iter().find(|c| c.canonical == name || c.alias == name);
    match found.and_then(|c| controllers.get(c.alias).copied()) {
        Some(true) => (StatusCode::OK, "ok".into()),
        Some(false) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{name} is not running")),
        None => (StatusCode::NOT_FOUND, format!("{name} is not running in this process")),
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics_text(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
}
