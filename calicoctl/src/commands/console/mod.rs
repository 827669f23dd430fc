//! `calicoctl console`: the web console, served over HTTP on localhost.
//! The page (`calicoctl/console/`: one HTML file, a script, a style
//! sheet) is built into the binary; it reads a small JSON API that this
//! module serves from the datastore and the flow API (felix's, or the
//! cluster's goldmane). Read-only: nothing here writes.
//!
//! ```text
//! browser ─GET /, /console.js, /console.css ─▶ embedded assets
//!         ─GET /api/flows?namespace=&endpoint=&action=&policy=&port=&protocol=&last=&since=
//!                                      ─▶ Flows.List (goldmane or felix)
//!         ─GET /api/trace?src=&dst=&protocol=&port= ─▶ policy::trace, enforced and with staged
//!         ─GET /api/policies ─▶ model (datastore) + hits (flows)  (views::policies)
//!         ─GET /api/bgp      ─▶ CalicoNodeStatus, Node            (views::bgp)
//!         ─GET /api/ipam     ─▶ usage, ipam check, borrowed addresses
//! ```
//!
//! A malformed query gets 400 with a message naming the parameter; the
//! datastore or the flow API out of reach, 503 naming which (the page
//! shows a banner and keeps polling).

pub mod query;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use api::resources::status::CalicoNodeStatus;
use api::{Kind, Resource};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datastore::ipam::client::Ipam;
use datastore::ipam::model::{AllocationBlock, BLOCKS_PREFIX};
use datastore::{DatastoreConfig, ResourceStore};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{flows, policy, store};
use crate::cli::{ConsoleArgs, DatastoreArgs};
use query::{Params, QueryError};

const INDEX: &str = include_str!("../../../console/index.html");
const SCRIPT: &str = include_str!("../../../console/console.js");
const STYLE: &str = include_str!("../../../console/console.css");

/// An answer other than 200.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the query is wrong.
    BadRequest(String),
    /// 503: the datastore or the flow API is out of reach.
    Unavailable {
        source: &'static str,
        message: String,
    },
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, json!({"error": message})),
            ApiError::Unavailable { source, message } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": message, "source": source}),
            ),
        };
        (status, axum::Json(body)).into_response()
    }
}

fn datastore_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        source: "datastore",
        message: format!("{e:#}"),
    }
}

