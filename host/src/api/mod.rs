//! The HTTP control API (axum): the seed's routes (`/tasks/execute/{task}`,
//! `/tasks/status/{id}`, `/tasks/available`) and the rest of DESIGN.md's contract.
//!
//! Only this module knows HTTP and its JSON types; domain types are converted in `dto`.

mod dto;
mod error;
mod middleware;
mod openapi;
mod ops;
mod plugins;
mod schedules;
mod tasks;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use axum::{
    extract::DefaultBodyLimit,
    routing::{get, post},
    Router,
};
use serde_json::{json, Value};

pub use self::error::ApiError;
use crate::{
    database::Database,
    plugins::{PluginRegistry, TaskHandle},
    queue::Broker,
    scheduler::ConfigFile,
};

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (default 1 MiB).
    pub body_limit: usize,
    /// When set, every route that changes something needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// With a token: whether reads (GET) need it too (default false: reads stay open).
    pub protect_reads: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            token: None,
            protect_reads: false,
        }
    }
}

/// Compiled validators by (plugin sha256, task name).
type SchemaCache = HashMap<(String, String), Arc<jsonschema::Validator>>;

/// What every handler shares. One `Arc`: axum clones the state for each request (the
/// extractor and the auth layer), and one reference count is cheaper than seven.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Clone)]
pub struct Shared {
    broker: Arc<dyn Broker>,
    registry: Arc<PluginRegistry>,
    config: Arc<ApiConfig>,
    /// The config file's schedules, for `/schedules`.
    schedules: Arc<ConfigFile>,
    /// Compiled argument schemas by plugin hash and task: compiling one per request
    /// would cost more than the request.
    schemas: Arc<RwLock<SchemaCache>>,
    /// The tasks' database, when this process runs tasks (`serve`): part of readiness.
    database: Option<Database>,
}

impl AppState {
    pub fn new(broker: Arc<dyn Broker>, registry: Arc<PluginRegistry>, config: ApiConfig) -> Self {
        Self(Arc::new(Shared {
            broker,
            registry,
            config: Arc::new(config),
            schedules: Arc::new(ConfigFile::default()),
            schemas: Arc::default(),
            database: None,
        }))
    }

    /// The database `/ready` checks besides the broker.
    pub fn with_database(mut self, database: Database) -> Self {
        Arc::make_mut(&mut self.0).database = Some(database);
        self
    }

    /// The schedules `/schedules` shows, from the config file (plugins' own are added).
    pub fn with_schedules(mut self, config: Arc<ConfigFile>) -> Self {
        Arc::make_mut(&mut self.0).schedules = config;
        self
    }

    /// Checks `args` against the task's declared schema, if it has one.
    fn check_args(&self, task: &TaskHandle, args: &Value) -> Result<(), ApiError> {
        let Some(schema) = &task.def.args_schema else {
            return Ok(());
        };
        let key = (task.plugin.sha256.clone(), task.def.name.clone());
        let cached = self
            .schemas
            .read()
            .expect("schema cache poisoned")
            .get(&key)
            .cloned();
        let validator = match cached {
            Some(validator) => validator,
            None => {
                let validator = Arc::new(jsonschema::validator_for(schema).map_err(|e| {
                    ApiError::Internal(format!(
                        "task {} declares an invalid argument schema: {e}",
                        task.def.name
                    ))
                })?);
                self.schemas
                    .write()
                    .expect("schema cache poisoned")
                    .insert(key, Arc::clone(&validator));
                validator
            }
        };
        let problems: Vec<Value> = validator
            .iter_errors(args)
            .take(10)
            .map(|e| json!({"path": e.instance_path.to_string(), "reason": e.to_string()}))
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        let first = &problems[0];
        Err(ApiError::Unprocessable {
            code: "invalid_arguments",
            message: format!(
                "arguments of {} do not match its schema: at {:?}: {}",
                task.def.name,
                first["path"].as_str().unwrap_or(""),
                first["reason"].as_str().unwrap_or("")
            ),
            details: Some(json!({"errors": problems})),
        })
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole API; tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/tasks/execute/{task}", post(tasks::execute))
        .route("/tasks/status/{task_id}", get(tasks::status))
        .route("/tasks/revoke/{task_id}", post(tasks::revoke))
        .route("/tasks/available", get(tasks::available))
        .route("/tasks", get(tasks::list))
        .route("/plugins", get(plugins::list))
        .route("/plugins/reload", post(plugins::reload))
        .route("/schedules", get(schedules::list))
        .route("/queues", get(ops::queues))
        .route("/workers", get(ops::workers))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/openapi.json", get(openapi::document))
        .merge(openapi::docs_page())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::auth,
        ))
        .layer(axum::middleware::from_fn(middleware::access_log))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .with_state(state)
}

/// Serves the API on `bind` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    bind: SocketAddr,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(bind).await?, state, shutdown).await
}

/// Serves the API on a listener already bound (so that a process can fail on a taken
/// port before it starts anything else).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
