//! The OpenAPI 3.1 document, built from the plugins loaded now (each task gets its own
//! execute route with its argument schema), and the offline docs page at `/docs`
//! (Swagger UI, vendored into the binary: nothing is fetched from a CDN).

use axum::{extract::State, Json, Router};
use serde_json::{json, Map, Value};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;

pub fn docs_page() -> Router<AppState> {
    Router::from(SwaggerUi::new("/docs").config(Config::new(["/openapi.json"])))
}

fn error_responses(codes: &[&str]) -> Map<String, Value> {
    let describe = |code: &str| match code {
        "400" => "Malformed request (body is not JSON, bad header)",
        "401" => "Missing bearer token",
        "403" => "Invalid bearer token",
        "404" => "Unknown task, task id or route",
        "409" => "The task already finished",
        "413" => "Body too large",
        "422" => "Arguments or options that do not validate",
        "503" => "Broker unavailable; retry after the Retry-After header",
        _ => "Error",
    };
    codes
        .iter()
        .map(|code| {
            (
                (*code).to_owned(),
                json!({"description": describe(code), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            )
        })
        .collect()
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn execute_operation(
    operation_id: &str,
    summary: &str,
    description: &str,
    args_schema: Option<Value>,
    task_param: bool,
) -> Value {
    let mut parameters = vec![
        json!({"name": "queue", "in": "query", "required": false, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "description": "Queue to send the task to instead of its own"}),
        json!({"name": "countdown", "in": "query", "required": false, "schema": {"type": "number", "minimum": 0, "maximum": 31536000}, "description": "Seconds before the task may start"}),
        json!({"name": "eta", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}, "description": "Time before which the task may not start; wins over countdown when both are given"}),
        json!({"name": "priority", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "maximum": 9}, "description": "0 lowest to 9 highest; default 5"}),
        json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 200}, "description": "A retried request with the same key returns the first task id"}),
    ];
    if task_param {
        parameters.insert(
            0,
            json!({"name": "task", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Task name: kebab, snake or full dotted form"}),
        );
    }
    let mut responses = Map::new();
    responses.insert(
        "202".into(),
        ok("Accepted: the task is queued", "TaskExecuteResponse"),
    );
    responses.extend(error_responses(&[
        "400", "401", "403", "404", "413", "422", "503",
    ]));
    json!({
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": ["tasks"],
        "parameters": parameters,
        // A task that declares a schema needs a body that matches it; one that does not takes
        // any JSON, or none.
        "requestBody": {
            "required": args_schema.is_some(),
            "content": {"application/json": {"schema": args_schema.unwrap_or(json!({}))}}
        },
        "responses": responses,
    })
}

pub async fn document(State(state): State<AppState>) -> Json<Value> {
    let catalog = state.registry.snapshot();
    let mut paths = Map::new();
    for task in catalog.tasks() {
        let def = &task.def;
        let summary = def
            .description
            .lines()
            .next()
            .unwrap_or(&def.name)
            .to_owned();
        let operation = execute_operation(
            &format!("execute_{}", def.clean_name),
            &summary,
            &format!(
                "{}\n\nTask `{}` from plugin `{}`.",
                def.description,
                def.name,
                task.plugin.module_label()
            ),
            def.args_schema.clone(),
            false,
        );
        paths.insert(def.endpoint(), json!({"post": operation}));
    }
    let with = |mut responses: Map<String, Value>, errors: &[&str]| {
        responses.extend(error_responses(errors));
        Value::Object(responses)
    };
    let id_param =
        json!([{"name": "task_id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    paths.insert(
        "/tasks/execute/{task}".into(),
        json!({"post": execute_operation("execute_task", "Enqueue any task by name", "Enqueue the task named in the path; the JSON body is its arguments.", None, true)}),
    );
    paths.insert("/tasks/status/{task_id}".into(), json!({"get": {
        "operationId": "task_status", "summary": "State of one task", "tags": ["tasks"], "parameters": id_param,
        "responses": with(Map::from_iter([("200".to_owned(), ok("The task", "TaskStatusResponse"))]), &["401", "403", "404", "503"]),
    }}));
    paths.insert("/tasks/revoke/{task_id}".into(), json!({"post": {
        "operationId": "revoke_task", "summary": "Cancel a task: a waiting one never starts, a running one is asked to stop", "tags": ["tasks"], "parameters": id_param,
        "responses": with(Map::from_iter([("200".to_owned(), ok("Revoked, or revoke requested", "RevokeResponse"))]), &["401", "403", "404", "409", "503"]),
    }}));
    paths.insert("/tasks/available".into(), json!({"get": {
        "operationId": "available_tasks", "summary": "Every task the loaded plugins offer", "tags": ["tasks"],
        "responses": with(Map::from_iter([("200".to_owned(), ok("The tasks", "AvailableResponse"))]), &["401", "403"]),
    }}));
    paths.insert("/tasks".into(), json!({"get": {
        "operationId": "list_tasks", "summary": "Recent tasks, newest first", "tags": ["tasks"],
        "parameters": [
            {"name": "name", "in": "query", "required": false, "schema": {"type": "string"}},
            {"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": ["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]}},
            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}}
        ],
        "responses": with(Map::from_iter([("200".to_owned(), ok("A page of tasks", "TaskListResponse"))]), &["401", "403", "422", "503"]),
    }}));
    paths.insert("/plugins".into(), json!({"get": {
        "operationId": "plugins", "summary": "Loaded plugin libraries and refused files", "tags": ["plugins"],
        "responses": with(Map::from_iter([("200".to_owned(), ok("The plugins", "PluginsResponse"))]), &["401", "403"]),
    }}));
    paths.insert("/plugins/reload".into(), json!({"post": {
        "operationId": "reload_plugins", "summary": "Rescan the plugins folder now", "tags": ["plugins"],
        "responses": with(Map::from_iter([("200".to_owned(), ok("The plugins after the rescan", "PluginsResponse"))]), &["401", "403"]),
    }}));
    paths.insert("/schedules".into(), json!({"get": {
        "operationId": "schedules", "summary": "Periodic tasks: source, next and last fire", "tags": ["operations"],
        "responses": with(Map::from_iter([("200".to_owned(), ok("The schedules", "SchedulesResponse"))]), &["401", "403", "503"]),
    }}));
    paths.insert("/queues".into(), json!({"get": {
        "operationId": "queues", "summary": "Depth, delayed, in flight and dead-lettered per queue", "tags": ["operations"],
        "responses": with(Map::from_iter([("200".to_owned(), ok("The queues", "QueuesResponse"))]), &["401", "403", "503"]),
    }}));
    paths.insert("/workers".into(), json!({"get": {
        "operationId": "workers", "summary": "Workers alive now", "tags": ["operations"],
        "responses": with(Map::from_iter([("200".to_owned(), ok("The workers", "WorkersResponse"))]), &["401", "403", "503"]),
    }}));
    paths.insert("/health".into(), json!({"get": {
        "operationId": "health", "summary": "Liveness", "tags": ["operations"],
        "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}}}}},
    }}));
    paths.insert("/ready".into(), json!({"get": {
        "operationId": "ready", "summary": "Readiness: the broker (and the database, in serve) answer", "tags": ["operations"],
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
            "503": {"description": "Not ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}
        },
    }}));

    Json(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "toolbox",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Background tasks as plugins: enqueue, follow and cancel them."
        },
        "paths": paths,
        "components": {"schemas": schemas()},
    }))
}

