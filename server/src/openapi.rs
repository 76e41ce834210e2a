//! The OpenAPI 3.1 document, generated from the route table ([`crate::routes::api_routes`]).
//!
//! Nothing here is written by hand per route: request bodies and query parameters come from
//! the handler's own argument types ([`DocHandler`] over the extractors of
//! [`crate::extract`]), response schemas from its return type ([`OpOutput`]) or, for handlers
//! that build a raw `Response`, from the table's `.json::<T>()` / `.produces(…)`; schemas come
//! from the `utoipa::ToSchema` derives on the `cove-api` DTOs (feature `openapi`) and
//! `utoipa::IntoParams` on the query structs. Statuses: the success status, the ones every
//! route of its kind can answer (see [`Op::statuses`]) and the extra ones the table declares.

use std::collections::BTreeMap;
use std::future::Future;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cove_api::{ErrorBody, Role};
use serde_json::{json, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Audience;
use crate::extract::{Json, Path, Query, WebSocketUpgrade};
use crate::routes::{api_routes, Route, GIT_ROUTES};

/// A request body of an operation.
#[derive(Debug, Clone)]
pub struct BodyDoc {
    pub content_type: &'static str,
    pub schema: Value,
    pub required: bool,
}

/// What a successful call answers.
#[derive(Debug, Clone, Default)]
pub enum OutputDoc {
    /// A JSON body with this schema.
    Json(Value),
    /// No body.
    Empty,
    /// A body of this content type (text, a tar, a stream).
    Raw(&'static str),
    /// A raw `Response`: the route table must say what it is.
    #[default]
    Undeclared,
}

/// Everything the types of one handler say about its operation.
#[derive(Debug, Clone, Default)]
pub struct OpDoc {
    pub body: Option<BodyDoc>,
    pub query: Vec<Value>,
    pub output: OutputDoc,
    /// Other content types of a success (content type, schema).
    pub alternatives: Vec<(&'static str, Value)>,
    /// Named schemas referenced by the above (`#/components/schemas/…`).
    pub components: BTreeMap<String, Value>,
}

impl OpDoc {
    /// The inline schema of `T`, registering the named schemas it references.
    pub fn schema<T: ToSchema>(&mut self) -> Value {
        let mut named = Vec::new();
        T::schemas(&mut named);
        for (name, schema) in named {
            self.components
                .insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
        }
        serde_json::to_value(T::schema()).unwrap_or(Value::Null)
    }
}

/// A handler argument: what it adds to the operation (most add nothing).
pub trait OpInput {
    fn describe(_doc: &mut OpDoc) {}
}

impl<S> OpInput for State<S> {}
impl<T> OpInput for Extension<T> {}
impl<T> OpInput for Path<T> {}
impl OpInput for HeaderMap {}
impl OpInput for WebSocketUpgrade {}

impl<T: ToSchema> OpInput for Json<T> {
    fn describe(doc: &mut OpDoc) {
        let schema = doc.schema::<T>();
        doc.body = Some(BodyDoc {
            content_type: "application/json",
            schema,
            required: true,
        });
    }
}

impl<T: ToSchema> OpInput for Option<Json<T>> {
    fn describe(doc: &mut OpDoc) {
        <Json<T> as OpInput>::describe(doc);
        if let Some(body) = &mut doc.body {
            body.required = false;
        }
    }
}

impl<T: IntoParams> OpInput for Query<T> {
    fn describe(doc: &mut OpDoc) {
        doc.query.extend(
            T::into_params(|| Some(ParameterIn::Query))
                .into_iter()
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null)),
        );
    }
}

/// A raw body (an uploaded tar).
impl OpInput for Body {
    fn describe(doc: &mut OpDoc) {
        doc.body = Some(BodyDoc {
            content_type: "application/octet-stream",
            schema: json!({"type": "string", "format": "binary"}),
            required: true,
        });
    }
}

/// A handler's return type: what a successful call answers.
pub trait OpOutput {
    fn describe(doc: &mut OpDoc);
}

impl<T: ToSchema> OpOutput for Json<T> {
    fn describe(doc: &mut OpDoc) {
        let schema = doc.schema::<T>();
        doc.output = OutputDoc::Json(schema);
    }
}

impl<T: ToSchema> OpOutput for (StatusCode, Json<T>) {
    fn describe(doc: &mut OpDoc) {
        <Json<T> as OpOutput>::describe(doc);
    }
}

impl OpOutput for StatusCode {
    fn describe(doc: &mut OpDoc) {
        doc.output = OutputDoc::Empty;
    }
}

impl OpOutput for String {
    fn describe(doc: &mut OpDoc) {
        doc.output = OutputDoc::Raw("text/plain; charset=utf-8");
    }
}

impl OpOutput for Response {
    fn describe(doc: &mut OpDoc) {
        doc.output = OutputDoc::Undeclared;
    }
}

impl<T: OpOutput> OpOutput for Result<T, crate::error::ApiError> {
    fn describe(doc: &mut OpDoc) {
        T::describe(doc);
    }
}

/// Implemented for every async handler whose arguments are [`OpInput`]s and whose output is
/// an [`OpOutput`]: the route table takes only such handlers.
pub trait DocHandler<M> {
    fn describe() -> OpDoc;
}

macro_rules! doc_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, R, $($arg,)*> DocHandler<(R, $($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future<Output = R>,
            R: OpOutput,
            $($arg: OpInput,)*
        {
            fn describe() -> OpDoc {
                let mut doc = OpDoc::default();
                $(<$arg as OpInput>::describe(&mut doc);)*
                R::describe(&mut doc);
                doc
            }
        }
    };
}

doc_handler!();
doc_handler!(A1);
doc_handler!(A1, A2);
doc_handler!(A1, A2, A3);
doc_handler!(A1, A2, A3, A4);
doc_handler!(A1, A2, A3, A4, A5);
doc_handler!(A1, A2, A3, A4, A5, A6);
doc_handler!(A1, A2, A3, A4, A5, A6, A7);
doc_handler!(A1, A2, A3, A4, A5, A6, A7, A8);

/// Why a status is answered (the description in the document).
pub fn status_text(status: u16) -> &'static str {
    match status {
        200 => "success",
        201 => "created",
        202 => "accepted: the work continues in the background",
        204 => "success, no body",
        101 => "switching protocols (WebSocket)",
        400 => "bad request: a query parameter, path segment or body that does not parse, or a value out of range",
        401 => "missing, invalid or expired credentials",
        403 => "the credential lacks the scope, role or audience (or the session's CSRF header is missing)",
        404 => "not found (or not visible to the caller)",
        409 => "conflict with the current state",
        413 => "body too large",
        415 => "body is not `application/json`",
        422 => "a JSON body of the wrong shape (wrong type, unknown or missing field), or an invalid file it names",
        429 => "too many requests: a bounded resource is used up, or too many failed password checks lately (see Retry-After)",
        503 => "a needed part (e.g. an agent) is not available",
        _ => "see the message",
    }
}

