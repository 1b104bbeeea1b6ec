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

/// Readiness: the broker answers, and so does the database where this process has one.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let broker = state.broker.ping().await;
    let mut body = json!({
        "status": "ready",
        "broker": match &broker {
            Ok(()) => json!({"kind": state.broker.kind(), "ok": true}),
            Err(error) => json!({"kind": state.broker.kind(), "ok": false, "error": error.to_string()}),
        },
    });
    let mut ok = broker.is_ok();
    if let Some(database) = &state.database {
        let kind = database.dialect().name();
        body["database"] = match database.ping().await {
            Ok(()) => json!({"kind": kind, "ok": true}),
            Err(error) => {
                ok = false;
                json!({"kind": kind, "ok": false, "error": error.to_string()})
            }
        };
    }
    if ok {
        (StatusCode::OK, Json(body))
    } else {
        body["status"] = json!("unavailable");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
