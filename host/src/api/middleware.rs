//! Request ids, one access-log line per request, bearer-token auth, panics as JSON.

use std::{any::Any, time::Instant};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Method, Response},
    middleware::Next,
    response::IntoResponse,
};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Gives each request an id (the caller's `x-request-id`, or a new UUID), echoes it in
/// the response, and logs one line per request under the `toolbox::access` target.
pub async fn access_log(mut request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = match request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if !id.is_empty() && id.len() <= 128 => id.to_owned(),
        _ => uuid::Uuid::now_v7().to_string(),
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert("x-request-id", value.clone());
    }
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::info!(
        target: "toolbox::access",
        request_id = %id,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// With a token configured: routes that change something (and reads, if configured)
/// need `Authorization: Bearer <token>`; `/health` and `/ready` never do.
pub async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response<Body> {
    let Some(token) = state.config.token.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let is_read = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let exempt = path == "/health" || path == "/ready" || (is_read && !state.config.protect_reads);
    if exempt {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => ApiError::Unauthorized.into_response(),
        // Constant-time: the time a comparison takes must not tell how much matched.
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => ApiError::Forbidden.into_response(),
    }
}

/// A handler that panicked answers 500 in the API's JSON shape; the server lives on.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a handler panicked".to_owned());
    ApiError::Internal(message).into_response()
}
