//! Operations routes: queues, workers, health, readiness, and the JSON 404/405.

use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use super::{
    dto::{QueuesResponse, WorkersResponse},
    ApiError, AppState,
};

pub async fn queues(State(state): State<AppState>) -> Result<Json<QueuesResponse>, ApiError> {
    Ok(Json(QueuesResponse {
        queues: state.broker.queue_stats().await?,
    }))
}

pub async fn workers(State(state): State<AppState>) -> Result<Json<WorkersResponse>, ApiError> {
    Ok(Json(WorkersResponse {
        workers: state.broker.workers().await?,
    }))
}

/// Liveness: the process answers.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the broker answers.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.broker.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "broker": {"kind": state.broker.kind(), "ok": true}})),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "broker": {"kind": state.broker.kind(), "ok": false, "error": error.to_string()}
            })),
        ),
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
