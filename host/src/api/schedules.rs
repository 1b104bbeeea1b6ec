//! `/schedules`: every schedule, where it comes from, when it fires next and last.

use axum::{extract::State, Json};
use jiff::{tz::TimeZone, Timestamp};
use serde_json::{json, Value};

use super::{dto::timestamp, ApiError, AppState};
use crate::scheduler;

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let set = scheduler::resolve(&state.schedules, &state.registry.snapshot());
    let zone = TimeZone::get(&state.schedules.timezone).unwrap_or(TimeZone::UTC);
    let ids: Vec<String> = set.entries.iter().map(|e| e.id.clone()).collect();
    let last = state.broker.last_fired(&ids).await?;
    let now = Timestamp::now();
    let entries: Vec<Value> = set
        .entries
        .iter()
        .zip(last)
        .map(|(e, last)| {
            let next = e
                .enabled
                .then(|| e.cron.next_after(now, &zone))
                .flatten()
                .and_then(|t| timestamp(t.as_millisecond()));
            json!({
                "id": e.id,
                "task": e.task,
                "cron": e.cron.expression(),
                "queue": e.queue,
                "args": serde_json::from_str::<Value>(&e.args).unwrap_or(Value::Null),
                "enabled": e.enabled,
                "misfire": e.misfire,
                "source": e.source,
                "next_fire": next,
                "last_fire": last.as_ref().and_then(|(tick, _)| timestamp(*tick)),
                "last_task_id": last.map(|(_, id)| id),
            })
        })
        .collect();
    Ok(Json(json!({
        "timezone": state.schedules.timezone,
        "schedules": entries,
        "problems": set.config_errors.iter().chain(&set.plugin_errors).collect::<Vec<_>>(),
    })))
}