/// One operation's statuses: success, then the ones every route of its kind can answer, then
/// the route's own.
pub fn statuses(route: &Route) -> Vec<u16> {
    let spec = &route.spec;
    // 429: HTTP Basic with a password is throttled after failed attempts (auth::throttle).
    let mut out = vec![spec.success.as_u16(), 401, 403, 429];
    if spec.path.contains('{') || !route.doc.query.is_empty() {
        out.push(400);
    }
    if spec.repo_role.is_some() || spec.path.contains("{project}") {
        out.push(404);
    }
    if let Some(body) = &route.doc.body {
        out.push(413);
        if body.content_type == "application/json" {
            out.extend([400, 415, 422]);
        }
    }
    out.extend(spec.extra_statuses.iter().copied());
    out.sort_unstable();
    out.dedup();
    out
}

fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.trim_start_matches('*').to_string())
        .collect()
}

/// A path template as OpenAPI writes it (`{*path}` → `{path}`).
pub fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

fn path_param_docs(path: &str) -> Vec<Value> {
    path_params(path)
        .into_iter()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn success_response(route: &Route) -> Value {
    let description = status_text(route.spec.success.as_u16());
    let mut response = success_content(route, description);
    for (ct, schema) in &route.doc.alternatives {
        response["content"][*ct] = json!({"schema": schema});
    }
    response
}

fn success_content(route: &Route, description: &str) -> Value {
    let media = |ct: &str, schema: Value| json!({"description": description, "content": {ct: {"schema": schema}}});
    match &route.doc.output {
        OutputDoc::Raw("application/json") => media("application/json", json!({"type": "object"})),
        OutputDoc::Json(schema) => media("application/json", schema.clone()),
        // The schema of one event (what OpenAPI 3.2 calls `itemSchema`).
        OutputDoc::Raw(ct) if ct.starts_with("text/event-stream") => media(
            ct,
            json!({"type": "object", "properties": {
                "event": {"type": "string"}, "data": {"type": "string"},
                "id": {"type": "string"}, "retry": {"type": "integer"}}}),
        ),
        OutputDoc::Raw(ct) if ct.starts_with("text/") => media(ct, json!({"type": "string"})),
        OutputDoc::Raw(ct) => media(ct, json!({"type": "string", "format": "binary"})),
        OutputDoc::Empty | OutputDoc::Undeclared => json!({"description": description}),
    }
}

/// The operation object of one route.
pub fn operation(route: &Route, components: &mut BTreeMap<String, Value>) -> Value {
    let spec = &route.spec;
    components.extend(route.doc.components.clone());
    let mut parameters = path_param_docs(spec.path);
    parameters.extend(route.doc.query.iter().cloned());
    let mut description = match spec.audience {
        Audience::Users => format!("Needs scope `{}`", spec.scope.as_str()),
        Audience::Agents => "Needs a registered agent's token (`cove_agt_…`)".to_string(),
        Audience::Registration => "Needs a one-time registration token (`cove_reg_…`)".to_string(),
        Audience::Signature => {
            "No credential: authenticated by the forge's signature over the body".to_string()
        }
    };
    if let Some(role) = spec.repo_role {
        description.push_str(&format!(
            " and the `{}` role on the repository",
            role.as_str()
        ));
    }
    if let Some(access) = spec.env_access {
        description.push_str(&format!("; only {}", access.describe()));
    }
    if let Some(role) = spec.project_role {
        description.push_str(&format!(
            " and the `{}` role in the project (non-members: 404)",
            role.as_str()
        ));
    }
    if spec.reviewers {
        description.push_str("; a reviewer of the repository's project may also call it");
    }
    if spec.admin_only {
        description.push_str("; administrators only");
    }
    description.push('.');
    let error_schema = json!({"$ref": "#/components/schemas/ErrorBody"});
    let mut responses = serde_json::Map::new();
    for status in statuses(route) {
        let doc = if status == spec.success.as_u16() {
            success_response(route)
        } else if (200..300).contains(&status) && status != 204 {
            // another success (e.g. 200 for a reused item where a new one is 201): same body
            success_content(route, status_text(status))
        } else if status == 204 || status == 101 {
            json!({"description": status_text(status)})
        } else {
            json!({"description": status_text(status),
                   "content": {"application/json": {"schema": error_schema.clone()}}})
        };
        responses.insert(status.to_string(), doc);
    }
    let mut op = json!({
        "operationId": operation_id(spec.method.as_str(), spec.path),
        "summary": spec.summary,
        "description": description,
        "parameters": parameters,
        // A signature route takes no credential: its handler verifies the body's signature.
        "security": if spec.audience == Audience::Signature {
            json!([])
        } else {
            json!([{"bearer": []}, {"basic": []}, {"session": []}])
        },
        "x-cove-scope": match spec.audience {
            Audience::Users => spec.scope.as_str(),
            Audience::Agents => "agent",
            Audience::Registration => "registration",
            Audience::Signature => "signature",
        },
        "x-cove-repo-role": spec.repo_role.map(Role::as_str),
        "x-cove-project-role": spec.project_role.map(cove_api::ProjectRole::as_str),
        "responses": responses,
    });
    if let Some(body) = &route.doc.body {
        op["requestBody"] = json!({
            "required": body.required,
            "content": {body.content_type: {"schema": body.schema}},
        });
    }
    op
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.trim_start_matches("/api/v1/").split('/') {
        let seg = seg.trim_start_matches('{').trim_start_matches('*');
        let seg = seg.trim_end_matches('}');
        id.push('_');
        id.extend(
            seg.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The OpenAPI 3.1 document of every route.
pub fn openapi_document(public_url: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut components = BTreeMap::new();
    let mut error_doc = crate::openapi::OpDoc::default();
    let error_schema = error_doc.schema::<ErrorBody>();
    components.extend(error_doc.components);
    components.insert("ErrorBody".to_string(), error_schema);
    let mut add = |path: &str, method: &str, op: Value| {
        let entry = paths.entry(openapi_path(path)).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(method.to_string(), op);
        }
    };
    for route in api_routes() {
        let op = operation(&route, &mut components);
        add(
            route.spec.path,
            &route.spec.method.as_str().to_ascii_lowercase(),
            op,
        );
    }
    for (method, path, summary) in GIT_ROUTES {
        add(
            path,
            method,
            json!({
                "operationId": operation_id(method, path),
                "summary": summary,
                "description": "git smart HTTP protocol; HTTP Basic with any username and a token as password. Public repositories can be read anonymously.",
                "parameters": path_param_docs(path),
                "security": [{"basic": []}, {}],
                "responses": {
                    "200": {"description": "git protocol stream"},
                    "400": {"description": "not a git request"},
                    "401": {"description": "credentials needed"},
                    "403": {"description": "no write access"},
                    "404": {"description": "no such repository"},
                },
                "x-cove-git": true,
            }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Cove API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": public_url}],
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                            "description": "web UI session (POST /api/v1/session); requests other than GET/HEAD also need the X-Cove-CSRF header"},
            },
        },
        "paths": paths,
    })
}

/// The OpenAPI path template of every route (for tests).
pub fn all_paths() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = api_routes()
        .into_iter()
        .map(|r| {
            (
                r.spec.method.as_str().to_ascii_lowercase(),
                openapi_path(r.spec.path),
            )
        })
        .collect();
    out.extend(
        GIT_ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), openapi_path(p))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the table is in the document with its request body (when its handler
    /// takes one), its query parameters, a declared success response and its statuses.
    #[test]
    fn every_route_documents_body_query_response_and_statuses() {
        let doc = openapi_document("http://x");
        let mut problems = Vec::new();
        for route in api_routes() {
            let method = route.spec.method.as_str().to_ascii_lowercase();
            let path = openapi_path(route.spec.path);
            let name = format!("{method} {path}");
            let op = &doc["paths"][&path][&method];
            if !op.is_object() {
                problems.push(format!("{name}: not documented"));
                continue;
            }
            if matches!(route.doc.output, OutputDoc::Undeclared) {
                problems.push(format!(
                    "{name}: the handler answers a raw Response; say what it is in the table (.json::<T>() / .produces(…) / .empty())"
                ));
            }
            match &route.doc.body {
                Some(body) => {
                    let content = &op["requestBody"]["content"][body.content_type]["schema"];
                    if !content.is_object() {
                        problems.push(format!("{name}: request body not documented"));
                    }
                }
                None => {
                    if !op["requestBody"].is_null() {
                        problems.push(format!("{name}: documents a body it does not take"));
                    }
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for q in &route.doc.query {
                if !params
                    .iter()
                    .any(|p| p["name"] == q["name"] && p["in"] == "query")
                {
                    problems.push(format!("{name}: query parameter {} missing", q["name"]));
                }
            }
            for p in path_params(route.spec.path) {
                if !params
                    .iter()
                    .any(|d| d["name"] == p.as_str() && d["in"] == "path")
                {
                    problems.push(format!("{name}: path parameter {p} missing"));
                }
            }
            for status in statuses(&route) {
                let response = &op["responses"][status.to_string()];
                if !response.is_object() {
                    problems.push(format!("{name}: status {status} missing"));
                } else if status >= 400 && !response["content"]["application/json"].is_object() {
                    problems.push(format!("{name}: status {status} has no error schema"));
                }
            }
            if !op["responses"][route.spec.success.as_u16().to_string()].is_object() {
                problems.push(format!("{name}: success status missing"));
            }
        }
        // every `$ref` resolves
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            if !doc["components"]["schemas"][name].is_object() {
                problems.push(format!("schema {name} referenced but not defined"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// A body, query and output derived from the handler's types, not written by hand.
    #[test]
    fn handler_types_give_body_query_and_output() {
        let routes = api_routes();
        let find = |m: &str, p: &str| {
            routes
                .iter()
                .find(|r| r.spec.method.as_str() == m && r.spec.path == p)
                .map(|r| r.doc.clone())
                .unwrap_or_default()
        };
        let create_repo = find("POST", "/api/v1/repos");
        let body = create_repo.body.expect("create repo takes a body");
        assert_eq!(body.content_type, "application/json");
        assert!(create_repo.components.contains_key("Visibility"));
        assert!(matches!(create_repo.output, OutputDoc::Json(_)));
        let commits = find("GET", "/api/v1/repos/{owner}/{name}/commits");
        let names: Vec<&Value> = commits.query.iter().map(|q| &q["name"]).collect();
        assert!(names.contains(&&json!("limit")) && names.contains(&&json!("branch")));
        let registration = find("POST", "/api/v1/agents/registration-tokens");
        assert!(!registration.body.expect("optional body").required);
    }
}