/// The flow API out of reach: where, and the first cause's words.
fn flows_down(server: &str, e: &anyhow::Error) -> ApiError {
    ApiError::Unavailable {
        source: "flows",
        message: format!("cannot reach {server}: {}", e.root_cause()),
    }
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

/// What the handlers share.
struct App {
    datastore: DatastoreConfig,
    /// Connected on first use, and again after a failure.
    store: Mutex<Option<ResourceStore>>,
    flows_server: String,
}

impl App {
    async fn store(&self) -> Result<ResourceStore, ApiError> {
        let mut held = self.store.lock().await;
        if let Some(store) = held.as_ref() {
            return Ok(store.clone());
        }
        let kv = datastore::connect(&self.datastore)
            .await
            .map_err(datastore_down)?;
        let store = ResourceStore::new(kv);
        *held = Some(store.clone());
        Ok(store)
    }

    /// Forgets the connection after a failure, so the next call reconnects.
    async fn failed(&self, e: impl std::fmt::Display) -> ApiError {
        *self.store.lock().await = None;
        datastore_down(e)
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Resource>, ApiError> {
        let store = self.store().await?;
        match store.list(kind, None).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.failed(e).await),
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json_of(value: impl serde::Serialize) -> ApiResult {
    serde_json::to_value(value)
        .map(axum::Json)
        .map_err(|e| ApiError::BadRequest(format!("unserialisable answer: {e}")))
}

async fn flows_api(State(app): State<Arc<App>>, Query(raw): Query<Params>) -> ApiResult {
    let q = query::flows(&raw, &app.flows_server)?;
    let mut list = flows::list(&q.args, &q.local)
        .await
        .map_err(|e| flows_down(&app.flows_server, &e))?;
    list.reverse();
    json_of(json!({"flows": list}))
}

async fn trace_api(State(app): State<Arc<App>>, Query(raw): Query<Params>) -> ApiResult {
    let request = query::trace(&raw)?;
    let store = app.store().await?;
    let mut resources = match policy::from_store(&store).await {
        Ok(r) => r,
        Err(e) => return Err(app.failed(e).await),
    };
    let config = policy::config_for(&resources, None);
    let q = request
        .query(&mut resources, None)
        .map_err(|e| ApiError::BadRequest(format!("{e:#}")))?;
    let model =
        policy::model(&resources, config).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let enforced = request
        .trace(&model, &q)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let pending = request
        .trace(&model.with_staged_enforced(), &q)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    json_of(json!({
        "enforced": enforced,
        "pending": pending,
        "staged": !model.staged.is_empty(),
    }))
}

async fn policies_api(State(app): State<Arc<App>>, Query(raw): Query<Params>) -> ApiResult {
    query::none(&raw)?;
    let store = app.store().await?;
    let resources = match policy::from_store(&store).await {
        Ok(r) => r,
        Err(e) => return Err(app.failed(e).await),
    };
    let config = policy::config_for(&resources, None);
    let model =
        policy::model(&resources, config).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let staged = model.with_staged_enforced();
    let q = query::flows(
        &Params::from([("last".into(), "100000".into())]),
        &app.flows_server,
    )?;
    let hits = flows::list(&q.args, &q.local)
        .await
        .map_err(|e| format!("cannot reach {}: {}", app.flows_server, e.root_cause()));
    json_of(views::policies(
        &model,
        &staged,
        hits.as_deref().map_err(Clone::clone),
    ))
}

async fn bgp_api(State(app): State<Arc<App>>, Query(raw): Query<Params>) -> ApiResult {
    query::none(&raw)?;
    let statuses: Vec<CalicoNodeStatus> = app
        .list(Kind::CalicoNodeStatus)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Resource::CalicoNodeStatus(s) => Some(s),
            _ => None,
        })
        .collect();
    let nodes: Vec<String> = app
        .list(Kind::Node)
        .await?
        .iter()
        .map(|r| r.metadata().name.clone())
        .collect();
    json_of(views::bgp(&statuses, &nodes, now()))
}

async fn ipam_api(State(app): State<Arc<App>>, Query(raw): Query<Params>) -> ApiResult {
    query::none(&raw)?;
    let store = app.store().await?;
    let ipam = Ipam::new(store.kv().clone());
    let usage = match ipam.usage().await {
        Ok(u) => u,
        Err(e) => return Err(app.failed(e).await),
    };
    let check = match ipam.check().await {
        Ok(c) => c,
        Err(e) => return Err(app.failed(e).await),
    };
    let blocks: Vec<AllocationBlock> = match store.kv().list(BLOCKS_PREFIX).await {
        Ok((kvs, _)) => kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect(),
        Err(e) => return Err(app.failed(e).await),
    };
    json_of(json!({
        "usage": usage,
        "check": check,
        "borrowed": views::borrowed(&blocks),
    }))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "no such API: see /api/flows, /api/trace, /api/policies, /api/bgp, /api/ipam"})),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The console's routes over `app` (the tests serve it on a port of
/// their own).
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/flows", get(flows_api))
        .route("/api/trace", get(trace_api))
        .route("/api/policies", get(policies_api))
        .route("/api/bgp", get(bgp_api))
        .route("/api/ipam", get(ipam_api))
        .fallback(not_found)
        .with_state(app)
}

/// Runs `calicoctl console` until interrupted.
pub async fn run(args: &ConsoleArgs, datastore: &DatastoreArgs) -> Result<()> {
    let addr: SocketAddr = args.listen;
    if !addr.ip().is_loopback() && !args.insecure_listen {
        bail!(
            "--listen {addr} is not a loopback address: the console has no authentication and no TLS; put it behind a reverse proxy that has both (see the README) and pass --insecure-listen, or keep it on 127.0.0.1"
        );
    }
    let app = Arc::new(App {
        datastore: store::select(datastore)?,
        store: Mutex::new(None),
        flows_server: args.flows_server.clone(),
    });
    // The flow address is checked now, not at the first request.
    ::flows::push::endpoint(&args.flows_server).context("--flows-server")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {addr}"))?;
    let bound = listener.local_addr()?;
    println!(
        "Console at http://{bound}/ (flows from {})",
        args.flows_server
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the console")?;
    Ok(())
}
