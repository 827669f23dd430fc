//! The gRPC server: Goldmane's `Flows` service over a [`Flows`] handle, and
//! for a cluster aggregator its `FlowCollector`, on a listener the caller
//! binds. Bind it to loopback (felix uses 127.0.0.1): the API has no
//! authentication yet, so it is kept off the public network; mTLS is for
//! later.
//!
//! ```text
//! client ─List/FilterHints─▶ FlowsService ─lock, query, unlock─▶ answer
//! client ─Stream──────────▶ FlowsService ─subscribe─▶ history, then the stream's channel
//! host   ─Connect─────────▶ Collector ─each FlowUpdate─▶ Flows::add_pushed ─▶ FlowReceipt
//! ```
//!
//! A request the API cannot answer (unknown enum numbers, a page out of
//! range, an empty time range, a pushed flow of unknown kind) gets
//! InvalidArgument; too many streams, ResourceExhausted; `Statistics`,
//! Unimplemented.

use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::proto;
use crate::proto::flow_collector_server::{FlowCollector, FlowCollectorServer};
use crate::proto::flows_server::{Flows as FlowsApi, FlowsServer};
use crate::shared::{Flows, StreamError};
use crate::wire::Pushed;

#[derive(Debug, thiserror::Error)]
#[error("flow API server: {0}")]
pub struct ServeError(#[from] tonic::transport::Error);

/// Serves the `Flows` service (List, Stream, FilterHints) on `listener`
/// until `shutdown` completes: the embedded path, one host's flows.
pub async fn serve(
    listener: TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    tonic::transport::Server::builder()
        .add_service(FlowsServer::new(FlowsService { flows }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Serves `Flows` and `FlowCollector` (hosts push their flows with
/// `Connect`) on `listener` until `shutdown` completes: a cluster's
/// aggregator.
pub async fn serve_aggregator(
    listener: TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    aggregator_router(flows)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// [`serve_aggregator`] on a Unix socket: local clients (calicoctl, the
/// console) reach it through the file system, from any network namespace.
pub async fn serve_aggregator_unix(
    listener: UnixListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    aggregator_router(flows)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

fn aggregator_router(flows: Flows) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .add_service(FlowsServer::new(FlowsService {
            flows: flows.clone(),
        }))
        .add_service(FlowCollectorServer::new(Collector { flows }))
}

fn invalid(err: impl std::fmt::Display) -> Status {
    tracing::debug!(error = %err, "flow API: invalid request");
    Status::invalid_argument(err.to_string())
}

#[derive(Debug)]
struct FlowsService {
    flows: Flows,
}

type ResultStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FlowsApi for FlowsService {
    async fn list(
        &self,
        req: Request<proto::FlowListRequest>,
    ) -> Result<Response<proto::FlowListResult>, Status> {
        self.flows
            .list(req.get_ref())
            .map(Response::new)
            .map_err(invalid)
    }

    type StreamStream = ResultStream<proto::FlowResult>;

    async fn stream(
        &self,
        req: Request<proto::FlowStreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let sub = self
            .flows
            .subscribe(req.get_ref())
            .map_err(|err| match err {
                StreamError::Invalid(err) => invalid(err),
                StreamError::TooMany(err) => Status::resource_exhausted(err.to_string()),
            })?;
        let flows = futures::stream::iter(sub.history)
            .chain(ReceiverStream::new(sub.live))
            .map(Ok);
        Ok(Response::new(Box::pin(flows)))
    }

    async fn filter_hints(
        &self,
        req: Request<proto::FilterHintsRequest>,
    ) -> Result<Response<proto::FilterHintsResult>, Status> {
        self.flows
            .hints(req.get_ref())
            .map(Response::new)
            .map_err(invalid)
    }
}

#[derive(Debug)]
struct Collector {
    flows: Flows,
}

/// Receipts a pushing host may have unread before we stop reading its flows.
const RECEIPTS_AHEAD: usize = 64;

#[tonic::async_trait]
impl FlowCollector for Collector {
    type ConnectStream = ResultStream<proto::FlowReceipt>;

    async fn connect(
        &self,
        req: Request<Streaming<proto::FlowUpdate>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let peer = req.remote_addr();
        let mut updates = req.into_inner();
        let (tx, rx) = mpsc::channel(RECEIPTS_AHEAD);
        let flows = self.flows.clone();
        tokio::spawn(async move {
            let mut received = 0u64;
            while let Some(update) = updates.next().await {
                let answer = match update {
                    Err(status) => {
                        tracing::debug!(?peer, %status, "flow collector: stream ended");
                        break;
                    }
                    Ok(update) => receive(&flows, &update),
                };
                let end = answer.is_err();
                received += 1;
                if tx.send(answer).await.is_err() || end {
                    break;
                }
            }
            tracing::debug!(?peer, received, "flow collector: host disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One pushed flow summed in: a receipt, or InvalidArgument for a flow
/// that does not say what it is. A flow outside the history is counted
/// (refused) and receipted, as the host can do nothing about it.
fn receive(flows: &Flows, update: &proto::FlowUpdate) -> Result<proto::FlowReceipt, Status> {
    let flow = update
        .flow
        .as_ref()
        .ok_or_else(|| invalid("flow is missing"))?;
    let pushed = Pushed::try_from(flow).map_err(invalid)?;
    if let Err(refused) = flows.add_pushed(pushed) {
        tracing::debug!(%refused, "flow collector: flow not summed");
    }
    Ok(proto::FlowReceipt {})
}
