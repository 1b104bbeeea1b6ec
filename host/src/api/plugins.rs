//! `/plugins`: what is loaded and what was refused; a rescan on demand.

use std::sync::Arc;

use axum::{extract::State, Json};
use serde_json::{json, Value};

use super::{dto::timestamp, ApiError, AppState};
use crate::plugins::{rescan_when_settled, Catalog};

/// The longest `POST /plugins/reload` waits for the folder to hold still.
const RELOAD_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

fn describe(catalog: &Catalog, mapped: usize, rescans: usize) -> Value {
    let plugins: Vec<Value> = catalog
        .plugins()
        .iter()
        .map(|p| {
            let loaded_at = p
                .loaded_at
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| timestamp(d.as_millis() as i64));
            json!({
                "file": p.file.display().to_string(),
                "name": p.name,
                "version": p.version,
                "sha256": p.sha256,
                "interface": p.interface(),
                "tasks": p.tasks.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                "loaded_at": loaded_at,
            })
        })
        .collect();
    json!({
        "plugins": plugins,
        "refused": catalog.refused().iter().map(|e| e.to_refusal()).collect::<Vec<_>>(),
        "libraries_mapped": mapped,
        "rescans": rescans,
    })
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(describe(
        &state.registry.snapshot(),
        state.registry.libraries_mapped(),
        state.registry.rescans(),
    ))
}

/// Rescans the folder now (loading, probing and hashing are blocking work).
pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let registry = Arc::clone(&state.registry);
    // The same care as the watcher's: a reload asked for during a build waits for it.
    let catalog =
        tokio::task::spawn_blocking(move || rescan_when_settled(&registry, RELOAD_SETTLE))
            .await
            .map_err(|e| ApiError::Internal(format!("the rescan failed: {e}")))?;
    Ok(Json(describe(
        &catalog,
        state.registry.libraries_mapped(),
        state.registry.rescans(),
    )))
}
