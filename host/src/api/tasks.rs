//! `/tasks/...`: execute, status, revoke, list, available.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::IntoResponse,
    Json,
};
use serde_json::{json, Value};

use super::{
    dto::{
        ExecuteOptions, ListQuery, RevokeResponse, TaskExecuteResponse, TaskListResponse,
        TaskStatusResponse,
    },
    ApiError, AppState,
};
use crate::{
    plugins::{Catalog, TaskHandle},
    queue::{ListFilter, NewTask, RevokeOutcome, TaskState},
};

const MAX_IDEMPOTENCY_KEY: usize = 200;

pub async fn execute(
    State(state): State<AppState>,
    task: Result<Path<String>, PathRejection>,
    options: Result<Query<ExecuteOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(task) = task.map_err(path_error)?;
    let catalog = state.registry.snapshot();
    let handle = resolve(&catalog, &task)?;
    let Query(options) =
        options.map_err(|e| ApiError::unprocessable("invalid_option", e.body_text()))?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: state.config.body_limit,
        },
        _ => ApiError::bad_request("invalid_body", e.body_text()),
    })?;
    let args = parse_args(&body)?;
    state.check_args(handle, &args)?;

    let mut new = NewTask::new(&handle.def.name, &handle.def.queue, args.to_string());
    if let Some(queue) = options.queue {
        check_queue_name(&queue)?;
        new.queue = queue;
    }
    if let Some(priority) = options.priority {
        if priority > 9 {
            return Err(ApiError::unprocessable(
                "invalid_option",
                format!("priority {priority} is not between 0 and 9"),
            ));
        }
        new.priority = priority;
    }
    new.delay = delay(options.countdown, options.eta.as_deref())?;
    new.idempotency_key = idempotency_key(&headers)?;

    let enqueued = state.broker.enqueue(vec![new]).await?.remove(0);
    let message = if enqueued.created {
        format!("task {} accepted", handle.def.name)
    } else {
        format!(
            "task {} was already accepted under this Idempotency-Key",
            handle.def.name
        )
    };
    let location = format!("/tasks/status/{}", enqueued.id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(TaskExecuteResponse {
            success: true,
            task_id: enqueued.id,
            message,
            task_name: handle.def.name.clone(),
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a task id is a valid header value"),
    );
    Ok(response)
}

fn resolve<'c>(catalog: &'c Catalog, task: &str) -> Result<&'c Arc<TaskHandle>, ApiError> {
    catalog.resolve(task).ok_or_else(|| {
        let close = catalog.suggest(task);
        let message = if close.is_empty() {
            format!("unknown task {task:?}; GET /tasks/available lists them")
        } else {
            format!("unknown task {task:?}; did you mean {}?", close.join(", "))
        };
        ApiError::NotFound {
            code: "unknown_task",
            message,
            details: Some(json!({"did_you_mean": close})),
        }
    })
}

/// No body (or only white space) means no arguments: JSON `null`.
fn parse_args(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

fn check_queue_name(queue: &str) -> Result<(), ApiError> {
    let valid = !queue.is_empty()
        && queue.len() <= 64
        && queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if valid {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_option",
            format!("queue {queue:?} is not a valid queue name (1 to 64 letters, digits, _ - . :)"),
        ))
    }
}

fn delay(countdown: Option<f64>, eta: Option<&str>) -> Result<Option<Duration>, ApiError> {
    if let Some(seconds) = countdown {
        if !seconds.is_finite() || !(0.0..=365.0 * 86400.0).contains(&seconds) {
            return Err(ApiError::unprocessable(
                "invalid_option",
                format!("countdown {seconds} is not a number of seconds between 0 and one year"),
            ));
        }
    }
    // As in Celery: an eta, when given too, is what counts.
    match (countdown, eta) {
        (_, Some(eta)) => {
            let at: jiff::Timestamp = eta.parse().map_err(|e| {
                ApiError::unprocessable(
                    "invalid_option",
                    format!("eta {eta:?} is not an RFC 3339 time: {e}"),
                )
            })?;
            let from_now = Duration::try_from(at.duration_since(jiff::Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            Ok(Some(from_now))
        }
        (Some(seconds), None) => Ok(Some(Duration::from_secs_f64(seconds))),
        (None, None) => Ok(None),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )
        })?;
    Ok(Some(key.to_owned()))
}

pub async fn status(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskStatusResponse>, ApiError> {
    let Path(id) = id.map_err(path_error)?;
    let record = state
        .broker
        .get(&id)
        .await?
        .ok_or_else(|| unknown_id(&id))?;
    Ok(Json(record.into()))
}

/// A path segment that is not valid UTF-8 (e.g. `%FF`), in the API's error shape.
fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rejection.body_text())
}

fn unknown_id(id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_task_id",
        format!("no task {id:?} (never enqueued, or its result expired)"),
    )
}

pub async fn revoke(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let Path(id) = id.map_err(path_error)?;
    let (status, message) = match state.broker.revoke(&id).await? {
        RevokeOutcome::Revoked => ("REVOKED", "the task will not run"),
        RevokeOutcome::Requested => (
            "REVOKE_REQUESTED",
            "the task is running; its worker was asked to stop it",
        ),
        RevokeOutcome::AlreadyFinished(finished) => {
            return Err(ApiError::Conflict(format!(
                "task {id} already finished ({finished})"
            )));
        }
        RevokeOutcome::NotFound => return Err(unknown_id(&id)),
    };
    Ok(Json(RevokeResponse {
        success: true,
        task_id: id,
        status,
        message: message.to_owned(),
    }))
}

pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TaskListResponse>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let state_filter = match query.state.as_deref() {
        None => None,
        Some(text) => Some(TaskState::parse(&text.to_ascii_uppercase()).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_query",
                format!(
                    "state {text:?} is not one of PENDING STARTED RETRY SUCCESS FAILURE REVOKED"
                ),
            )
        })?),
    };
    let name = match query.name.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            state
                .registry
                .snapshot()
                .resolve(name)
                .map_or_else(|| name.to_owned(), |t| t.def.name.clone()),
        ),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_query",
            format!("limit {limit} is not between 1 and 500"),
        ));
    }
    let page = state
        .broker
        .list(&ListFilter {
            name,
            state: state_filter,
            limit,
            cursor: query.cursor.filter(|c| !c.is_empty()),
        })
        .await?;
    Ok(Json(TaskListResponse {
        tasks: page.tasks.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The seed's `/tasks/available`, from the plugins loaded now.
pub async fn available(State(state): State<AppState>) -> Json<Value> {
    let catalog = state.registry.snapshot();
    let tasks: serde_json::Map<String, Value> = catalog
        .tasks()
        .map(|t| {
            let def = &t.def;
            (
                def.clean_name.clone(),
                json!({
                    "name": def.name,
                    "description": def.description,
                    "endpoint": def.endpoint(),
                    "method": "POST",
                    "module": t.plugin.module_label(),
                    "queue": def.queue,
                    "args_schema": def.args_schema,
                    "schedule": def.schedule,
                    "max_retries": def.max_retries,
                    "time_limit_ms": def.time_limit_ms,
                    "plugin": {
                        "file": t.plugin.file.display().to_string(),
                        "sha256": t.plugin.sha256,
                        "version": t.plugin.version,
                    },
                }),
            )
        })
        .collect();
    Json(json!({
        "success": true,
        "total_tasks": tasks.len(),
        "available_tasks": tasks,
        "auto_generated": true,
        "load_errors": catalog.refused().iter().map(|e| e.to_refusal()).collect::<Vec<_>>(),
    }))
}