fn schemas() -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    json!({
        "Error": {
            "type": "object", "required": ["success", "error"],
            "properties": {
                "success": {"const": false},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "details": {}
                }}
            }
        },
        "TaskExecuteResponse": {
            "type": "object", "required": ["success", "task_id", "message", "task_name"],
            "properties": {"success": {"type": "boolean"}, "task_id": {"type": "string"}, "message": {"type": "string"}, "task_name": {"type": "string"}}
        },
        "TaskStatusResponse": {
            "type": "object",
            "required": ["task_id", "status", "result", "ready", "successful", "failed", "error", "task_name", "queue", "attempts", "progress", "enqueued_at", "started_at", "finished_at"],
            "properties": {
                "task_id": {"type": "string"},
                "status": {"type": "string", "enum": ["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]},
                "result": {},
                "ready": {"type": "boolean"},
                "successful": nullable("boolean"),
                "failed": nullable("boolean"),
                "error": nullable("string"),
                "task_name": {"type": "string"},
                "queue": {"type": "string"},
                "attempts": {"type": "integer", "minimum": 0},
                "retries": {"type": "integer", "minimum": 0},
                "progress": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["done", "total", "message"], "properties": {
                    "done": {"type": "integer"}, "total": {"type": "integer"}, "message": {"type": "string"}}}]},
                "enqueued_at": nullable("string"),
                "eta": nullable("string"),
                "started_at": nullable("string"),
                "finished_at": nullable("string"),
                "worker": nullable("string"),
                "dead_lettered": {"type": "boolean"},
                "history": {"type": "array", "items": {"type": "object"}}
            }
        },
        "TaskListResponse": {
            "type": "object", "required": ["tasks", "next_cursor"],
            "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskStatusResponse"}}, "next_cursor": nullable("string")}
        },
        "RevokeResponse": {
            "type": "object", "required": ["success", "task_id", "status", "message"],
            "properties": {"success": {"type": "boolean"}, "task_id": {"type": "string"}, "status": {"type": "string", "enum": ["REVOKED", "REVOKE_REQUESTED"]}, "message": {"type": "string"}}
        },
        "AvailableResponse": {
            "type": "object", "required": ["success", "available_tasks", "total_tasks", "auto_generated", "load_errors"],
            "properties": {
                "success": {"type": "boolean"},
                "available_tasks": {"type": "object", "additionalProperties": {"type": "object", "required": ["name", "description", "endpoint", "method", "module", "queue", "args_schema", "schedule", "plugin"]}},
                "total_tasks": {"type": "integer"},
                "auto_generated": {"type": "boolean"},
                "load_errors": {"type": "array", "items": {"type": "object", "required": ["file", "code", "message"]}}
            }
        },
        "QueuesResponse": {
            "type": "object", "required": ["queues"],
            "properties": {"queues": {"type": "array", "items": {"type": "object", "required": ["queue", "depth", "delayed", "in_flight", "dead_lettered"]}}}
        },
        "WorkersResponse": {
            "type": "object", "required": ["workers"],
            "properties": {"workers": {"type": "array", "items": {"type": "object", "required": ["name", "queues", "concurrency", "in_flight", "last_seen"]}}}
        },
        "Readiness": {"type": "object", "required": ["status", "broker"]},
        "SchedulesResponse": {
            "type": "object", "required": ["timezone", "schedules", "problems"],
            "properties": {
                "timezone": {"type": "string"},
                "schedules": {"type": "array", "items": {"type": "object", "required": ["id", "task", "cron", "queue", "enabled", "source", "next_fire", "last_fire", "last_task_id"]}},
                "problems": {"type": "array", "items": {"type": "string"}}
            }
        },
        "PluginsResponse": {
            "type": "object", "required": ["plugins", "refused", "libraries_mapped"],
            "properties": {
                "plugins": {"type": "array", "items": {"type": "object", "required": ["file", "name", "version", "sha256", "tasks", "loaded_at"]}},
                "refused": {"type": "array", "items": {"type": "object", "required": ["file", "code", "message"]}},
                "libraries_mapped": {"type": "integer", "minimum": 0}
            }
        }
    })
}
